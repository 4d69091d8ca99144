"""CORS on the browser endpoints: preflights, allowed and refused origins, the empty allowlist."""

from __future__ import annotations

import gzip
from collections.abc import Callable

import pytest

from pipelines.services import PipelineCreated
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import options, post
from tests.fixtures.kafka import read_records

SHOP = "https://shop.example.com"
ELSEWHERE = "https://evil.example.net"
# How long to keep reading after the last expected record, so a stray one would show.
SETTLE = 1.0


@pytest.fixture
def shop_pipeline(make_pipeline: Callable[..., PipelineCreated]) -> PipelineCreated:
    return make_pipeline(origins=[SHOP])


def preflight_headers(origin: str, requested: str = "content-type") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": requested}


@pytest.mark.parametrize("path", ["/v1/t", "/v1/p", "/v1/i", "/v1/g"])
def test_a_preflight_is_answered_204_with_the_cors_headers_a_browser_needs(gateway: Gateway, path: str) -> None:
    # Given a page on the shop that wants to post JSON with an Authorization header (and one more)
    headers = preflight_headers(SHOP, "content-type,authorization,x-debug")

    # When the browser sends the preflight (it carries no key)
    response = options(gateway.url + path, headers=headers)

    # Then the origin is echoed with credentials, and only the headers the gateway reads are allowed
    assert (response.status, response.body) == (204, b"")
    assert response.cors_headers == {
        "Access-Control-Allow-Origin": SHOP,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, Authorization",
        "Access-Control-Max-Age": "86400",
    }
    assert response.header("Vary") == "Origin"


def test_a_preflight_naming_the_key_of_a_pipeline_that_allows_the_origin_is_answered(
    gateway: Gateway, shop_pipeline: PipelineCreated
) -> None:
    # Given a page that puts its key on the URL so the preflight can be checked
    url = f"{gateway.url}/v1/t?writeKey={shop_pipeline.pipeline_key}"

    # When the browser sends the preflight from an allowed origin
    response = options(url, headers=preflight_headers(SHOP))

    # Then the CORS headers are there
    assert response.status == 204
    assert response.header("Access-Control-Allow-Origin") == SHOP
    assert response.header("Access-Control-Allow-Credentials") == "true"


def test_a_preflight_naming_the_key_of_a_pipeline_that_refuses_the_origin_gets_no_cors_headers(
    gateway: Gateway, shop_pipeline: PipelineCreated
) -> None:
    # Given a page elsewhere that uses the shop's key on the URL
    url = f"{gateway.url}/v1/t?writeKey={shop_pipeline.pipeline_key}"

    # When the browser sends the preflight
    response = options(url, headers=preflight_headers(ELSEWHERE))

    # Then it gets no CORS headers, so the browser will not send the POST
    assert response.status == 204
    assert response.cors_headers == {}


