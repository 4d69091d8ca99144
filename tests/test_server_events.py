"""POST /v1/events end to end: one HMAC-signed server-side event in, one envelope out of Kafka.

Requests are signed here with the ``hmac`` module, not with the gateway's own helper, so these tests
hold the gateway to the wire contract of SPEC §2: ``X-Signature: sha256=<hex>`` over
``<X-Timestamp>.<raw body>``, keyed with the pipeline's signing secret, ``X-Timestamp`` in unix ms.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable

import pytest

from pipelines import services
from pipelines.services import PipelineCreated
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import Response, assert_error, post
from tests.fixtures.kafka import KafkaRecord, read_records
from tests.fixtures.payloads import signature_headers

# How long to keep reading after the last expected record, so a stray one would show.
SETTLE = 1.5
# Admin changes must reach every gateway process within a few seconds (SPEC §1).
PROPAGATION_SECONDS = 5.0
SIX_MINUTES_MS = 6 * 60 * 1000

EVENT = {
    "type": "track",
    "event": "Invoice Paid",
    "userId": "user-42",
    "properties": {"invoiceId": "inv-7", "amount": 129.0, "currency": "EUR", "note": "naïve café"},
    "context": {"library": {"name": "billing-worker", "version": "3.1.0"}},
}


def now_ms() -> int:
    return int(time.time() * 1000)


def raw_body(event: dict[str, object]) -> bytes:
    # Not the compact form a re-serialisation would give: the signature must cover the bytes as sent.
    return json.dumps(event, indent=2, ensure_ascii=False).encode()


def send(gateway: Gateway, created: PipelineCreated, body: bytes, headers: dict[str, str]) -> Response:
    return post(gateway.url + "/v1/events", body, key=created.pipeline_key, headers=headers)


def send_signed(gateway: Gateway, created: PipelineCreated, secret: str) -> Response:
    body = raw_body(EVENT)
    return send(gateway, created, body, signature_headers(secret, body))


def published(
    kafka_bootstrap: str, kafka_topic: str, created: PipelineCreated, *, expect: int = 0
) -> list[KafkaRecord]:
    """Every record of the pipeline, read for SETTLE seconds past the ``expect`` first ones."""
    return read_records(kafka_bootstrap, kafka_topic, pipeline_id=created.pipeline.id, expect=expect, settle=SETTLE)


def answered(status: int, send_request: Callable[[], Response], timeout: float = PROPAGATION_SECONDS) -> Response:
    """Repeat a request until it is answered with ``status`` (or the time is up): a change propagating."""
    deadline = time.monotonic() + timeout
    while True:
        response = send_request()
        if response.status == status or time.monotonic() >= deadline:
            return response
        time.sleep(0.1)


# -- accepted -------------------------------------------------------------------------------------------


def test_a_signed_server_event_is_published_with_a_server_source_keyed_by_its_user(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a server-side track call with a userId and no anonymousId, signed with the pipeline's secret
    body = raw_body(EVENT)
    headers = signature_headers(pipeline.signing_secret, body)

    # When it is posted
    response = send(gateway, pipeline, body, headers)

    # Then it is acknowledged, and one canonical envelope is in Kafka
    assert response.status == 200, response.body
    assert response.json() == {"success": True}
    [record] = published(kafka_bootstrap, kafka_topic, pipeline, expect=1)
    envelope = record.value
    assert envelope["source"] == {"kind": "server", "id": None}
    assert envelope["type"] == "track"
    assert envelope["event"] == "Invoice Paid"
    assert envelope["userId"] == "user-42"
    assert envelope["anonymousId"] is None
    assert envelope["properties"] == EVENT["properties"]
    assert envelope["context"]["library"] == {"name": "billing-worker", "version": "3.1.0"}
    assert envelope["pipelineId"] == pipeline.pipeline.id
    assert envelope["schemaVersion"] == 1
    assert record.key == f"{pipeline.pipeline.id}:user-42"
    assert record.headers == {
        "pipeline_id": pipeline.pipeline.id,
        "source_kind": "server",
        "message_id": envelope["messageId"],
        "schema_version": "1",
    }


# -- refused: the signature -----------------------------------------------------------------------------


def test_a_signature_made_with_another_secret_is_refused_and_nothing_is_published(
    gateway: Gateway,
    make_pipeline: Callable[..., PipelineCreated],
    kafka_bootstrap: str,
    kafka_topic: str,
) -> None:
    # Given an event signed with a real signing secret, but another pipeline's
    mine, other = make_pipeline(), make_pipeline()
    body = raw_body(EVENT)

    # When it is posted with this pipeline's key
    response = send(gateway, mine, body, signature_headers(other.signing_secret, body))

    # Then it is refused, and nothing reaches Kafka
    assert_error(response, 401, "INVALID_SIGNATURE")
    assert published(kafka_bootstrap, kafka_topic, mine) == []


def test_a_body_changed_after_signing_is_refused_and_nothing_is_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a signed event whose amount is changed on the way
    signed_body = raw_body(EVENT)
    headers = signature_headers(pipeline.signing_secret, signed_body)
    tampered = signed_body.replace(b"129.0", b"1.0")
    assert tampered != signed_body

    # When the changed body is posted with the original signature
    response = send(gateway, pipeline, tampered, headers)

    # Then it is refused, and nothing reaches Kafka
    assert_error(response, 401, "INVALID_SIGNATURE")
    assert published(kafka_bootstrap, kafka_topic, pipeline) == []


MISSING_HEADERS = {
    "no X-Signature": ["X-Signature"],
    "neither header": ["X-Signature", "X-Timestamp"],
}


@pytest.mark.parametrize("dropped", MISSING_HEADERS.values(), ids=MISSING_HEADERS.keys())
def test_an_event_without_a_signature_is_refused_and_nothing_is_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str, dropped: list[str]
) -> None:
    # Given a valid key, but a request that leaves out the signature
    body = raw_body(EVENT)
    headers = {k: v for k, v in signature_headers(pipeline.signing_secret, body).items() if k not in dropped}

    # When it is posted
    response = send(gateway, pipeline, body, headers)

    # Then it is refused, and nothing reaches Kafka
    assert_error(response, 401, "INVALID_SIGNATURE")
    assert published(kafka_bootstrap, kafka_topic, pipeline) == []


def test_a_signature_that_is_not_sha256_hex_is_refused_and_nothing_is_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given the right digest, but labelled as another algorithm
    body = raw_body(EVENT)
    headers = signature_headers(pipeline.signing_secret, body)
    headers["X-Signature"] = headers["X-Signature"].replace("sha256=", "sha1=")

    # When it is posted
    response = send(gateway, pipeline, body, headers)

    # Then it is refused, and nothing reaches Kafka
    assert_error(response, 401, "INVALID_SIGNATURE")
    assert published(kafka_bootstrap, kafka_topic, pipeline) == []


# -- refused: the timestamp -----------------------------------------------------------------------------


@pytest.mark.parametrize("offset_ms", [-SIX_MINUTES_MS, SIX_MINUTES_MS], ids=["6 minutes old", "6 minutes ahead"])
def test_a_correctly_signed_event_outside_five_minutes_is_refused_as_stale(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str, offset_ms: int
) -> None:
    # Given an event correctly signed, with a timestamp six minutes away from now
    body = raw_body(EVENT)
    headers = signature_headers(pipeline.signing_secret, body, now_ms() + offset_ms)

    # When it is posted
    response = send(gateway, pipeline, body, headers)

    # Then it is refused as stale (a replay window of five minutes either way), and nothing reaches Kafka
    assert_error(response, 401, "STALE_TIMESTAMP")
    assert published(kafka_bootstrap, kafka_topic, pipeline) == []


@pytest.mark.parametrize("offset_ms", [-4 * 60 * 1000, 4 * 60 * 1000], ids=["4 minutes old", "4 minutes ahead"])
def test_a_correctly_signed_event_within_five_minutes_is_accepted(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str, offset_ms: int
) -> None:
    # Given an event signed by a server whose clock is four minutes off
    body = raw_body(EVENT)
    headers = signature_headers(pipeline.signing_secret, body, now_ms() + offset_ms)

    # When it is posted
    response = send(gateway, pipeline, body, headers)

    # Then it is accepted and published
    assert response.status == 200, response.body
    assert len(published(kafka_bootstrap, kafka_topic, pipeline, expect=1)) == 1


MALFORMED_TIMESTAMPS = {
    "a date": "2024-05-01T11:00:00Z",
    "a fraction": "1714561200000.5",
    "negative": "-1714561200000",
    "words": "yesterday",
    "unix seconds": str(int(time.time())),
}


@pytest.mark.parametrize("stamp", MALFORMED_TIMESTAMPS.values(), ids=MALFORMED_TIMESTAMPS.keys())
def test_a_timestamp_that_is_not_unix_milliseconds_is_refused_as_stale(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str, stamp: str
) -> None:
    # Given an event signed over a timestamp that is not unix milliseconds
    body = raw_body(EVENT)
    headers = signature_headers(pipeline.signing_secret, body, stamp)

    # When it is posted
    response = send(gateway, pipeline, body, headers)

    # Then it is refused as a bad timestamp, and nothing reaches Kafka
    assert_error(response, 401, "STALE_TIMESTAMP")
    assert published(kafka_bootstrap, kafka_topic, pipeline) == []


# -- secret rotation ------------------------------------------------------------------------------------


def test_after_a_rotation_both_the_old_and_the_new_secret_verify(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a pipeline whose signing secret is rotated
    old = pipeline.signing_secret
    _, new = services.secret_rotate(pipeline=pipeline.pipeline)

    # When events are signed with the new secret (once the change reaches the gateway) and the old one
    with_new = answered(200, lambda: send_signed(gateway, pipeline, new))
    with_old = send_signed(gateway, pipeline, old)

    # Then both are accepted, and each accepted event is in Kafka
    assert with_new.status == 200, with_new.body
    assert with_old.status == 200, with_old.body
    records = published(kafka_bootstrap, kafka_topic, pipeline, expect=2)
    assert len(records) == 2
    assert {r.value["source"]["kind"] for r in records} == {"server"}


def test_a_third_secret_retires_the_oldest_and_the_two_newest_keep_verifying(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a pipeline rotated twice: three secrets made, at most two of them active
    first = pipeline.signing_secret
    _, second = services.secret_rotate(pipeline=pipeline.pipeline)
    assert answered(200, lambda: send_signed(gateway, pipeline, second)).status == 200
    _, third = services.secret_rotate(pipeline=pipeline.pipeline)

    # When events are signed with each of them, once the third has reached the gateway
    with_third = answered(200, lambda: send_signed(gateway, pipeline, third))
    with_first = send_signed(gateway, pipeline, first)
    with_second = send_signed(gateway, pipeline, second)

    # Then the oldest no longer verifies, the two newest do, and only accepted events are in Kafka
    assert with_third.status == 200, with_third.body
    assert_error(with_first, 401, "INVALID_SIGNATURE")
    assert with_second.status == 200, with_second.body
    records = published(kafka_bootstrap, kafka_topic, pipeline, expect=3)
    assert len(records) == 3  # one for the second secret's propagation, one for the third's, one more


# -- the signature and the path (issue 11, found 12) ----------------------------------------------------------


def v2_signature_headers(secret: str, body: bytes, path: str, method: str = "POST") -> dict[str, str]:
    """A v2 signature, computed here: HMAC-SHA256 over ``<X-Timestamp>.<METHOD> <path>.<raw body>``."""
    stamp = str(now_ms())
    message = f"{stamp}.{method} {path}.".encode() + body
    return {"X-Signature": "v2=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest(), "X-Timestamp": stamp}


def test_a_signed_batch_replayed_to_the_events_path_is_refused(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a batch, signed with a v1 signature (over the timestamp and body only), whose top level
    # also reads as one event
    body = raw_body({"batch": [EVENT], **EVENT})
    headers = signature_headers(pipeline.signing_secret, body)
    first = post(gateway.url + "/v1/batch", body, key=pipeline.pipeline_key, headers=headers)
    assert first.status == 200, first.body

    # When someone who saw it replays the same bytes and headers to /v1/events
    replayed = send(gateway, pipeline, body, headers)

    # Then it is refused (it was accepted), and only the batch's event is in Kafka
    assert_error(replayed, 400, "INVALID_PAYLOAD")
    assert "/v1/batch" in replayed.json()["error"]["message"]
    assert len(published(kafka_bootstrap, kafka_topic, pipeline, expect=1)) == 1


@pytest.mark.parametrize("path", ["/v1/events", "/v1/batch"])
def test_a_v2_signature_over_method_path_and_body_is_accepted(
    gateway: Gateway, pipeline: PipelineCreated, path: str
) -> None:
    # Given a body signed v2 for the path it is posted to
    body = raw_body({"batch": [EVENT]} if path == "/v1/batch" else EVENT)
    headers = v2_signature_headers(pipeline.signing_secret, body, path)

    # When it is posted there
    response = post(gateway.url + path, body, key=pipeline.pipeline_key, headers=headers)

    # Then it is accepted
    assert response.status == 200, response.body


def test_a_v2_signature_made_for_another_path_is_refused(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given an event signed v2 for /v1/batch
    body = raw_body(EVENT)
    headers = v2_signature_headers(pipeline.signing_secret, body, "/v1/batch")

    # When it is posted to /v1/events
    response = send(gateway, pipeline, body, headers)

    # Then the signature does not match, and nothing is published
    assert_error(response, 401, "INVALID_SIGNATURE")
    assert published(kafka_bootstrap, kafka_topic, pipeline) == []


def test_v1_signatures_are_refused_once_the_operator_turns_them_off(
    gateway_factory: Callable[..., Gateway], pipeline: PipelineCreated
) -> None:
    # Given a gateway whose operator has moved every client to v2
    own = gateway_factory(SERVER_SIGNATURE_V1="false")
    body = raw_body(EVENT)

    # When a v1 and a v2 signature are sent
    v1 = send(own, pipeline, body, signature_headers(pipeline.signing_secret, body))
    v2 = send(own, pipeline, body, v2_signature_headers(pipeline.signing_secret, body, "/v1/events"))

    # Then only v2 is accepted, and the refusal says what to send instead
    assert_error(v1, 401, "INVALID_SIGNATURE")
    assert "v2=" in v1.json()["error"]["message"]
    assert v2.status == 200, v2.body
