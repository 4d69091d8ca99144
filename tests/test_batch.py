"""POST /v1/batch end to end: batches in, one envelope per good event out of Kafka.

First by hand over HTTP (limits, partial failures, gzip, auth, top-level context and sentAt), then
with the real Segment and RudderStack server libraries pointed at the gateway (SPEC §8).
"""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

from pipelines.services import PipelineCreated
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import Response, assert_error, basic, post
from tests.fixtures.kafka import KafkaRecord, read_records
from tests.fixtures.payloads import nested, signature_headers

# How long to keep reading after the last expected record, so a stray one would show.
SETTLE = 1.5
MAX_EVENTS = 500
MAX_BYTES = 5 * 1024 * 1024
MAX_EVENT_BYTES = 64 * 1024


def track(n: int, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": f"Step {n}", "userId": f"user-{n}", "messageId": f"m-{n}-{uuid.uuid4()}", **extra}


def send(gateway: Gateway, created: PipelineCreated, body: dict[str, Any] | bytes, **kwargs: Any) -> Response:
    return post(gateway.url + "/v1/batch", body, key=created.pipeline_key, **kwargs)


def accepted(count: int) -> dict[str, Any]:
    return {"success": True, "accepted": count, "rejected": 0, "errors": []}


def published(
    kafka_bootstrap: str, kafka_topic: str, created: PipelineCreated, *, expect: int = 0
) -> list[KafkaRecord]:
    """Every record of the pipeline, read for SETTLE seconds past the ``expect`` first ones."""
    return read_records(
        kafka_bootstrap, kafka_topic, pipeline_id=created.pipeline.id, expect=expect, timeout=20, settle=SETTLE
    )


def by_message_id(records: list[KafkaRecord]) -> dict[str, dict[str, Any]]:
    envelopes = {r.value["messageId"]: r.value for r in records}
    assert len(envelopes) == len(records), "a message was published twice"
    return envelopes


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- accepted -------------------------------------------------------------------------------------------


def test_a_batch_of_every_call_type_is_published_event_by_event(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a batch with a track, a page, an identify and a group call
    events = [
        {"type": "track", "event": "Signed Up", "userId": "u-1", "messageId": "b-track", "properties": {"plan": "pro"}},
        {
            "type": "page",
            "name": "Pricing",
            "anonymousId": "a-1",
            "messageId": "b-page",
            "properties": {"path": "/pricing"},
        },
        {"type": "identify", "userId": "u-1", "messageId": "b-identify", "traits": {"email": "ada@example.com"}},
        {"type": "group", "userId": "u-1", "groupId": "acme", "messageId": "b-group", "traits": {"seats": 12}},
    ]

    # When it is posted
    response = send(gateway, pipeline, {"batch": events})

    # Then all four are accepted and each is in Kafka as its own envelope, sourced from the batch
    assert response.status == 200, response.body
    assert response.json() == accepted(4)
    envelopes = by_message_id(published(kafka_bootstrap, kafka_topic, pipeline, expect=4))
    assert set(envelopes) == {"b-track", "b-page", "b-identify", "b-group"}
    assert envelopes["b-track"]["type"] == "track"
    assert envelopes["b-track"]["event"] == "Signed Up"
    assert envelopes["b-track"]["properties"] == {"plan": "pro"}
    assert envelopes["b-page"]["type"] == "page"
    assert envelopes["b-page"]["name"] == "Pricing"
    assert envelopes["b-page"]["anonymousId"] == "a-1"
    assert envelopes["b-identify"]["type"] == "identify"
    assert envelopes["b-identify"]["traits"] == {"email": "ada@example.com"}
    assert envelopes["b-group"]["type"] == "group"
    assert envelopes["b-group"]["groupId"] == "acme"
    assert {e["source"]["kind"] for e in envelopes.values()} == {"batch"}
    assert {e["pipelineId"] for e in envelopes.values()} == {pipeline.pipeline.id}


def test_one_bad_event_is_reported_by_index_and_the_good_ones_are_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a batch of three good events around a track call with no event name
    good = [track(0), track(1), track(3), track(4)]
    events = [good[0], good[1], {"type": "track", "userId": "user-2", "messageId": "bad"}, good[2], good[3]]

    # When it is posted
    response = send(gateway, pipeline, {"batch": events})

    # Then the batch is answered 200 with the bad one listed by its index
    assert response.status == 200, response.body
    body = response.json()
    assert {k: body[k] for k in ("success", "accepted", "rejected")} == {"success": True, "accepted": 4, "rejected": 1}
    [error] = body["errors"]
    assert error["index"] == 2
    assert error["code"] == "INVALID_PAYLOAD"
    assert isinstance(error["message"], str) and error["message"]
    # and exactly the good ones are in Kafka
    envelopes = by_message_id(published(kafka_bootstrap, kafka_topic, pipeline, expect=4))
    assert set(envelopes) == {e["messageId"] for e in good}


@pytest.mark.parametrize("count", [3, 100], ids=["a small body", "a body over 8 KB"])
def test_an_event_nested_too_deep_in_a_batch_is_rejected_alone(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str, count: int
) -> None:
    # Given a batch whose second event nests 33 levels deep, one past the limit
    events = [track(n) for n in range(count)]
    events[1] = track(1, properties=nested(32))

    # When it is posted
    response = send(gateway, pipeline, {"batch": events})

    # Then only that event is rejected, like any other bad item, and the others are published
    assert response.status == 200, response.body
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (count - 1, 1)
    [error] = body["errors"]
    assert (error["index"], error["code"]) == (1, "INVALID_PAYLOAD")
    assert "deeper than 32" in error["message"]
    envelopes = by_message_id(published(kafka_bootstrap, kafka_topic, pipeline, expect=count - 1))
    assert set(envelopes) == {e["messageId"] for i, e in enumerate(events) if i != 1}


def test_events_that_the_batch_context_takes_past_64_kb_are_rejected_each_not_retried_whole(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a batch of small events under a top-level context of 1.5 MB (over Kafka's 1 MB once merged)
    events = [track(n) for n in range(3)]
    body = {"batch": events, "context": {"blob": "x" * 1_500_000}}

    # When it is posted
    response = send(gateway, pipeline, body)

    # Then each event is rejected as too large (once the whole batch was a 503, retried forever)
    assert response.status == 200, response.body
    report = response.json()
    assert (report["accepted"], report["rejected"]) == (0, 3)
    assert [(e["index"], e["code"]) for e in report["errors"]] == [(n, "PAYLOAD_TOO_LARGE") for n in range(3)]
    assert published(kafka_bootstrap, kafka_topic, pipeline) == []


def test_an_event_over_64_kb_in_a_batch_is_rejected_alone(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a batch whose second event is over the 64 KB per-event limit
    big = track(1, properties={"blob": "x" * MAX_EVENT_BYTES})
    events = [track(0), big, track(2)]

    # When it is posted
    response = send(gateway, pipeline, {"batch": events})

    # Then only that event is rejected, and the others are published
    assert response.status == 200, response.body
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert [e["index"] for e in body["errors"]] == [1]
    envelopes = by_message_id(published(kafka_bootstrap, kafka_topic, pipeline, expect=2))
    assert set(envelopes) == {events[0]["messageId"], events[2]["messageId"]}


def test_a_gzip_batch_is_accepted(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a batch sent gzip-encoded
    events = [track(n) for n in range(3)]

    # When it is posted with Content-Encoding: gzip
    response = send(gateway, pipeline, {"batch": events}, gzipped=True)

    # Then every event is accepted and published
    assert response.status == 200, response.body
    assert response.json() == accepted(3)
    envelopes = by_message_id(published(kafka_bootstrap, kafka_topic, pipeline, expect=3))
    assert set(envelopes) == {e["messageId"] for e in events}


def test_a_gzip_batch_in_two_members_is_published_whole(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a batch whose gzip body is two members, split in the middle of its events
    events = [track(n) for n in range(4)]
    body = json.dumps({"batch": events}).encode()
    raw = gzip.compress(body[: len(body) // 2]) + gzip.compress(body[len(body) // 2 :])

    # When it is posted
    response = send(gateway, pipeline, raw, headers={"Content-Encoding": "gzip"})

    # Then every event is accepted and published, the second member's too
    assert response.status == 200, response.body
    assert response.json() == accepted(4)
    envelopes = by_message_id(published(kafka_bootstrap, kafka_topic, pipeline, expect=4))
    assert set(envelopes) == {e["messageId"] for e in events}


def test_two_gzip_batches_in_one_body_are_refused_not_half_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given two whole batches, each its own gzip member, in one body
    raw = gzip.compress(json.dumps({"batch": [track(1)]}).encode()) + gzip.compress(
        json.dumps({"batch": [track(2)]}).encode()
    )

    # When it is posted
    response = send(gateway, pipeline, raw, headers={"Content-Encoding": "gzip"})

    # Then it is refused whole (the second was once dropped with a 200), and nothing is published
    assert_error(response, 400, "INVALID_PAYLOAD")
    assert published(kafka_bootstrap, kafka_topic, pipeline) == []


def test_a_full_batch_of_500_events_is_accepted(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a batch at the event limit
    events = [track(n) for n in range(MAX_EVENTS)]

    # When it is posted
    response = send(gateway, pipeline, {"batch": events})

    # Then all of it is accepted and published
    assert response.status == 200, response.body
    assert response.json() == accepted(MAX_EVENTS)
    envelopes = by_message_id(published(kafka_bootstrap, kafka_topic, pipeline, expect=MAX_EVENTS))
    assert set(envelopes) == {e["messageId"] for e in events}


# -- refused whole --------------------------------------------------------------------------------------


def test_a_batch_of_501_events_is_refused_whole_and_nothing_is_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a batch one event over the limit
    events = [track(n) for n in range(MAX_EVENTS + 1)]

    # When it is posted
    response = send(gateway, pipeline, {"batch": events})

    # Then the whole request is refused, and none of it reaches Kafka
    assert_error(response, 400, "BATCH_TOO_LARGE")
    assert published(kafka_bootstrap, kafka_topic, pipeline) == []


def padded_batch(size: int) -> bytes:
    """A batch of valid events of about 20 KB each, ``size`` bytes or a little more in all."""
    filler = "x" * 20_000
    count = size // len(json.dumps(track(0, properties={"filler": filler}))) + 1
    assert count <= MAX_EVENTS  # it is the bytes that are over the limit, not the count
    body = json.dumps({"batch": [track(n, properties={"filler": filler}) for n in range(count)]}).encode()
    assert len(body) >= size
    return body


def test_a_batch_over_5_mb_is_refused_whole_and_nothing_is_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a batch of fewer than 500 valid events, over 5 MB in all
    body = padded_batch(MAX_BYTES + 1)
    assert len(body) > MAX_BYTES

    # When it is posted
    response = send(gateway, pipeline, body)

    # Then the whole request is refused, and none of it reaches Kafka
    assert_error(response, 400, "BATCH_TOO_LARGE")
    assert published(kafka_bootstrap, kafka_topic, pipeline) == []


def test_a_gzip_batch_that_inflates_past_5_mb_is_refused_whole_and_nothing_is_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a small gzip body that inflates past 5 MB
    body = gzip.compress(padded_batch(MAX_BYTES + 1))
    assert len(body) < MAX_BYTES // 10

    # When it is posted
    response = send(gateway, pipeline, body, headers={"Content-Encoding": "gzip"})

    # Then the limit applies after decompression, and none of it reaches Kafka
    assert_error(response, 400, "BATCH_TOO_LARGE")
    assert published(kafka_bootstrap, kafka_topic, pipeline) == []


NOT_A_BATCH = {
    "no batch key": {"events": [track(0)]},
    "batch is an object": {"batch": track(0)},
    # Too deep to be read item by item: the whole body is refused, as any body nesting past 32 once was.
    "an event nesting deeper than 128 levels": {"batch": [track(0), track(1, properties=nested(130))]},
    "a batch context nesting deeper than 32 levels": {"batch": [track(0)], "context": nested(33)},
}


@pytest.mark.parametrize("body", NOT_A_BATCH.values(), ids=NOT_A_BATCH.keys())
def test_a_body_that_is_not_a_batch_is_refused_and_nothing_is_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str, body: dict[str, Any]
) -> None:
    # Given a JSON object that does not hold a list of events under "batch"

    # When it is posted
    response = send(gateway, pipeline, body)

    # Then it is refused as the client's fault, and nothing reaches Kafka
    assert_error(response, 400, "INVALID_PAYLOAD")
    assert published(kafka_bootstrap, kafka_topic, pipeline) == []


# -- top-level context and sentAt -----------------------------------------------------------------------


def test_the_batch_context_sits_under_each_events_own_context(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a batch-wide context, one event that overrides part of it and one that has none
    shared = {
        "library": {"name": "analytics-python", "version": "2.4.0"},
        "locale": "en-US",
        "app": {"name": "Shop", "version": "2.0"},
    }
    overriding = track(0, context={"locale": "de-DE", "app": {"version": "3.1"}, "timezone": "Europe/Berlin"})
    plain = track(1)

    # When it is posted
    response = send(gateway, pipeline, {"batch": [overriding, plain], "context": shared})

    # Then each event carries the batch context, with its own keys winning
    assert response.status == 200, response.body
    envelopes = by_message_id(published(kafka_bootstrap, kafka_topic, pipeline, expect=2))
    merged = envelopes[overriding["messageId"]]["context"]
    assert merged["library"] == {"name": "analytics-python", "version": "2.4.0"}
    assert merged["locale"] == "de-DE"
    assert merged["timezone"] == "Europe/Berlin"
    assert merged["app"] == {"name": "Shop", "version": "3.1"}
    inherited = envelopes[plain["messageId"]]["context"]
    assert inherited["library"] == shared["library"]
    assert inherited["locale"] == "en-US"
    assert inherited["app"] == shared["app"]


def test_the_batch_sent_at_corrects_each_events_time_for_clock_skew(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a server whose clock is a year behind: its events happened 5 s and 1.5 s before it sent the batch
    sent_at = datetime(2024, 5, 1, 11, 0, 10, tzinfo=UTC)
    earlier = track(0, timestamp=iso(sent_at - timedelta(seconds=5)))
    later = track(1, timestamp=iso(sent_at - timedelta(milliseconds=1500)))

    # When the batch is posted with a top-level sentAt
    response = send(gateway, pipeline, {"batch": [earlier, later], "sentAt": iso(sent_at)})

    # Then each event's time is the gateway's receive time less its age on the client's clock
    assert response.status == 200, response.body
    envelopes = by_message_id(published(kafka_bootstrap, kafka_topic, pipeline, expect=2))
    for event, age in ((earlier, timedelta(seconds=5)), (later, timedelta(milliseconds=1500))):
        envelope = envelopes[event["messageId"]]
        received = datetime.fromisoformat(envelope["receivedAt"])
        assert envelope["timestamp"] == iso(received - age)
        assert envelope["originalTimestamp"] == event["timestamp"]
        assert envelope["sentAt"] == iso(sent_at)


# -- authentication -------------------------------------------------------------------------------------


def test_a_batch_with_the_key_in_basic_credentials_is_accepted(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given Basic credentials as server SDKs send them: the key as user name, no password
    events = [track(0), track(1)]

    # When the batch is posted with them
    response = post(
        gateway.url + "/v1/batch", {"batch": events}, headers={"Authorization": basic(pipeline.pipeline_key)}
    )

    # Then it is accepted and published
    assert response.status == 200, response.body
    assert response.json() == accepted(2)
    assert len(published(kafka_bootstrap, kafka_topic, pipeline, expect=2)) == 2


def test_a_batch_with_the_key_as_write_key_in_the_body_is_accepted(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given no Authorization header, but the key as writeKey in the body
    events = [track(0), track(1)]

    # When the batch is posted
    response = post(gateway.url + "/v1/batch", {"batch": events, "writeKey": pipeline.pipeline_key})

    # Then it is accepted and published, and the key is not copied into the events
    assert response.status == 200, response.body
    assert response.json() == accepted(2)
    records = published(kafka_bootstrap, kafka_topic, pipeline, expect=2)
    assert len(records) == 2
    assert all("writeKey" not in r.value for r in records)


def test_a_batch_without_a_key_is_refused(gateway: Gateway) -> None:
    # Given a batch with no key anywhere

    # When it is posted
    response = post(gateway.url + "/v1/batch", {"batch": [track(0)]})

    # Then it is refused
    assert_error(response, 401, "INVALID_PIPELINE_KEY")


def test_a_signed_batch_is_accepted(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a batch signed with the pipeline's signing secret
    body = json.dumps({"batch": [track(0), track(1)]}, indent=1).encode()
    headers = signature_headers(pipeline.signing_secret, body)

    # When it is posted
    response = send(gateway, pipeline, body, headers=headers)

    # Then it is accepted and published
    assert response.status == 200, response.body
    assert response.json() == accepted(2)
    assert len(published(kafka_bootstrap, kafka_topic, pipeline, expect=2)) == 2


def test_a_signed_gzip_batch_is_verified_over_the_bytes_as_sent(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a gzip batch signed over its compressed bytes, the raw body on the wire
    body = gzip.compress(json.dumps({"batch": [track(0), track(1)]}).encode())
    headers = {"Content-Encoding": "gzip", **signature_headers(pipeline.signing_secret, body)}

    # When it is posted
    response = send(gateway, pipeline, body, headers=headers)

    # Then it is accepted and published
    assert response.status == 200, response.body
    assert response.json() == accepted(2)
    assert len(published(kafka_bootstrap, kafka_topic, pipeline, expect=2)) == 2


def test_a_batch_with_a_bad_signature_is_refused_whole_and_nothing_is_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a batch whose signature was made over a different body
    headers = signature_headers(pipeline.signing_secret, json.dumps({"batch": [track(0)]}).encode())
    body = json.dumps({"batch": [track(0), track(1)]}).encode()

    # When it is posted with the key and that signature
    response = send(gateway, pipeline, body, headers=headers)

    # Then the whole batch is refused, and nothing reaches Kafka
    assert_error(response, 401, "INVALID_SIGNATURE")
    assert published(kafka_bootstrap, kafka_topic, pipeline) == []


# -- real server SDKs -----------------------------------------------------------------------------------


class Errors:
    """The SDKs' on_error callback: every upload failure, with the messages it lost.

    Not a list: the SDKs test ``if self.on_error``, and an empty list is false.
    """

    def __init__(self) -> None:
        self.failures: list[tuple[Exception, list[dict[str, Any]]]] = []

    def __call__(self, error: Exception, batch: list[dict[str, Any]]) -> None:
        self.failures.append((error, batch))


@pytest.fixture
def sdk_errors() -> Errors:
    return Errors()


def sent_calls(client: Any) -> list[dict[str, Any]]:
    """A few calls of each type, as an application would make them; the messages the SDK queued."""
    calls = [
        client.identify("sdk-user-1", {"email": "ada@example.com", "plan": "pro"}),
        client.track("sdk-user-1", "Order Completed", {"orderId": "o-1", "revenue": 42.5}),
        client.track("sdk-user-2", "Cart Viewed", {"items": 3}),
        client.page("sdk-user-1", "Docs", "Getting Started", {"path": "/docs/start"}),
        client.group("sdk-user-1", "acme", {"name": "Acme Inc", "seats": 12}),
    ]
    assert all(ok for ok, _ in calls), calls
    return [message for _, message in calls]


def assert_consumed_back(sent: list[dict[str, Any]], records: list[KafkaRecord]) -> None:
    envelopes = by_message_id(records)
    assert set(envelopes) == {m["messageId"] for m in sent}
    for message in sent:
        envelope = envelopes[message["messageId"]]
        assert envelope["type"] == message["type"]
        assert envelope["userId"] == message["userId"]
        assert envelope["event"] == message.get("event")
        assert envelope["name"] == message.get("name")
        assert envelope["groupId"] == message.get("groupId")
        assert envelope["source"] == {"kind": "batch", "id": None}
        assert envelope["context"]["library"]["name"] == "analytics-python"


def test_segments_python_library_delivers_every_call_through_the_batch_endpoint(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str, sdk_errors: Errors
) -> None:
    # Given Segment's server library pointed at the gateway, reporting any failed upload
    client = SegmentClient(
        write_key=pipeline.pipeline_key,
        host=gateway.url,
        on_error=sdk_errors,
        max_retries=0,
        max_rate_limit_duration=5,
        upload_interval=0.2,
    )

    # When the application makes its calls and the library flushes them
    sent = sent_calls(client)
    client.shutdown()

    # Then no upload failed and every call is in Kafka as sent
    assert sdk_errors.failures == []
    assert_consumed_back(sent, published(kafka_bootstrap, kafka_topic, pipeline, expect=len(sent)))


def test_segments_python_library_in_sync_mode_delivers_every_call(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given Segment's server library in sync mode (each call one request, errors raised to the caller)
    client = SegmentClient(write_key=pipeline.pipeline_key, host=gateway.url, sync_mode=True)

    # When the application makes its calls
    sent = sent_calls(client)

    # Then every call is in Kafka as sent
    assert_consumed_back(sent, published(kafka_bootstrap, kafka_topic, pipeline, expect=len(sent)))


def test_rudderstacks_python_library_delivers_every_call_gzipped_through_the_batch_endpoint(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str, sdk_errors: Errors
) -> None:
    # Given RudderStack's server library pointed at the gateway, gzip on (its default)
    client = RudderClient(
        write_key=pipeline.pipeline_key,
        host=gateway.url,
        on_error=sdk_errors,
        max_retries=0,
        upload_interval=0.2,
    )
    assert client.gzip is True

    # When the application makes its calls and the library flushes them
    sent = sent_calls(client)
    client.shutdown()

    # Then no upload failed and every call is in Kafka as sent
    assert sdk_errors.failures == []
    records = published(kafka_bootstrap, kafka_topic, pipeline, expect=len(sent))
    assert_consumed_back(sent, records)
    # RudderStack puts identify traits under context.traits; they arrive where it put them
    [identify] = [r.value for r in records if r.value["type"] == "identify"]
    assert identify["context"]["traits"] == {"email": "ada@example.com", "plan": "pro"}


def test_a_library_with_an_unknown_key_is_told_its_upload_was_refused(gateway: Gateway, sdk_errors: Errors) -> None:
    # Given Segment's server library with a key the gateway does not know
    client = SegmentClient(
        write_key="dk_" + uuid.uuid4().hex, host=gateway.url, on_error=sdk_errors, max_retries=0, upload_interval=0.2
    )

    # When the application makes its calls and the library flushes them
    sent = sent_calls(client)
    client.shutdown()

    # Then the library reports the whole upload as refused with a 401, which it does not retry
    assert [(getattr(error, "status", None), len(batch)) for error, batch in sdk_errors.failures] == [(401, len(sent))]
