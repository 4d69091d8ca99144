"""The browser SDKs people already ship, unchanged, in real Chromium, pointed at a real gateway with no
inline settings (issue 12): Segment's analytics-next and RudderStack's analytics-js v3, from npm at the
versions pinned in tests/browser_sdks/package.json, served with a test page by a local 127.0.0.1 server.

The page and the gateway are on two 127.0.0.1 ports: one site, two origins, as a shop and its
collector subdomain are. Each SDK fetches its settings from the gateway first, then posts its events.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page

from pipelines.services import PipelineCreated
from tests.fixtures.gateway import Gateway
from tests.fixtures.kafka import KafkaRecord, read_records
from tests.fixtures.privacy import set_privacy

SDKS = Path(__file__).resolve().parent / "browser_sdks" / "node_modules"
SEGMENT_BUNDLES = SDKS / "@segment" / "analytics-next" / "dist" / "umd"
RUDDERSTACK_BUNDLE = SDKS / "@rudderstack" / "analytics-js" / "dist" / "npm" / "modern" / "bundled" / "umd" / "index.js"
# Kafka records can take a moment after the SDK's request is answered (and a beacon is sent when it flushes).
RECORDS_TIMEOUT = 20.0

# analytics-next loads its lazy chunks from <CDN>/analytics-next/bundles/: the page names itself as
# that CDN before the bundle loads, so every chunk comes from the local server, never the internet.
SEGMENT_PAGE = b"""<!doctype html><html><head><title>Shop</title>
<script>window.analytics = {_cdn: location.origin};</script>
<script src="/analytics-next/bundles/index.js"></script>
</head><body>shop</body></html>"""
# Chromium does not report beacons to Playwright: the page notes each URL it beacons to, then sends it as ever.
RUDDERSTACK_PAGE = b"""<!doctype html><html><head><title>Shop</title>
<script>
window.beaconed = [];
const sendBeacon = navigator.sendBeacon.bind(navigator);
navigator.sendBeacon = (url, data) => { window.beaconed.push(String(url)); return sendBeacon(url, data); };
</script>
<script src="/rudderstack/index.js"></script>
</head><body>shop</body></html>"""

SEGMENT_CALLS = """
async ({writeKey, gatewayUrl, batching}) => {
  const options = batching
    ? {integrations: {"Segment.io": {deliveryStrategy: {strategy: "batching", config: {size: 6, timeout: 500}}}}}
    : {};
  const [analytics] = await AnalyticsNext.AnalyticsBrowser.load({writeKey, cdnURL: gatewayUrl}, options);
  await Promise.all([
    analytics.page("Home"),
    analytics.track("Order Completed", {revenue: 10}),
    analytics.identify("user-1", {plan: "pro"}),
    analytics.group("acme", {name: "Acme"}),
    analytics.alias("user-1", "user-1"),
    analytics.screen("Settings"),
  ]);
  return analytics.user().anonymousId();
}
"""

RUDDERSTACK_CALLS = """
async ({writeKey, gatewayUrl, beacon}) => {
  const analytics = new rudderanalytics.RudderAnalytics();
  const options = {configUrl: gatewayUrl, logLevel: "ERROR"};
  if (beacon) {
    options.useBeacon = true;
    options.beaconQueueOptions = {flushQueueInterval: 300};
  }
  await new Promise((resolve) => {
    analytics.load(writeKey, gatewayUrl, options);
    analytics.ready(resolve);
  });
  analytics.page("Home");
  analytics.track("Order Completed", {revenue: 10});
  analytics.identify("user-1", {plan: "pro"});
  analytics.group("acme", {name: "Acme"});
  analytics.alias("user-1-new");
  return analytics.getAnonymousId();
}
"""


class _SdkPages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/segment.html":
            self._send(SEGMENT_PAGE, "text/html; charset=utf-8")
        elif path == "/rudderstack.html":
            self._send(RUDDERSTACK_PAGE, "text/html; charset=utf-8")
        elif path == "/rudderstack/index.js":
            self._send(RUDDERSTACK_BUNDLE.read_bytes(), "text/javascript")
        elif path.startswith("/analytics-next/bundles/") and "/" not in path.removeprefix("/analytics-next/bundles/"):
            bundle = SEGMENT_BUNDLES / path.removeprefix("/analytics-next/bundles/")
            if bundle.suffix == ".js" and bundle.is_file():
                self._send(bundle.read_bytes(), "text/javascript")
            else:
                self.send_error(404)
        else:
            self.send_error(404)

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest output is for failures
        pass


@pytest.fixture(scope="module")
def sdk_site() -> Iterator[str]:
    """The shop: the test pages and the SDK bundles, on their own 127.0.0.1 port."""
    if not SEGMENT_BUNDLES.is_dir() or not RUDDERSTACK_BUNDLE.is_file():
        pytest.fail(f"{SDKS} is missing: run bin/test (it runs `npm ci` in tests/browser_sdks)")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SdkPages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class Visit:
    """One page in Chromium, with what it asked of the gateway and what its console said."""

    def __init__(self, context: BrowserContext, gateway: Gateway, site: str) -> None:
        self.page: Page = context.new_page()
        self.gateway_url = gateway.url
        self.requests: list[tuple[str, str]] = []
        self.console: list[str] = []
        self.elsewhere: list[str] = []  # anything not for the shop or the gateway (Segment's or RudderStack's cloud)
        self.page.on(
            "request",
            lambda r: None if r.url.startswith((gateway.url, site)) else self.elsewhere.append(r.url),
        )
        self.page.on(
            "request",
            lambda r: (
                self.requests.append((r.method, r.url.removeprefix(gateway.url)))
                if r.url.startswith(gateway.url)
                else None
            ),
        )
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def posted(self) -> set[str]:
        """The gateway paths the page posted to, beacons included."""
        beaconed = self.page.evaluate("window.beaconed || []")
        posts = [url for method, url in self.requests if method == "POST"] + beaconed
        return {url.removeprefix(self.gateway_url).split("?", 1)[0] for url in posts}


def by_type(records: list[KafkaRecord]) -> dict[str, dict[str, Any]]:
    return {r.value["type"]: r.value for r in records}


@pytest.mark.browser
@pytest.mark.parametrize("batching", [False, True], ids=["one request per call", "batching mode"])
def test_analytics_next_with_no_inline_settings_delivers_every_call_type_to_kafka(
    gateway: Gateway,
    sdk_site: str,
    make_pipeline: Callable[..., PipelineCreated],
    open_chromium: Callable[[], BrowserContext],
    kafka_bootstrap: str,
    kafka_topic: str,
    batching: bool,
) -> None:
    # Given a pipeline that allows the shop, and the shop's page with analytics-next and no inline settings
    created = make_pipeline(origins=[sdk_site])
    visit = Visit(open_chromium(), gateway, sdk_site)
    visit.page.goto(sdk_site + "/segment.html")

    # When the page loads the SDK from the gateway and makes one call of each type
    anonymous_id = visit.page.evaluate(
        SEGMENT_CALLS, {"writeKey": created.pipeline_key, "gatewayUrl": gateway.url, "batching": batching}
    )

    # Then the SDK took its settings from the gateway and posted to it, on the paths of its mode
    assert ("GET", f"/v1/projects/{created.pipeline_key}/settings") in visit.requests, (visit.requests, visit.console)
    expected_paths = {"/v1/b"} if batching else {"/v1/p", "/v1/t", "/v1/i", "/v1/g", "/v1/a", "/v1/s"}
    assert visit.posted() == expected_paths, (visit.requests, visit.console)
    # And every call is in Kafka, as its type, from the SDK's visitor
    records = read_records(
        kafka_bootstrap, kafka_topic, pipeline_id=created.pipeline.id, expect=6, timeout=RECORDS_TIMEOUT
    )
    events = by_type(records)
    assert set(events) == {"page", "track", "identify", "group", "alias", "screen"}, (records, visit.console)
    assert events["track"]["event"] == "Order Completed"
    assert events["identify"]["traits"] == {"plan": "pro"}
    assert (events["alias"]["userId"], events["alias"]["previousId"]) == ("user-1", "user-1")
    assert events["page"]["anonymousId"] == anonymous_id
    assert events["page"]["context"]["library"]["name"] == "analytics.js"
    assert {e["source"]["kind"] for e in events.values()} == {"browser"}
    assert visit.elsewhere == []  # nothing went to Segment's cloud


@pytest.mark.browser
@pytest.mark.parametrize("beacon", [False, True], ids=["XHR", "beacon mode"])
def test_rudderstack_with_no_inline_settings_delivers_every_call_type_to_kafka(
    gateway: Gateway,
    sdk_site: str,
    make_pipeline: Callable[..., PipelineCreated],
    open_chromium: Callable[[], BrowserContext],
    kafka_bootstrap: str,
    kafka_topic: str,
    beacon: bool,
) -> None:
    # Given a pipeline that allows the shop, and the shop's page with RudderStack's SDK
    created = make_pipeline(origins=[sdk_site])
    context = open_chromium()
    visit = Visit(context, gateway, sdk_site)
    visit.page.goto(sdk_site + "/rudderstack.html")

    # When the page loads the SDK with the gateway as its config URL and data plane, and calls each method
    anonymous_id = visit.page.evaluate(
        RUDDERSTACK_CALLS, {"writeKey": created.pipeline_key, "gatewayUrl": gateway.url, "beacon": beacon}
    )

    # Then every call is in Kafka, as its type, from the SDK's visitor, with identify's traits
    records = read_records(
        kafka_bootstrap, kafka_topic, pipeline_id=created.pipeline.id, expect=5, timeout=RECORDS_TIMEOUT
    )
    events = by_type(records)
    assert set(events) == {"page", "track", "identify", "group", "alias"}, (visit.requests, visit.console)
    assert any(url.startswith("/sourceConfig/") for method, url in visit.requests if method == "GET")
    expected_paths = (
        {"/beacon/v1/batch"} if beacon else {"/v1/page", "/v1/track", "/v1/identify", "/v1/group", "/v1/alias"}
    )
    assert visit.posted() == expected_paths, visit.requests
    assert events["track"]["anonymousId"] == anonymous_id
    assert events["track"]["userId"] is None  # RudderStack sends "" for an anonymous visitor
    assert events["identify"]["traits"]["plan"] == "pro"
    assert events["alias"]["userId"] == "user-1-new"
    assert visit.elsewhere == []  # nothing went to RudderStack's cloud
    if beacon:  # a beacon carries cookies: the visitor got the gateway's
        assert "_dfid" in {c["name"] for c in context.cookies(gateway.url)}


# -- consent, GPC, consent required and IP mode, end to end in a real browser -------------------------------

CREDENTIALED_PAGE_VIEW = """
async ({gatewayUrl, writeKey, consent}) => {
  const context = {page: {url: location.href + "?gclid=G-1&fbclid=F-1"}, ip: "198.51.100.77"};
  if (consent) context.consent = consent;
  const response = await fetch(gatewayUrl + "/v1/p", {
    method: "POST",
    credentials: "include",
    headers: {"Content-Type": "text/plain"},
    body: JSON.stringify({writeKey, name: "Landing", context}),
  });
  return response.status;
}
"""


@pytest.mark.browser
def test_a_consent_required_truncating_pipeline_in_chromium_sets_cookies_only_as_consent_and_gpc_allow(
    gateway: Gateway,
    sdk_site: str,
    make_pipeline: Callable[..., PipelineCreated],
    open_chromium: Callable[[], BrowserContext],
    kafka_bootstrap: str,
    kafka_topic: str,
) -> None:
    # Given a pipeline that requires consent and truncates addresses, and a shop page in Chromium
    created = make_pipeline(origins=[sdk_site])
    set_privacy(created, consent_required=True, ip_mode="truncate")
    context = open_chromium()
    page = context.new_page()
    page.goto(sdk_site + "/segment.html")
    arguments = {"gatewayUrl": gateway.url, "writeKey": created.pipeline_key}

    def cookie_names() -> set[str]:
        return {c["name"] for c in context.cookies(gateway.url)}

    # When the visitor, from an ad, has not answered the banner yet
    assert page.evaluate(CREDENTIALED_PAGE_VIEW, {**arguments, "consent": None}) == 200
    # Then the browser holds only the strictly necessary cookie
    assert cookie_names() == {"_dfid"}

    # When the visitor grants analytics and denies advertising (Segment's consent wrapper's form)
    preferences = {"categoryPreferences": {"Analytics": True, "Advertising": False}}
    assert page.evaluate(CREDENTIALED_PAGE_VIEW, {**arguments, "consent": preferences}) == 200
    # Then the analytics id joins it, and still no advertising cookie
    assert cookie_names() == {"_dfid", "_ga"}

    # When the browser turns on Global Privacy Control and the visitor grants everything
    context.set_extra_http_headers({"Sec-GPC": "1"})
    everything = {"analytics": True, "advertising": True, "marketing": True}
    assert page.evaluate(CREDENTIALED_PAGE_VIEW, {**arguments, "consent": everything}) == 200
    # Then still no advertising cookie
    assert cookie_names() == {"_dfid", "_ga"}

    # When GPC is off again
    context.set_extra_http_headers({})
    assert page.evaluate(CREDENTIALED_PAGE_VIEW, {**arguments, "consent": everything}) == 200
    # Then the advertising ids are set, the click ids' cookies too
    assert {"_fbp", "_ttp", "_pin_unauth", "_scid", "_fbc", "_gcl_aw"} <= cookie_names()

    # And the four events are in Kafka, one visitor, tagged, with truncated addresses
    records = read_records(kafka_bootstrap, kafka_topic, pipeline_id=created.pipeline.id, expect=4)
    assert len({r.value["anonymousId"] for r in records}) == 1
    canonical = sorted(
        (
            r.value["context"]["consent"]["canonical"]["analytics"],
            r.value["context"]["consent"]["canonical"]["advertising"],
        )
        for r in records
    )
    assert canonical == [(False, False), (True, False), (True, True), (True, True)]
    assert {r.value["context"]["ip"] for r in records} == {"127.0.0.0"}
    assert {r.value["context"]["claimed"]["ip"] for r in records} == {"198.51.100.0"}
    assert [r.value["context"]["gpc"] for r in records].count(True) == 1
    assert {tuple(sorted(r.value["context"]["clickIds"])) for r in records} == {("fbclid", "gclid")}
