"""Browser calls (/v1/t, /v1/p, /v1/i, /v1/g) end to end: HTTP in, the canonical envelope out of Kafka."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from pipelines.services import PipelineCreated
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import Response, basic, post
from tests.fixtures.kafka import KafkaRecord, the_record

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def now_ms() -> datetime:
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def received_between(record: KafkaRecord, before: datetime, after: datetime) -> datetime:
    received = datetime.fromisoformat(record.value["receivedAt"])
    assert before <= received <= after, (before, received, after)
    return received


# What an event says about consent when the page said nothing (ingestion.consent): essential only.
CONSENT_NOT_GIVEN = {
    "canonical": {
        "essential": True,
        "functional": None,
        "analytics": None,
        "marketing": None,
        "advertising": None,
        "personalization": None,
    }
}


def vendor_ids_set_by(response: Response) -> dict[str, str]:
    cookies = response.cookies
    return {
        "ga": cookies["_ga"].value,
        "fbp": cookies["_fbp"].value,
        "ttp": cookies["_ttp"].value,
        "pinUnauth": cookies["_pin_unauth"].value,
        "scid": cookies["_scid"].value,
    }


def analytics_id_set_by(response: Response) -> dict[str, str]:
    """With Global Privacy Control on, the analytics ID is the only vendor ID minted (SPEC §4)."""
    assert not {"_fbp", "_ttp", "_pin_unauth", "_scid", "_fbc", "_gcl_aw"} & response.cookies.keys(), response.cookies
    return {"ga": response.cookies["_ga"].value}


def expected_headers(created: PipelineCreated, message_id: str) -> dict[str, str]:
    return {
        "pipeline_id": created.pipeline.id,
        "source_kind": "browser",
        "message_id": message_id,
        "schema_version": "1",
    }


# -- one test per call type: every envelope field, the key, the headers ------------------------------


def test_a_track_call_is_published_as_a_canonical_envelope(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a Segment-style track call from a browser whose clock is two years behind,
    # sent 2.5 s after the event happened, with Global Privacy Control on.
    event = {
        "messageId": "ajs-next-1714561200000-5b0e3c1e-61a4-4a8e-9d3f-0c7b8f1d2a11",
        "event": "Order Completed",
        "properties": {"orderId": "o-1001", "revenue": 42.5, "currency": "EUR", "items": [{"sku": "A-1"}]},
        "userId": "user-42",
        "anonymousId": "anon-track-1",
        "timestamp": "2024-05-01T11:00:00.000Z",
        "sentAt": "2024-05-01T11:00:02.500Z",
        "context": {
            "page": {"url": "https://shop.example.com/checkout", "path": "/checkout", "title": "Checkout"},
            "locale": "en-GB",
            "library": {"name": "analytics-next", "version": "1.84.0"},
        },
        "integrations": {"All": True},
        "_metadata": {"bundled": ["Segment.io"]},
    }

    # When it is posted
    before = now_ms()
    response = post(
        gateway.url + "/v1/t", event, key=pipeline.pipeline_key, headers={"User-Agent": CHROME, "Sec-GPC": "1"}
    )
    after = now_ms()

    # Then Kafka holds the canonical envelope, keyed by the visitor and with its headers
    assert (response.status, response.json()) == (200, {"success": True})
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    received = received_between(record, before, after)
    assert record.value == {
        "messageId": event["messageId"],
        "type": "track",
        "event": "Order Completed",
        "name": None,
        "properties": event["properties"],
        "traits": {},
        "userId": "user-42",
        "anonymousId": "anon-track-1",
        "groupId": None,
        "timestamp": iso(received - timedelta(seconds=2.5)),
        "originalTimestamp": "2024-05-01T11:00:00.000Z",
        "sentAt": "2024-05-01T11:00:02.500Z",
        "receivedAt": iso(received),
        "context": {
            **event["context"],
            "ip": "127.0.0.1",
            "userAgent": CHROME,
            "clickIds": {},
            "vendorIds": analytics_id_set_by(response),
            "gpc": True,
            "consent": CONSENT_NOT_GIVEN,
        },
        "integrations": {"All": True},
        "_metadata": {"bundled": ["Segment.io"]},
        "pipelineId": pipeline.pipeline.id,
        "source": {"kind": "browser", "id": None},
        "schemaVersion": 1,
    }
    assert record.key == f"{pipeline.pipeline.id}:anon-track-1"
    assert record.headers == expected_headers(pipeline, event["messageId"])


def test_a_page_call_is_published_as_a_canonical_envelope(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a first-visit page call with no ids, no times and no message id of its own
    event = {
        "name": "Pricing",
        "properties": {"path": "/pricing", "title": "Pricing"},
        "context": {"page": {"url": "https://shop.example.com/pricing?utm_source=news", "path": "/pricing"}},
    }

    # When it is posted
    before = now_ms()
    response = post(gateway.url + "/v1/p", event, key=pipeline.pipeline_key, headers={"User-Agent": CHROME})
    after = now_ms()

    # Then the gateway supplies the message id, the anonymous id (its _dfid cookie) and the time
    assert (response.status, response.json()) == (200, {"success": True})
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    received = received_between(record, before, after)
    message_id = record.value["messageId"]
    assert uuid.UUID(message_id).version == 4
    dfid = response.cookies["_dfid"].value
    assert record.value == {
        "messageId": message_id,
        "type": "page",
        "event": None,
        "name": "Pricing",
        "properties": {"path": "/pricing", "title": "Pricing"},
        "traits": {},
        "userId": None,
        "anonymousId": dfid,
        "groupId": None,
        "timestamp": iso(received),
        "originalTimestamp": None,
        "sentAt": None,
        "receivedAt": iso(received),
        "context": {
            "page": event["context"]["page"],
            "ip": "127.0.0.1",
            "userAgent": CHROME,
            "clickIds": {},
            "vendorIds": vendor_ids_set_by(response),
            "gpc": False,
            "consent": CONSENT_NOT_GIVEN,
        },
        "pipelineId": pipeline.pipeline.id,
        "source": {"kind": "browser", "id": None},
        "schemaVersion": 1,
    }
    assert record.key == f"{pipeline.pipeline.id}:{dfid}"
    assert record.headers == expected_headers(pipeline, message_id)


def test_an_identify_call_is_published_as_a_canonical_envelope(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a returning visitor (cookies from an earlier visit) who signs in; the event carries its
    # own timestamp but no sentAt, so there is no skew to correct
    dfid = str(uuid.uuid4())
    cookies = {
        "_dfid": dfid,
        "_ga": "GA1.1.123456789.1714561200",
        "_fbp": "fb.1.1714561200000.1234567890",
        "_ttp": str(uuid.uuid4()),
        "_pin_unauth": str(uuid.uuid4()),
        "_scid": str(uuid.uuid4()),
    }
    event = {
        "messageId": "msg-identify-1",
        "userId": "user-7",
        "traits": {"email": "ada@example.com", "plan": "pro", "age": 36},
        "timestamp": "2024-05-01T13:00:00+02:00",
    }

    # When it is posted
    before = now_ms()
    response = post(
        gateway.url + "/v1/i", event, key=pipeline.pipeline_key, cookies=cookies, headers={"User-Agent": CHROME}
    )
    after = now_ms()

    # Then the envelope carries the cookie ids, and the client's time normalised to UTC
    assert (response.status, response.json()) == (200, {"success": True})
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    received = received_between(record, before, after)
    assert record.value == {
        "messageId": "msg-identify-1",
        "type": "identify",
        "event": None,
        "name": None,
        "properties": {},
        "traits": {"email": "ada@example.com", "plan": "pro", "age": 36},
        "userId": "user-7",
        "anonymousId": dfid,
        "groupId": None,
        "timestamp": "2024-05-01T11:00:00.000Z",
        "originalTimestamp": "2024-05-01T11:00:00.000Z",
        "sentAt": None,
        "receivedAt": iso(received),
        "context": {
            "ip": "127.0.0.1",
            "userAgent": CHROME,
            "clickIds": {},
            "vendorIds": {
                "ga": cookies["_ga"],
                "fbp": cookies["_fbp"],
                "ttp": cookies["_ttp"],
                "pinUnauth": cookies["_pin_unauth"],
                "scid": cookies["_scid"],
            },
            "gpc": False,
            "consent": CONSENT_NOT_GIVEN,
        },
        "pipelineId": pipeline.pipeline.id,
        "source": {"kind": "browser", "id": None},
        "schemaVersion": 1,
    }
    assert record.key == f"{pipeline.pipeline.id}:{dfid}"
    assert record.headers == expected_headers(pipeline, "msg-identify-1")


def test_a_group_call_is_published_as_a_canonical_envelope(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a group call whose context names its own user agent and whose clock runs ahead
    event = {
        "messageId": "msg-group-1",
        "groupId": "acme-inc",
        "traits": {"name": "Acme Inc", "employees": 250},
        "userId": "user-7",
        "anonymousId": "anon-group-1",
        "timestamp": "2031-01-01T00:00:59.000Z",
        "sentAt": "2031-01-01T00:01:00.000Z",
        "context": {"userAgent": "CustomAgent/1.0", "timezone": "Europe/Paris"},
    }

    # When it is posted
    before = now_ms()
    response = post(
        gateway.url + "/v1/g", event, key=pipeline.pipeline_key, headers={"User-Agent": CHROME, "Sec-GPC": "1"}
    )
    after = now_ms()

    # Then the user agent is the one the gateway saw, the page's claim kept apart (issue 11: a page's
    # context is a claim), and the time is one second before receipt
    assert (response.status, response.json()) == (200, {"success": True})
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    received = received_between(record, before, after)
    assert record.value == {
        "messageId": "msg-group-1",
        "type": "group",
        "event": None,
        "name": None,
        "properties": {},
        "traits": {"name": "Acme Inc", "employees": 250},
        "userId": "user-7",
        "anonymousId": "anon-group-1",
        "groupId": "acme-inc",
        "timestamp": iso(received - timedelta(seconds=1)),
        "originalTimestamp": "2031-01-01T00:00:59.000Z",
        "sentAt": "2031-01-01T00:01:00.000Z",
        "receivedAt": iso(received),
        "context": {
            "userAgent": CHROME,
            "claimed": {"userAgent": "CustomAgent/1.0"},
            "timezone": "Europe/Paris",
            "ip": "127.0.0.1",
            "clickIds": {},
            "vendorIds": analytics_id_set_by(response),
            "gpc": True,
            "consent": CONSENT_NOT_GIVEN,
        },
        "pipelineId": pipeline.pipeline.id,
        "source": {"kind": "browser", "id": None},
        "schemaVersion": 1,
    }
    assert record.key == f"{pipeline.pipeline.id}:anon-group-1"
    assert record.headers == expected_headers(pipeline, "msg-group-1")


# -- what the path and the gateway decide, whatever the body says -------------------------------------


def test_the_path_decides_the_type_whatever_the_body_says(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a body that claims to be an identify call
    event = {"type": "identify", "event": "Signed Up", "anonymousId": "anon-1"}

    # When it is posted to the track path
    response = post(gateway.url + "/v1/t", event, key=pipeline.pipeline_key)

    # Then it is published as a track
    assert response.status == 200
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert (record.value["type"], record.value["event"]) == ("track", "Signed Up")


def test_a_client_cannot_forge_the_fields_the_gateway_owns(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a body that sets pipelineId, source, schemaVersion and receivedAt itself
    event = {
        "event": "Forged",
        "anonymousId": "anon-1",
        "pipelineId": "pip_someone_else",
        "source": {"kind": "server", "id": "src_forged"},
        "schemaVersion": 99,
        "receivedAt": "2000-01-01T00:00:00.000Z",
    }

    # When it is posted
    before = now_ms()
    response = post(gateway.url + "/v1/t", event, key=pipeline.pipeline_key)
    after = now_ms()

    # Then the gateway's own values are published
    assert response.status == 200
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    received_between(record, before, after)
    assert record.value["pipelineId"] == pipeline.pipeline.id
    assert record.value["source"] == {"kind": "browser", "id": None}
    assert record.value["schemaVersion"] == 1


def test_x_forwarded_for_from_an_untrusted_peer_is_not_believed(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a gateway with no trusted proxies, and a client that claims another address
    headers = {"X-Forwarded-For": "203.0.113.9"}

    # When it posts
    response = post(gateway.url + "/v1/t", {"event": "Clicked"}, key=pipeline.pipeline_key, headers=headers)

    # Then the envelope carries the socket peer's address
    assert response.status == 200
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert record.value["context"]["ip"] == "127.0.0.1"


def test_a_timestamp_before_the_year_1000_is_published_as_iso_8601(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given an event whose clock is badly wrong
    event = {"event": "Viewed", "timestamp": "0999-01-01T00:00:00Z"}

    # When it is posted
    response = post(gateway.url + "/v1/t", event, key=pipeline.pipeline_key)

    # Then its time is published with a four-digit year, as ISO 8601 requires
    assert response.status == 200
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert (record.value["timestamp"], record.value["originalTimestamp"]) == (
        "0999-01-01T00:00:00.000Z",
        "0999-01-01T00:00:00.000Z",
    )


# -- the pipeline key, wherever the client puts it; the body, however it is encoded --------------------


def test_a_key_in_basic_authorization_is_accepted(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a Segment-style SDK that sends the key as a Basic user name with no password
    headers = {"Authorization": basic(pipeline.pipeline_key)}

    # When it posts
    response = post(gateway.url + "/v1/t", {"event": "Basic", "messageId": "m-basic"}, headers=headers)

    # Then the event is accepted and published
    assert (response.status, response.json()) == (200, {"success": True})
    assert the_record(kafka_bootstrap, kafka_topic, pipeline).value["messageId"] == "m-basic"


def test_a_write_key_in_a_text_plain_body_is_accepted_and_not_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a browser SDK that avoids a preflight: text/plain, key in the body, no Authorization
    event = {"event": "Plain", "messageId": "m-plain", "writeKey": pipeline.pipeline_key}

    # When it posts
    response = post(gateway.url + "/v1/t", event, content_type="text/plain;charset=UTF-8")

    # Then the event is published, without the key
    assert (response.status, response.json()) == (200, {"success": True})
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert record.value["messageId"] == "m-plain"
    assert "writeKey" not in record.value


def test_segment_analytics_next_style_request_is_accepted(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given what @segment/analytics-next sends: text/plain, Basic auth *and* writeKey in the body
    event = {"event": "Both", "messageId": "m-both", "anonymousId": "anon-1", "writeKey": pipeline.pipeline_key}

    # When it posts
    response = post(
        gateway.url + "/v1/t",
        event,
        content_type="text/plain",
        headers={"Authorization": basic(pipeline.pipeline_key)},
    )

    # Then the event is published
    assert (response.status, response.json()) == (200, {"success": True})
    assert the_record(kafka_bootstrap, kafka_topic, pipeline).value["messageId"] == "m-both"


def test_a_gzip_body_is_accepted(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a gzip-encoded body
    event = {"event": "Zipped", "messageId": "m-gzip", "properties": {"note": "x" * 2000}}

    # When it is posted with Content-Encoding: gzip
    response = post(gateway.url + "/v1/t", event, key=pipeline.pipeline_key, gzipped=True)

    # Then the inflated event is published
    assert (response.status, response.json()) == (200, {"success": True})
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert (record.value["messageId"], record.value["properties"]) == ("m-gzip", {"note": "x" * 2000})


def test_a_body_of_exactly_64_kb_is_accepted(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given an event padded to exactly the 64 KB limit
    skeleton = '{"event":"Big","messageId":"m-64k","properties":{"pad":"%s"}}'
    body = (skeleton % ("x" * (64 * 1024 - len(skeleton % "")))).encode()
    assert len(body) == 64 * 1024

    # When it is posted
    response = post(gateway.url + "/v1/t", body, key=pipeline.pipeline_key)

    # Then it is accepted and published
    assert (response.status, response.json()) == (200, {"success": True})
    assert the_record(kafka_bootstrap, kafka_topic, pipeline).value["messageId"] == "m-64k"
