"""Every error the browser endpoints answer, in the one error shape, and never with a published event."""

from __future__ import annotations

import gzip
import json
import time

import pytest

from pipelines import services
from pipelines.services import PipelineCreated
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import Response, assert_error, post, request
from tests.fixtures.kafka import KafkaRecord, read_records
from tests.fixtures.payloads import nested

# How long to keep reading after the last expected record, so a stray one would show.
SETTLE = 1.0
# Admin changes must reach every gateway process within a few seconds (SPEC §1).
PROPAGATION_SECONDS = 5.0


def published(
    kafka_bootstrap: str, kafka_topic: str, created: PipelineCreated, *, expect: int = 0
) -> list[KafkaRecord]:
    """Every record of the pipeline, read for SETTLE seconds past the ``expect`` first ones."""
    return read_records(kafka_bootstrap, kafka_topic, pipeline_id=created.pipeline.id, expect=expect, settle=SETTLE)


def post_until(status: int, send: object, timeout: float = PROPAGATION_SECONDS) -> Response:
    """Repeat a request until it is answered with ``status`` (or the time is up): a change propagating."""
    assert callable(send)
    deadline = time.monotonic() + timeout
    while True:
        response: Response = send()
        if response.status == status or time.monotonic() >= deadline:
            return response
        time.sleep(0.1)


# -- 400 INVALID_PAYLOAD --------------------------------------------------------------------------------

INVALID_BODIES = {
    "empty body": (b"", "/v1/t"),
    "malformed JSON": (b'{"event": "Viewed",', "/v1/t"),
    "invalid UTF-8": (b'{"event": "Caf\xe9"}', "/v1/t"),
    "a JSON array": (b'[{"event": "Viewed"}]', "/v1/t"),
    "a JSON string": (b'"Viewed"', "/v1/t"),
    "a track call without an event name": (b'{"properties": {"a": 1}}', "/v1/t"),
    "a track call with an empty event name": (b'{"event": ""}', "/v1/t"),
    "a group call without a groupId": (b'{"traits": {"name": "Acme"}}', "/v1/g"),
    "a timestamp that is not ISO 8601": (b'{"event": "Viewed", "timestamp": "yesterday"}', "/v1/t"),
    "a timestamp as a number": (b'{"event": "Viewed", "timestamp": 1714561200000}', "/v1/t"),
    "a sentAt that is not ISO 8601": (b'{"event": "Viewed", "sentAt": "2024-13-45T99:00:00Z"}', "/v1/t"),
    "a timestamp before the year 1 in UTC": (b'{"event": "Viewed", "timestamp": "0001-01-01T00:30:00+01:00"}', "/v1/t"),
    "a timestamp after the year 9999 in UTC": (
        b'{"event": "Viewed", "timestamp": "9999-12-31T23:59:59-01:00"}',
        "/v1/t",
    ),
    "a timestamp and sentAt too far apart to correct": (
        b'{"event": "Viewed", "timestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T23:59:59Z"}',
        "/v1/t",
    ),
    "nesting deeper than 32 levels": (json.dumps({"event": "Deep", "properties": nested(40)}).encode(), "/v1/t"),
    "properties as a list": (b'{"event": "Viewed", "properties": [1, 2]}', "/v1/t"),
    "traits as a string": (b'{"traits": "vip"}', "/v1/i"),
    "context as a string": (b'{"name": "Home", "context": "web"}', "/v1/p"),
    "an event name as a number": (b'{"event": 42}', "/v1/t"),
    "a page name as an object": (b'{"name": {"x": 1}}', "/v1/p"),
    "a userId as an object": (b'{"event": "Viewed", "userId": {"id": 1}}', "/v1/t"),
    "an anonymousId as a boolean": (b'{"event": "Viewed", "anonymousId": true}', "/v1/t"),
    "a messageId as a list": (b'{"event": "Viewed", "messageId": ["m"]}', "/v1/t"),
    "a userId over 256 characters": (json.dumps({"event": "Viewed", "userId": "u" * 257}).encode(), "/v1/t"),
}


@pytest.mark.parametrize(("body", "path"), INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
def test_an_invalid_body_is_refused_with_400_and_not_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str, body: bytes, path: str
) -> None:
    # Given a valid key and a body the gateway cannot turn into an event

    # When it is posted
    response = post(gateway.url + path, body, key=pipeline.pipeline_key)

    # Then it is refused as the client's fault, and nothing reaches Kafka
    assert_error(response, 400, "INVALID_PAYLOAD")
    assert published(kafka_bootstrap, kafka_topic, pipeline) == []


