"""A real Chromium page on one loopback origin posting to the gateway on another (SPEC §4, §8)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page

from pipelines.services import PipelineCreated
from tests.fixtures.gateway import Gateway
from tests.fixtures.kafka import read_records

SHOP_PAGE = b"<!doctype html><html><head><title>Shop</title></head><body>shop</body></html>"

# What a first-party collector does: text/plain (no preflight) and credentials, so cookies travel.
SEND_PAGE_VIEW = """
async ({gatewayUrl, writeKey}) => {
  const response = await fetch(gatewayUrl + "/v1/t", {
    method: "POST",
    credentials: "include",
    headers: {"Content-Type": "text/plain"},
    body: JSON.stringify({writeKey, event: "Page Viewed", context: {page: {url: location.href + "?gclid=abc123"}}}),
    signal: AbortSignal.timeout(10000),
  });
  return {status: response.status, body: await response.json()};
}
"""


class _ShopPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(SHOP_PAGE)))
        self.end_headers()
        self.wfile.write(SHOP_PAGE)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest output is for failures
        pass


@pytest.fixture
def page_origin() -> Iterator[str]:
    """A static page on its own 127.0.0.1 port: same site as the gateway, another origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ShopPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def send_page_view(page: Page, gateway: Gateway, write_key: str) -> tuple[dict[str, Any], list[str]]:
    """The page's fetch result, and the Set-Cookie headers the browser received for it."""
    with page.expect_response(lambda r: r.url == gateway.url + "/v1/t" and r.request.method == "POST") as answer:
        result = page.evaluate(SEND_PAGE_VIEW, {"gatewayUrl": gateway.url, "writeKey": write_key})
    return result, answer.value.header_values("set-cookie")


@pytest.mark.browser
def test_chromium_page_on_another_origin_gets_identity_cookies_and_sends_them_back(
    gateway: Gateway,
    page_origin: str,
    make_pipeline: Callable[..., PipelineCreated],
    open_chromium: Callable[[], BrowserContext],
    kafka_bootstrap: str,
    kafka_topic: str,
) -> None:
    # Given a pipeline that allows the shop's origin, and the shop page open in Chromium
    created = make_pipeline(origins=[page_origin])
    pipeline_id = created.pipeline.id
    browser_context = open_chromium()
    page = browser_context.new_page()
    page.goto(page_origin + "/")

    # When the page posts a page view with credentials
    first, first_set_cookies = send_page_view(page, gateway, created.pipeline_key)

    # Then the script sees success, and the browser keeps the identity cookies for the gateway
    assert first == {"status": 200, "body": {"success": True}}, gateway.log()[-3000:]
    assert any(header.startswith("_dfid=") for header in first_set_cookies), first_set_cookies
    cookies = {cookie["name"]: cookie for cookie in browser_context.cookies(gateway.url)}
    assert {"_dfid", "_ga", "_fbp", "_ttp", "_gcl_aw"} <= cookies.keys(), cookies
    assert cookies["_dfid"]["httpOnly"] is True
    for name in ("_ga", "_fbp", "_ttp", "_gcl_aw"):
        assert cookies[name]["httpOnly"] is False, cookies[name]
    for name in ("_dfid", "_ga", "_fbp", "_ttp", "_gcl_aw"):
        assert (cookies[name]["secure"], cookies[name]["sameSite"]) == (True, "Lax"), cookies[name]
    assert cookies["_gcl_aw"]["value"].endswith(".abc123")
    dfid = cookies["_dfid"]["value"]

    # And the event is in Kafka under that visitor, with the page URL's click ID
    [record] = read_records(kafka_bootstrap, kafka_topic, pipeline_id=pipeline_id, expect=1)
    assert record.value["anonymousId"] == dfid
    assert record.value["context"]["clickIds"]["gclid"] == "abc123"

    # When the page posts again
    second, second_set_cookies = send_page_view(page, gateway, created.pipeline_key)

    # Then the browser sent its cookies back: same visitor, no new _dfid
    assert second == {"status": 200, "body": {"success": True}}
    assert not [header for header in second_set_cookies if header.startswith("_dfid=")], second_set_cookies
    assert {c["name"]: c["value"] for c in browser_context.cookies(gateway.url)}["_dfid"] == dfid
    records = read_records(kafka_bootstrap, kafka_topic, pipeline_id=pipeline_id, expect=2)
    assert [r.value["anonymousId"] for r in records] == [dfid, dfid]
