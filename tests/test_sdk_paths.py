"""The paths the browser SDKs post to (issue 12, build 2): analytics.js's /v1/a, /v1/s and batching
/v1/b, Segment's HTTP Tracking API (/v1/track, …), RudderStack's shapes, its beacon, and the preflights."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest

from pipelines.services import PipelineCreated
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import assert_error, basic, options, post
from tests.fixtures.kafka import read_records, the_record

SHOP = "https://shop.example.com"


# -- analytics.js's alias and screen, and its batch -------------------------------------------------------


def test_an_alias_whose_user_id_equals_its_previous_id_is_accepted(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given analytics-next's alias() right after identify(): to and from are the same user
    body = {"writeKey": pipeline.pipeline_key, "userId": "user-9", "previousId": "user-9", "anonymousId": "a-1"}

    # When it posts to /v1/a as text/plain with the key in the body
    response = post(gateway.url + "/v1/a", body, content_type="text/plain")

    # Then it is accepted and published as an alias, previousId kept
    assert (response.status, response.json()) == (200, {"success": True})
    record = the_record(kafka_bootstrap, kafka_topic, pipeline).value
    assert (record["type"], record["userId"], record["previousId"]) == ("alias", "user-9", "user-9")


def test_a_screen_call_on_v1_s_is_published_as_a_screen(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a screen call, with Basic auth as analytics-next sends it
    body = {"name": "Checkout", "anonymousId": "a-2", "properties": {"step": 2}}

    # When it posts to /v1/s
    response = post(gateway.url + "/v1/s", body, headers={"Authorization": basic(pipeline.pipeline_key)})

    # Then it is a screen event
    assert response.status == 200, response.body
    record = the_record(kafka_bootstrap, kafka_topic, pipeline).value
    assert (record["type"], record["name"], record["properties"]) == ("screen", "Checkout", {"step": 2})


def test_an_analytics_next_batch_is_published_event_by_event_and_answered_with_the_batch_report(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given analytics-next's batching mode: text/plain, the key in the body, events of every type,
    # one of them broken (a track call without an event name)
    batch = [
        {"type": "page", "name": "Home", "anonymousId": "a-3", "messageId": "b-1"},
        {"type": "track", "event": "Clicked", "anonymousId": "a-3", "messageId": "b-2"},
        {"type": "track", "anonymousId": "a-3", "messageId": "b-3"},
        {"type": "identify", "userId": "u-3", "traits": {"plan": "pro"}, "messageId": "b-4"},
    ]
    body = {"writeKey": pipeline.pipeline_key, "batch": batch, "sentAt": "2024-05-01T11:00:00.000Z"}

    # When it posts to /v1/b from an allowed page
    response = post(gateway.url + "/v1/b", body, content_type="text/plain", headers={"Origin": SHOP})

    # Then the report names the broken event, the page can read it, the visitor gets its cookie,
    # and the good events are in Kafka with their own types
    assert response.status == 200, response.body
    report = response.json()
    assert (report["success"], report["accepted"], report["rejected"]) == (True, 3, 1)
    assert [(e["index"], e["code"]) for e in report["errors"]] == [(2, "INVALID_PAYLOAD")]
    assert response.header("Access-Control-Allow-Origin") == SHOP
    assert "_dfid" in response.cookies
    records = read_records(kafka_bootstrap, kafka_topic, pipeline_id=pipeline.pipeline.id, expect=3)
    assert sorted((r.value["messageId"], r.value["type"]) for r in records) == [
        ("b-1", "page"),
        ("b-2", "track"),
        ("b-4", "identify"),
    ]
    assert {r.value["source"]["kind"] for r in records} == {"browser"}


# -- Segment's HTTP Tracking API ------------------------------------------------------------------------

HTTP_API_CALLS = {
    "track": {"event": "Order Completed", "properties": {"revenue": 10}},
    "page": {"name": "Pricing"},
    "screen": {"name": "Settings"},
    "identify": {"traits": {"email": "ada@example.com"}},
    "group": {"groupId": "acme"},
    "alias": {"previousId": "anon-old"},
}


@pytest.mark.parametrize(("path", "event"), HTTP_API_CALLS.items(), ids=HTTP_API_CALLS.keys())
def test_each_segment_http_api_path_publishes_its_type_with_browser_semantics(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str, path: str, event: dict
) -> None:
    # Given a call of Segment's HTTP API, with Basic auth, from a page
    body = {**event, "userId": "user-1"}

    # When it is posted to /v1/<type>
    response = post(
        f"{gateway.url}/v1/{path}", body, headers={"Authorization": basic(pipeline.pipeline_key), "Origin": SHOP}
    )

    # Then the path decides the type, the page can read the answer, the visitor gets its cookie
    assert (response.status, response.json()) == (200, {"success": True})
    assert response.header("Access-Control-Allow-Origin") == SHOP
    assert "_dfid" in response.cookies
    record = the_record(kafka_bootstrap, kafka_topic, pipeline).value
    assert record["type"] == path
    assert record["source"] == {"kind": "browser", "id": None}


@pytest.mark.parametrize("where", ["bearer", "basic", "body", "query"])
def test_the_http_api_takes_the_key_in_any_of_the_accepted_places(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str, where: str
) -> None:
    # Given a track call with the key in one place
    key = pipeline.pipeline_key
    body: dict = {"event": "Viewed", "anonymousId": "a-5"}
    url, headers, kwargs = gateway.url + "/v1/track", {}, {}
    if where == "bearer":
        kwargs["key"] = key
    elif where == "basic":
        headers["Authorization"] = basic(key)
    elif where == "body":
        body["writeKey"] = key
    else:
        url += f"?writeKey={key}"

    # When it is posted
    response = post(url, body, headers=headers, **kwargs)

    # Then it is accepted
    assert response.status == 200, response.body
    assert the_record(kafka_bootstrap, kafka_topic, pipeline).value["event"] == "Viewed"


# -- RudderStack ------------------------------------------------------------------------------------------


def test_a_rudderstack_anonymous_identify_reads_its_ids_and_traits_where_rudderstack_puts_them(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given RudderStack's identify for an anonymous visitor: userId "", traits in context.traits,
    # the anonymous id in a base64 AnonymousId header only
    body = {"type": "identify", "userId": "", "context": {"traits": {"plan": "free"}}, "messageId": "rs-1"}
    headers = {
        "Authorization": basic(pipeline.pipeline_key),
        "AnonymousId": base64.b64encode(b"rs-anon-1").decode(),
        "SentAt": "2024-05-01T11:00:00.000Z",
    }

    # When it posts to /v1/identify
    response = post(gateway.url + "/v1/identify", body, headers=headers)

    # Then it is the anonymous visitor's identify, with the traits
    assert response.status == 200, response.body
    record = the_record(kafka_bootstrap, kafka_topic, pipeline).value
    assert (record["userId"], record["anonymousId"], record["traits"]) == (None, "rs-anon-1", {"plan": "free"})


def test_an_anonymous_id_in_the_body_wins_over_the_anonymousid_header(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a call whose body and header both name the visitor
    headers = {"Authorization": basic(pipeline.pipeline_key), "AnonymousId": base64.b64encode(b"header").decode()}

    # When it is posted
    response = post(gateway.url + "/v1/track", {"event": "E", "anonymousId": "body"}, headers=headers)

    # Then the body's id is the event's
    assert response.status == 200
    assert the_record(kafka_bootstrap, kafka_topic, pipeline).value["anonymousId"] == "body"


def test_a_rudderstack_beacon_batch_with_the_key_on_the_url_is_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given RudderStack's beacon mode: text/plain, no Authorization, the key on the URL, cookies sent
    batch = [
        {"type": "track", "event": "Left Page", "anonymousId": "rs-2", "userId": "", "messageId": "bc-1"},
        {"type": "page", "name": "Home", "anonymousId": "rs-2", "messageId": "bc-2"},
    ]
    body = json.dumps({"batch": batch, "sentAt": "2024-05-01T11:00:00.000Z"})
    url = f"{gateway.url}/beacon/v1/batch?writeKey={pipeline.pipeline_key}"

    # When the browser sends the beacon
    response = post(url, body, content_type="text/plain;charset=UTF-8", headers={"Origin": SHOP})

    # Then both events are in Kafka and the visitor gets its cookie
    assert response.status == 200, response.body
    assert response.json()["accepted"] == 2
    assert "_dfid" in response.cookies
    records = read_records(kafka_bootstrap, kafka_topic, pipeline_id=pipeline.pipeline.id, expect=2)
    assert sorted(r.value["messageId"] for r in records) == ["bc-1", "bc-2"]


def test_a_beacon_with_an_unknown_key_is_refused(gateway: Gateway) -> None:
    # Given a beacon whose key is unknown

    # When it is sent
    response = post(f"{gateway.url}/beacon/v1/batch?writeKey=dk_{'Z' * 32}", {"batch": []}, content_type="text/plain")

    # Then it is refused in the error shape
    assert_error(response, 401, "INVALID_PIPELINE_KEY")


def test_a_batch_posted_from_a_page_is_answered_with_cors_and_treated_as_a_browsers(
    gateway: Gateway, make_pipeline: Callable[..., PipelineCreated], kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given RudderStack's batching mode: /v1/batch from a page, Basic auth, a context that claims an ip
    created = make_pipeline(origins=[SHOP])
    body = {"batch": [{"type": "track", "event": "E", "anonymousId": "rs-3", "context": {"ip": "198.51.100.1"}}]}
    headers = {"Authorization": basic(created.pipeline_key), "Origin": SHOP}

    # When it is posted
    response = post(gateway.url + "/v1/batch", body, headers=headers)

    # Then the page can read the report, and the event's address is the one the gateway saw
    assert response.status == 200, response.body
    assert response.header("Access-Control-Allow-Origin") == SHOP
    context = the_record(kafka_bootstrap, kafka_topic, created).value["context"]
    assert (context["ip"], context["claimed"]) == ("127.0.0.1", {"ip": "198.51.100.1"})


# -- preflights ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/t", "/v1/a", "/v1/s", "/v1/b", "/v1/track", "/v1/identify", "/v1/batch"])
def test_a_preflight_allows_the_headers_the_sdks_send(gateway: Gateway, path: str) -> None:
    # Given a preflight asking for every header analytics-next and RudderStack send, and one more
    requested = "content-type,authorization,anonymousid,sentat,x-retry-count,rsa-retry-attempt,rsa-retry-reason,x-debug"
    headers = {"Origin": SHOP, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": requested}

    # When the browser sends it
    response = options(gateway.url + path, headers=headers)

    # Then every SDK header is allowed, and only those
    assert response.status == 204
    allowed = [h.strip() for h in (response.header("Access-Control-Allow-Headers") or "").split(",")]
    assert allowed == [
        "Content-Type",
        "Authorization",
        "AnonymousId",
        "SentAt",
        "X-Retry-Count",
        "rsa-retry-attempt",
        "rsa-retry-reason",
    ]
    assert response.header("Access-Control-Allow-Methods") == "POST, OPTIONS"
