"""The intake sequence reports every refused event of a known pipeline to rejected-events, with the
reason and what the client sent; unknown keys and our own failures are not reported."""

from __future__ import annotations

import gzip
import json

from django.conf import settings

from pipelines import services
from pipelines.services import PipelineCreated
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import post, request
from tests.fixtures.kafka import read_records

SETTLE = 1.0


def rejected_records(kafka_bootstrap: str, created: PipelineCreated, *, expect: int, settle: float = 0.0) -> list:
    return read_records(
        kafka_bootstrap, settings.KAFKA_REJECTED_TOPIC, pipeline_id=created.pipeline.id, expect=expect, settle=settle
    )


def test_each_refused_batch_item_is_reported_with_its_own_bytes(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str
) -> None:
    # Given a batch with one good event, one that is not an object and one track without a name
    batch = {"batch": [{"event": "Good", "userId": "u1"}, "not an event", {"type": "track", "userId": "u2"}]}

    # When it is sent
    response = post(gateway.url + "/v1/batch", batch, key=pipeline.pipeline_key)

    # Then the two bad items are on rejected-events, each with its reason and its own bytes
    assert response.status == 200 and response.json()["rejected"] == 2
    records = rejected_records(kafka_bootstrap, pipeline, expect=2, settle=SETTLE)
    found = sorted((r.value["code"], r.value["source"]["kind"], r.value["payload"]) for r in records)
    assert found == [
        ("INVALID_PAYLOAD", "batch", '"not an event"'),
        ("INVALID_PAYLOAD", "batch", '{"type":"track","userId":"u2"}'),
    ]


def test_a_webhook_with_a_bad_signature_on_a_known_source_is_reported_with_its_decompressed_body(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str
) -> None:
    # Given a Stripe source and a gzipped delivery signed with another secret
    source = services.webhook_source_create(pipeline=pipeline.pipeline, scheme="stripe", secret="whsec_right")
    body = json.dumps({"type": "charge.succeeded", "id": "evt_1"}).encode()
    headers = {"Stripe-Signature": "t=1700000000,v1=" + "0" * 64, "Content-Encoding": "gzip"}

    # When it arrives
    response = post(f"{gateway.url}/v1/webhook?source={source.id}", gzip.compress(body), headers=headers)

    # Then it is refused, and reported with the body as the vendor meant it
    assert response.status == 401
    [record] = rejected_records(kafka_bootstrap, pipeline, expect=1)
    assert (record.value["code"], record.value["source"]["kind"]) == ("INVALID_SIGNATURE", "webhook")
    assert json.loads(record.value["payload"]) == {"type": "charge.succeeded", "id": "evt_1"}


def test_a_pixel_with_a_bad_parameter_is_reported_with_its_query(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str
) -> None:
    # Given an email open whose ts is not a time
    query = f"wk={pipeline.pipeline_key}&e=Opened&uid=u1&ts=yesterday"

    # When the mail client loads the pixel
    response = request("GET", f"{gateway.url}/v1/pixel/track?{query}")

    # Then it still gets the GIF, and the refusal is reported with the query it sent
    assert (response.status, response.header("Content-Type")) == (200, "image/gif")
    [record] = rejected_records(kafka_bootstrap, pipeline, expect=1)
    assert (record.value["code"], record.value["payload"]) == ("INVALID_PAYLOAD", query)


def test_a_request_with_a_revoked_key_is_not_reported(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str
) -> None:
    # Given a key that has been revoked: its pipeline is no longer known to the request
    services.key_revoke(key=pipeline.pipeline_key)

    # When a browser posts a bad event with it
    response = post(gateway.url + "/v1/t", {"properties": {}}, key=pipeline.pipeline_key)

    # Then it is refused, and nothing is reported for the pipeline
    assert response.status == 401
    assert rejected_records(kafka_bootstrap, pipeline, expect=0, settle=SETTLE) == []