def test_a_post_from_an_allowed_origin_echoes_it_with_credentials(
    gateway: Gateway, shop_pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a page on an allowed origin

    # When it posts an event
    response = post(
        gateway.url + "/v1/t", {"event": "Viewed"}, key=shop_pipeline.pipeline_key, headers={"Origin": SHOP}
    )

    # Then the response lets the page read it and keep the cookies, and the event is published
    assert (response.status, response.json()) == (200, {"success": True})
    assert response.cors_headers == {"Access-Control-Allow-Origin": SHOP, "Access-Control-Allow-Credentials": "true"}
    assert response.header("Vary") == "Origin"
    assert len(read_records(kafka_bootstrap, kafka_topic, pipeline_id=shop_pipeline.pipeline.id, expect=1)) == 1


def test_a_post_from_an_origin_outside_the_allowlist_is_refused_and_not_published(
    gateway: Gateway, shop_pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a page on an origin the pipeline does not allow

    # When it posts an event with the shop's key
    response = post(
        gateway.url + "/v1/t", {"event": "Viewed"}, key=shop_pipeline.pipeline_key, headers={"Origin": ELSEWHERE}
    )

    # Then it is refused with 403, without CORS headers or cookies, and nothing reaches Kafka
    assert response.status == 403
    assert response.json()["error"]["code"] == "ORIGIN_NOT_ALLOWED"
    assert response.cors_headers == {}
    assert response.cookies == {}
    pipeline_id = shop_pipeline.pipeline.id
    assert read_records(kafka_bootstrap, kafka_topic, pipeline_id=pipeline_id, expect=0, settle=SETTLE) == []


def test_a_pipeline_with_an_empty_allowlist_accepts_any_origin(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a pipeline with no allowed origins listed

    # When a page on any origin posts
    response = post(
        gateway.url + "/v1/t", {"event": "Viewed"}, key=pipeline.pipeline_key, headers={"Origin": ELSEWHERE}
    )

    # Then its origin is echoed and the event is published
    assert response.status == 200
    assert response.header("Access-Control-Allow-Origin") == ELSEWHERE
    assert len(read_records(kafka_bootstrap, kafka_topic, pipeline_id=pipeline.pipeline.id, expect=1)) == 1


def test_an_error_found_after_the_origin_check_is_readable_by_the_page(
    gateway: Gateway, shop_pipeline: PipelineCreated
) -> None:
    # Given a page on an allowed origin with a bug: a track call without an event name

    # When it posts
    response = post(gateway.url + "/v1/t", {"properties": {}}, key=shop_pipeline.pipeline_key, headers={"Origin": SHOP})

    # Then the 400 carries the CORS headers, so the SDK sees the error instead of a network failure
    assert response.status == 400
    assert response.json()["error"]["code"] == "INVALID_PAYLOAD"
    assert response.header("Access-Control-Allow-Origin") == SHOP


# -- before the pipeline is known (issue 11, item 10) ------------------------------------------------------

BEFORE_THE_PIPELINE_IS_KNOWN = {
    "no key": ({"event": "Viewed"}, None, {}),
    "an unknown key": ({"event": "Viewed"}, "dk_" + "Q" * 32, {}),
    "a body that is not JSON": (b'{"event": ', None, {}),
    "a gzip body that inflates past 64 KB": (b"", None, {"Content-Encoding": "gzip"}),
}


@pytest.mark.parametrize(
    ("body", "key", "headers"), BEFORE_THE_PIPELINE_IS_KNOWN.values(), ids=BEFORE_THE_PIPELINE_IS_KNOWN.keys()
)
def test_an_error_before_the_pipeline_is_known_is_readable_but_grants_no_credentials(
    gateway: Gateway, body: dict | bytes, key: str | None, headers: dict[str, str]
) -> None:
    # Given a page on an origin no pipeline was asked about, and a request refused before the key is resolved
    if headers.get("Content-Encoding") == "gzip":
        body = gzip.compress(b'{"event": "Big", "properties": {"pad": "' + b"x" * 100_000 + b'"}}')

    # When it is posted
    response = post(gateway.url + "/v1/t", body, key=key, headers={"Origin": ELSEWHERE, **headers})

    # Then the page may read the error (a non-credentialed SDK sees the status), but no credentials are granted
    assert response.status in (400, 401, 413), response.body
    assert response.header("Access-Control-Allow-Origin") == ELSEWHERE
    assert response.header("Access-Control-Allow-Credentials") is None
    assert response.header("Vary") == "Origin"


def test_origin_null_is_never_echoed(gateway: Gateway, pipeline: PipelineCreated) -> None:
    # Given a sandboxed frame, whose origin is the opaque "null", and a pipeline that accepts any origin

    # When it sends a preflight, an event, and an event with an unknown key
    preflight = options(gateway.url + "/v1/t", headers=preflight_headers("null"))
    accepted = post(gateway.url + "/v1/t", {"event": "Viewed"}, key=pipeline.pipeline_key, headers={"Origin": "null"})
    refused = post(gateway.url + "/v1/t", {"event": "Viewed"}, key="dk_" + "Q" * 32, headers={"Origin": "null"})

    # Then none of the answers names "null" as an allowed origin
    assert (preflight.status, accepted.status, refused.status) == (204, 200, 401)
    for response in (preflight, accepted, refused):
        assert response.cors_headers == {}, response.cors_headers


def test_origin_null_is_refused_by_a_pipeline_with_an_allowlist(
    gateway: Gateway, shop_pipeline: PipelineCreated
) -> None:
    # Given a pipeline that allows only the shop

    # When a sandboxed frame posts with its key
    response = post(
        gateway.url + "/v1/t", {"event": "Viewed"}, key=shop_pipeline.pipeline_key, headers={"Origin": "null"}
    )

    # Then it is refused as any other origin outside the list
    assert response.status == 403
    assert response.cors_headers == {}
