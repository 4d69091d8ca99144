"""The tracking pixel (GET /v1/pixel/{type}) end to end: a query string in, a GIF out, the envelope in Kafka.

Mail clients cannot retry and show nothing, so every answer is the same uncacheable GIF; whether an
event was published or dropped is seen in Kafka and in the drop counter at /metrics.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from urllib.parse import urlencode

import pytest

from pipelines import services
from pipelines.services import PipelineCreated
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import Response, cookie_header, request
from tests.fixtures.kafka import read_records, the_record
from tests.fixtures.payloads import returning_visitor
from tests.fixtures.scrape import scrape

GIF_LENGTH = 43
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate",
    "Pragma": "no-cache",
    "Expires": "0",
}
TWO_YEARS = "63072000"
VENDOR_COOKIES = ("_ga", "_fbp", "_ttp", "_pin_unauth", "_scid")
SETTLE = 1.0
GCLID = "Cj0KCQjw3tCyBhDBARIsAEY0XNm-_kqLAx9dQ3rGFhX8aLNu_BwE"
FBCLID = "IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgE"


def pixel(gateway: Gateway, event_type: str, query: dict[str, str], cookies: dict[str, str] | None = None) -> Response:
    headers = {"Cookie": cookie_header(cookies)} if cookies else None
    return request("GET", f"{gateway.url}/v1/pixel/{event_type}?{urlencode(query)}", headers=headers)


def assert_is_the_uncacheable_gif(response: Response) -> None:
    assert response.status == 200
    assert response.body.startswith(b"GIF89a")
    assert len(response.body) == GIF_LENGTH
    assert response.header("Content-Type") == "image/gif"
    assert {name: response.header(name) for name in NO_CACHE} == NO_CACHE


def only_record_is(kafka_bootstrap: str, kafka_topic: str, created: PipelineCreated, event: str) -> None:
    """The pipeline's records are exactly one, named ``event``. Sent after a dropped pixel from the same
    visitor (same message key, same partition), it proves the dropped one never reached Kafka."""
    records = read_records(kafka_bootstrap, kafka_topic, pipeline_id=created.pipeline.id, expect=1, settle=SETTLE)
    assert [record.value["event"] for record in records] == [event]


def pixel_drops(gateway: Gateway) -> dict[str, int]:
    """gateway_pixel_dropped_total by reason, as Prometheus would scrape it."""
    return {
        reason: int(n) for reason, n in scrape(gateway.url).by_label("gateway_pixel_dropped_total", "reason").items()
    }


# -- every type answers the GIF and publishes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "query", "expected"),
    [
        ("track", {"e": "Email Opened"}, {"event": "Email Opened"}),
        ("page", {"name": "Newsletter"}, {"name": "Newsletter"}),
        ("identify", {"uid": "user-42", "t.plan": "pro"}, {"userId": "user-42", "traits": {"plan": "pro"}}),
        ("group", {"gid": "acme", "t.seats": "12"}, {"groupId": "acme", "traits": {"seats": "12"}}),
    ],
)
def test_each_pixel_type_answers_an_uncacheable_gif_and_publishes_a_pixel_event(
    gateway: Gateway,
    pipeline: PipelineCreated,
    kafka_bootstrap: str,
    kafka_topic: str,
    event_type: str,
    query: dict[str, str],
    expected: dict[str, object],
) -> None:
    # Given an email that embeds the pixel with the pipeline's key
    # When the mail client loads it
    response = pixel(gateway, event_type, {"wk": pipeline.pipeline_key, **query})

    # Then it gets the 43-byte transparent GIF that no cache keeps
    assert_is_the_uncacheable_gif(response)
    # And the event is in Kafka as a pixel event of that type
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert record.value["type"] == event_type
    assert record.value["source"] == {"kind": "pixel", "id": None}
    assert record.value["pipelineId"] == pipeline.pipeline.id
    assert record.headers["source_kind"] == "pixel"
    assert {field: record.value[field] for field in expected} == expected


# -- query parameters become envelope fields -------------------------------------------------------------


def test_pixel_query_parameters_become_the_envelopes_fields(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a track pixel carrying every documented parameter, and a cache buster
    anonymous_id = str(uuid.uuid4())
    query = {
        "wk": pipeline.pipeline_key,
        "e": "Email Opened",
        "uid": "user-42",
        "aid": anonymous_id,
        "mid": "msg-campaign-7-user-42",
        "p.campaign": "spring-sale",
        "p.variant": "B",
        "t.email": "ada@example.com",
        "ts": "1714561200123",
        "cb": "8f1c2d",
    }

    # When the mail client loads it
    response = pixel(gateway, "track", query)

    # Then the envelope carries each parameter in its field; cb is not kept anywhere
    assert_is_the_uncacheable_gif(response)
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    envelope = record.value
    assert envelope["event"] == "Email Opened"
    assert envelope["userId"] == "user-42"
    assert envelope["anonymousId"] == anonymous_id
    assert envelope["messageId"] == "msg-campaign-7-user-42"
    assert envelope["properties"] == {"campaign": "spring-sale", "variant": "B"}
    assert envelope["traits"] == {"email": "ada@example.com"}
    assert envelope["originalTimestamp"] == "2024-05-01T11:00:00.123Z"
    assert envelope["timestamp"] == "2024-05-01T11:00:00.123Z"
    assert "cb" not in envelope and "cb" not in envelope["context"]
    assert record.key == f"{pipeline.pipeline.id}:{anonymous_id}"
    assert record.headers["message_id"] == "msg-campaign-7-user-42"


def test_click_ids_in_the_pixel_requests_own_query_become_context_click_ids(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a pixel URL that an ad platform decorated with its click IDs
    query = {
        "wk": pipeline.pipeline_key,
        "e": "Landing Viewed",
        "gclid": GCLID,
        "fbclid": FBCLID,
        "ttclid": "E.C.P.CtoBfhZ1",
        "msclkid": "9b2c1f0e6c7d1a2b3c4d5e6f7a8b9c0d",
        "utm_source": "newsletter",
    }

    # When it is loaded
    response = pixel(gateway, "track", query)

    # Then exactly the click IDs are in context.clickIds, not in properties
    assert_is_the_uncacheable_gif(response)
    envelope = the_record(kafka_bootstrap, kafka_topic, pipeline).value
    assert envelope["context"]["clickIds"] == {
        "gclid": GCLID,
        "fbclid": FBCLID,
        "ttclid": "E.C.P.CtoBfhZ1",
        "msclkid": "9b2c1f0e6c7d1a2b3c4d5e6f7a8b9c0d",
    }
    assert envelope["properties"] == {}


# -- identity cookies ------------------------------------------------------------------------------------


def test_a_first_pixel_load_sets_the_identity_cookies_and_its_dfid_is_the_anonymous_id(
    gateway: Gateway,
    make_pipeline: Callable[..., PipelineCreated],
    kafka_bootstrap: str,
    kafka_topic: str,
) -> None:
    # Given a pipeline with a cookie domain, and a page without JavaScript loading the pixel
    created = make_pipeline(cookie_domain="shop.example.com")

    # When a browser with no cookies loads it, with no aid
    response = pixel(gateway, "page", {"wk": created.pipeline_key, "name": "No-JS Home", "gclid": GCLID})

    # Then it gets the same cookies the browser endpoints set: an HttpOnly _dfid for two years,
    # script-readable vendor cookies, _gcl_aw for the click
    assert_is_the_uncacheable_gif(response)
    cookies = response.cookies
    assert set(cookies) == {"_dfid", *VENDOR_COOKIES, "_gcl_aw"}
    dfid = cookies["_dfid"]
    assert uuid.UUID(dfid.value).version == 4
    assert dfid.attributes_except_expires() == {
        "domain": "shop.example.com",
        "httponly": True,
        "max-age": TWO_YEARS,
        "path": "/",
        "samesite": "Lax",
        "secure": True,
    }
    assert [name for name, cookie in cookies.items() if cookie.attributes.get("httponly")] == ["_dfid"]
    assert re.fullmatch(rf"GCL\.\d+\.{re.escape(GCLID)}", cookies["_gcl_aw"].value)
    # And the event is that visitor's
    envelope = the_record(kafka_bootstrap, kafka_topic, created).value
    assert envelope["anonymousId"] == dfid.value
    assert envelope["context"]["vendorIds"] == {
        "ga": cookies["_ga"].value,
        "fbp": cookies["_fbp"].value,
        "ttp": cookies["_ttp"].value,
        "pinUnauth": cookies["_pin_unauth"].value,
        "scid": cookies["_scid"].value,
        "gclAw": cookies["_gcl_aw"].value,
    }


def test_a_returning_visitors_dfid_cookie_becomes_the_anonymous_id_and_is_not_reset(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a browser that already holds the gateway's cookies
    returning = returning_visitor()

    # When it loads a pixel without an aid
    response = pixel(gateway, "track", {"wk": pipeline.pipeline_key, "e": "Email Opened"}, cookies=returning)

    # Then no cookie is set again, and the envelope is that visitor's
    assert_is_the_uncacheable_gif(response)
    assert response.cookies == {}
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert record.value["anonymousId"] == returning["_dfid"]
    assert record.value["context"]["vendorIds"] == {
        "ga": returning["_ga"],
        "fbp": returning["_fbp"],
        "ttp": returning["_ttp"],
        "pinUnauth": returning["_pin_unauth"],
        "scid": returning["_scid"],
    }
    assert record.key == f"{pipeline.pipeline.id}:{returning['_dfid']}"


# -- what cannot be published still answers the GIF, and is counted ---------------------------------------


def test_a_pixel_with_an_unknown_key_answers_the_gif_publishes_nothing_and_is_counted(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a pixel whose key was mistyped: the pipeline's key with its last character changed
    key = pipeline.pipeline_key
    unknown = key[:-1] + ("A" if key[-1] != "A" else "B")
    before = pixel_drops(gateway)

    # When a mail client loads it
    response = pixel(gateway, "track", {"wk": unknown, "e": "Email Opened"})

    # Then it still sees the GIF, nothing is published, and the drop is counted with its reason
    assert_is_the_uncacheable_gif(response)
    assert read_records(kafka_bootstrap, kafka_topic, pipeline_id=pipeline.pipeline.id, expect=0, settle=SETTLE) == []
    assert pixel_drops(gateway).get("INVALID_PIPELINE_KEY", 0) == before.get("INVALID_PIPELINE_KEY", 0) + 1


@pytest.mark.parametrize("wk", ["", "not-a-key", "dk_" + "x" * 32], ids=["empty", "malformed", "never-issued"])
def test_a_pixel_without_a_usable_key_answers_the_gif_and_is_counted(gateway: Gateway, wk: str) -> None:
    # Given a pixel URL whose wk is missing or was never issued
    before = pixel_drops(gateway)
    query = {"e": "Email Opened", **({"wk": wk} if wk else {})}

    # When it is loaded
    response = pixel(gateway, "track", query)

    # Then the mail client sees the GIF and the drop is counted as an invalid key
    assert_is_the_uncacheable_gif(response)
    assert pixel_drops(gateway).get("INVALID_PIPELINE_KEY", 0) == before.get("INVALID_PIPELINE_KEY", 0) + 1


def test_a_pixel_with_a_revoked_key_publishes_nothing_while_its_pipelines_new_key_does(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a key rotated out and revoked before any pixel used it
    new_key = services.key_rotate(key=pipeline.pipeline_key).key
    services.key_revoke(key=pipeline.pipeline_key)
    visitor = str(uuid.uuid4())
    before = pixel_drops(gateway)

    # When an old email loads the pixel with the revoked key, then a new one with the new key
    old = pixel(gateway, "track", {"wk": pipeline.pipeline_key, "aid": visitor, "e": "Old Email Opened"})
    new = pixel(gateway, "track", {"wk": new_key, "aid": visitor, "e": "New Email Opened"})

    # Then both see the GIF, but only the new key's event is in Kafka, and the old one is counted
    assert_is_the_uncacheable_gif(old)
    assert_is_the_uncacheable_gif(new)
    only_record_is(kafka_bootstrap, kafka_topic, pipeline, "New Email Opened")
    assert pixel_drops(gateway).get("INVALID_PIPELINE_KEY", 0) == before.get("INVALID_PIPELINE_KEY", 0) + 1


def test_a_webhook_source_id_is_not_a_pixel_key(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a webhook source of the pipeline: its wh_ id sits in vendors' dashboards, it is no pipeline key
    source = services.webhook_source_create(pipeline=pipeline.pipeline, scheme="none")
    visitor = str(uuid.uuid4())
    before = pixel_drops(gateway)

    # When a pixel is loaded with that id as its key, then one with the pipeline's key
    wrong = pixel(gateway, "track", {"wk": source.id, "aid": visitor, "e": "Forged Open"})
    right = pixel(gateway, "track", {"wk": pipeline.pipeline_key, "aid": visitor, "e": "Email Opened"})

    # Then only the pipeline key's event is published; the other is counted as an invalid key
    assert_is_the_uncacheable_gif(wrong)
    assert_is_the_uncacheable_gif(right)
    only_record_is(kafka_bootstrap, kafka_topic, pipeline, "Email Opened")
    assert pixel_drops(gateway).get("INVALID_PIPELINE_KEY", 0) == before.get("INVALID_PIPELINE_KEY", 0) + 1


@pytest.mark.parametrize(
    ("path_type", "query"),
    [
        ("bogus", {"e": "Dropped Open"}),
        ("track", {"e": "Dropped Open", "ts": "yesterday"}),
        ("track", {"e": "Dropped Open", "ts": "99999999999999999999"}),
        ("track", {}),
        ("group", {"e": "Dropped Open"}),
    ],
    ids=["unknown-type", "ts-not-a-number", "ts-out-of-range", "track-without-event-name", "group-without-gid"],
)
def test_a_pixel_that_cannot_become_an_event_answers_the_gif_publishes_nothing_and_is_counted(
    gateway: Gateway,
    pipeline: PipelineCreated,
    kafka_bootstrap: str,
    kafka_topic: str,
    path_type: str,
    query: dict[str, str],
) -> None:
    # Given a valid key on a pixel URL that is wrong in some other way
    visitor = str(uuid.uuid4())
    before = pixel_drops(gateway)

    # When it is loaded, then a good pixel from the same visitor
    bad = pixel(gateway, path_type, {"wk": pipeline.pipeline_key, "aid": visitor, **query})
    good = pixel(gateway, "track", {"wk": pipeline.pipeline_key, "aid": visitor, "e": "Email Opened"})

    # Then both answer the GIF, only the good one is in Kafka, and the drop is counted as a bad payload
    assert_is_the_uncacheable_gif(bad)
    assert_is_the_uncacheable_gif(good)
    only_record_is(kafka_bootstrap, kafka_topic, pipeline, "Email Opened")
    assert pixel_drops(gateway).get("INVALID_PAYLOAD", 0) == before.get("INVALID_PAYLOAD", 0) + 1