def test_a_corrupt_gzip_body_is_refused_with_400_and_not_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a body that claims to be gzip but is not
    headers = {"Content-Encoding": "gzip"}

    # When it is posted
    response = post(gateway.url + "/v1/t", b'{"event": "Viewed"}', key=pipeline.pipeline_key, headers=headers)

    # Then it is refused, and nothing reaches Kafka
    assert_error(response, 400, "INVALID_PAYLOAD")
    assert published(kafka_bootstrap, kafka_topic, pipeline) == []


def test_a_truncated_gzip_body_is_refused_with_400_and_not_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a gzip body cut short in transit
    whole = gzip.compress(json.dumps({"event": "Viewed", "properties": {"note": "x" * 500}}).encode())

    # When it is posted
    response = post(
        gateway.url + "/v1/t", whole[: len(whole) // 2], key=pipeline.pipeline_key, headers={"Content-Encoding": "gzip"}
    )

    # Then it is refused, and nothing reaches Kafka
    assert_error(response, 400, "INVALID_PAYLOAD")
    assert published(kafka_bootstrap, kafka_topic, pipeline) == []


# -- 401 INVALID_PIPELINE_KEY ---------------------------------------------------------------------------


def test_a_request_without_a_key_is_rejected(gateway: Gateway) -> None:
    # Given a valid event with no Authorization header and no writeKey

    # When it is posted
    response = post(gateway.url + "/v1/t", {"event": "Viewed"})

    # Then it is rejected with 401
    assert_error(response, 401, "INVALID_PIPELINE_KEY")


@pytest.mark.parametrize(
    "key",
    ["dk_" + "A" * 32, "not-a-key", "sk_" + "B" * 32],
    ids=["well-formed but unknown", "garbage", "a signing secret"],
)
def test_an_unknown_key_is_rejected(gateway: Gateway, key: str) -> None:
    # Given a key no pipeline holds

    # When an event is posted with it
    response = post(gateway.url + "/v1/t", {"event": "Viewed"}, key=key)

    # Then it is rejected with 401
    assert_error(response, 401, "INVALID_PIPELINE_KEY")


def test_basic_credentials_that_are_not_base64_are_rejected(gateway: Gateway) -> None:
    # Given an Authorization header whose Basic credentials cannot be decoded

    # When an event is posted with it
    response = post(gateway.url + "/v1/t", {"event": "Viewed"}, headers={"Authorization": "Basic %%%not-base64%%%"})

    # Then it is rejected with 401
    assert_error(response, 401, "INVALID_PIPELINE_KEY")


def test_a_revoked_key_is_rejected_within_five_seconds_and_nothing_more_is_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a key the gateway has already seen and cached
    url, key = gateway.url + "/v1/t", pipeline.pipeline_key
    assert post(url, {"event": "Before revoke", "messageId": "m-before"}, key=key).status == 200

    # When it is revoked in the admin
    services.key_revoke(key=key)

    # Then within a few seconds the gateway refuses it, and only the earlier event is in Kafka
    response = post_until(401, lambda: post(url, {"event": "After revoke"}, key=key))
    assert_error(response, 401, "INVALID_PIPELINE_KEY")
    records = published(kafka_bootstrap, kafka_topic, pipeline, expect=1)
    assert [r.value["messageId"] for r in records] == ["m-before"]


def test_a_disabled_pipeline_is_rejected_within_five_seconds_and_nothing_more_is_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a pipeline the gateway has already seen and cached
    url, key = gateway.url + "/v1/t", pipeline.pipeline_key
    assert post(url, {"event": "Before disable", "messageId": "m-before"}, key=key).status == 200

    # When it is disabled in the admin
    services.pipeline_set_enabled(pipeline=pipeline.pipeline, enabled=False)

    # Then within a few seconds the gateway refuses its key, and only the earlier event is in Kafka
    response = post_until(401, lambda: post(url, {"event": "After disable"}, key=key))
    assert_error(response, 401, "INVALID_PIPELINE_KEY")
    records = published(kafka_bootstrap, kafka_topic, pipeline, expect=1)
    assert [r.value["messageId"] for r in records] == ["m-before"]


def test_a_new_key_after_rotation_works_while_the_revoked_one_is_rejected(
    gateway: Gateway, pipeline: PipelineCreated
) -> None:
    # Given a key rotated to a new one, the old one then revoked
    new_key = services.key_rotate(key=pipeline.pipeline_key).key
    services.key_revoke(key=pipeline.pipeline_key)
    url = gateway.url + "/v1/t"

    # When events are posted with each
    old = post_until(401, lambda: post(url, {"event": "Old"}, key=pipeline.pipeline_key))
    new = post(url, {"event": "New"}, key=new_key)

    # Then only the new key is accepted
    assert_error(old, 401, "INVALID_PIPELINE_KEY")
    assert new.status == 200


# -- 413 PAYLOAD_TOO_LARGE ------------------------------------------------------------------------------


def padded_event(size: int) -> bytes:
    skeleton = '{"event":"Big","properties":{"pad":"%s"}}'
    body = (skeleton % ("x" * (size - len(skeleton % "")))).encode()
    assert len(body) == size
    return body


@pytest.mark.parametrize("size", [64 * 1024 + 1, 70 * 1024, 1024 * 1024], ids=["64 KB + 1 byte", "70 KB", "1 MB"])
def test_a_body_over_64_kb_is_refused_with_413_and_not_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str, size: int
) -> None:
    # Given an otherwise valid event over the 64 KB limit
    body = padded_event(size)

    # When it is posted
    response = post(gateway.url + "/v1/t", body, key=pipeline.pipeline_key)

    # Then it is refused as too large, and nothing reaches Kafka
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert published(kafka_bootstrap, kafka_topic, pipeline) == []


def test_a_small_gzip_body_that_inflates_past_64_kb_is_refused_with_413_and_not_published(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a gzip body of about a kilobyte that inflates to a megabyte
    body = gzip.compress(padded_event(1024 * 1024))
    assert len(body) < 4 * 1024

    # When it is posted
    response = post(gateway.url + "/v1/t", body, key=pipeline.pipeline_key, headers={"Content-Encoding": "gzip"})

    # Then the limit applies after decompression, and nothing reaches Kafka
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert published(kafka_bootstrap, kafka_topic, pipeline) == []


# -- 415 UNSUPPORTED_MEDIA_TYPE -------------------------------------------------------------------------


EVENT = b'{"event": "Viewed"}'
MULTIPART = b'--xyz\r\nContent-Disposition: form-data; name="event"\r\n\r\nViewed\r\n--xyz--\r\n'
UNSUPPORTED = {
    "a form": ({"Content-Type": "application/x-www-form-urlencoded"}, b"event=Viewed"),
    "multipart": ({"Content-Type": "multipart/form-data; boundary=xyz"}, MULTIPART),
    # Twisted would parse this itself and answer a bare 400 before the gateway saw it (serve.py).
    "malformed multipart": ({"Content-Type": "multipart/form-data; boundary=xyz"}, b"--abc\r\nnot a form"),
    "XML": ({"Content-Type": "application/xml"}, b"<event>Viewed</event>"),
    "brotli": ({"Content-Type": "application/json", "Content-Encoding": "br"}, EVENT),
    "deflate": ({"Content-Type": "application/json", "Content-Encoding": "deflate"}, EVENT),
}


@pytest.mark.parametrize(("headers", "body"), UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_an_unsupported_content_type_or_encoding_is_refused_with_415_and_not_published(
    gateway: Gateway,
    pipeline: PipelineCreated,
    kafka_bootstrap: str,
    kafka_topic: str,
    headers: dict[str, str],
    body: bytes,
) -> None:
    # Given a body in a format the gateway does not read

    # When it is posted
    response = post(gateway.url + "/v1/t", body, key=pipeline.pipeline_key, headers=headers)

    # Then it is refused with 415, and nothing reaches Kafka
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert published(kafka_bootstrap, kafka_topic, pipeline) == []


# -- the path and the method --------------------------------------------------------------------------


def test_an_unknown_browser_path_is_answered_404_in_the_error_shape(
    gateway: Gateway, pipeline: PipelineCreated
) -> None:
    # Given a path that is not one of t, p, i, g

    # When an event is posted to it
    response = post(gateway.url + "/v1/x", {"event": "Viewed"}, key=pipeline.pipeline_key)

    # Then it is a 404 in the usual error shape
    assert_error(response, 404, "NOT_FOUND")


def test_a_method_other_than_post_is_answered_405_in_the_error_shape(gateway: Gateway) -> None:
    # Given a client that tries to read from a browser endpoint

    # When it sends a GET
    response = request("GET", gateway.url + "/v1/t")

    # Then it is a 405 naming the allowed methods, in the usual error shape
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert {m.strip() for m in (response.header("Allow") or "").split(",")} == {"POST", "OPTIONS"}
