"""The browser endpoints while Kafka is unreachable: a bounded wait, then 503; nothing acknowledged lost."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from pipelines.services import PipelineCreated
from tests.conftest import KafkaBehindProxy
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import Response, post
from tests.fixtures.kafka import read_records
from tests.fixtures.net import TcpProxy

ACK_TIMEOUT = 2.0
# The request may take the ack timeout plus the gateway's own work and a loaded machine's jitter.
SLACK = 2.0


@dataclass
class CutOffKafka:
    """A gateway whose only way to Kafka is a proxy the test can cut."""

    gateway: Gateway
    proxy: TcpProxy
    bootstrap: str


@pytest.fixture
def cut_off_kafka(
    kafka_behind_proxy: KafkaBehindProxy, gateway_factory: Callable[..., Gateway]
) -> Iterator[CutOffKafka]:
    gateway = gateway_factory(KAFKA_BOOTSTRAP_SERVERS=kafka_behind_proxy.bootstrap, KAFKA_ACK_TIMEOUT=str(ACK_TIMEOUT))
    try:
        yield CutOffKafka(gateway=gateway, proxy=kafka_behind_proxy.proxy, bootstrap=kafka_behind_proxy.bootstrap)
    finally:
        # Stop the gateway while the broker is still reachable, so its flush on exit does not wait out
        # records it was still retrying.
        kafka_behind_proxy.proxy.restore()
        gateway.stop()


def track(gateway: Gateway, created: PipelineCreated, message_id: str) -> Response:
    """One visitor's event: the same key, so one partition, in order."""
    event = {"event": "Viewed", "messageId": message_id, "anonymousId": "visitor-1"}
    return post(gateway.url + "/v1/t", event, key=created.pipeline_key)


def test_a_request_while_kafka_is_unreachable_gets_503_with_retry_after_within_the_bounded_wait(
    cut_off_kafka: CutOffKafka, pipeline: PipelineCreated
) -> None:
    # Given a gateway that has published before, then loses Kafka
    assert track(cut_off_kafka.gateway, pipeline, "m-before").status == 200
    cut_off_kafka.proxy.cut()

    # When a browser posts an event
    started = time.monotonic()
    response = track(cut_off_kafka.gateway, pipeline, "m-during")
    waited = time.monotonic() - started

    # Then after the bounded wait it is told to come back later, not that its event was bad
    assert response.status == 503, response.body
    assert response.json()["error"]["code"] == "UNAVAILABLE"
    assert int(response.header("Retry-After") or "0") > 0
    assert waited < ACK_TIMEOUT + SLACK, waited
    assert response.cookies == {}


def test_an_event_acknowledged_before_kafka_was_cut_is_in_kafka(
    cut_off_kafka: CutOffKafka, pipeline: PipelineCreated, kafka_topic: str
) -> None:
    # Given an event answered 200, then an outage during which another event is refused
    assert track(cut_off_kafka.gateway, pipeline, "m-acknowledged").status == 200
    cut_off_kafka.proxy.cut()
    assert track(cut_off_kafka.gateway, pipeline, "m-refused").status == 503

    # When Kafka can be read again
    cut_off_kafka.proxy.restore()
    records = read_records(cut_off_kafka.bootstrap, kafka_topic, pipeline_id=pipeline.pipeline.id, expect=1, settle=1)

    # Then the acknowledged event is there (the refused one may land too: the client retries it anyway)
    assert "m-acknowledged" in [r.value["messageId"] for r in records]


def test_a_request_succeeds_again_once_kafka_is_back(
    cut_off_kafka: CutOffKafka, pipeline: PipelineCreated, kafka_topic: str
) -> None:
    # Given a gateway that answered 503 while Kafka was cut
    cut_off_kafka.proxy.cut()
    assert track(cut_off_kafka.gateway, pipeline, "m-refused").status == 503

    # When Kafka comes back
    cut_off_kafka.proxy.restore()

    # Then within a few seconds a new event is accepted and published
    deadline = time.monotonic() + 15
    while (response := track(cut_off_kafka.gateway, pipeline, "m-after")).status != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (response.status, response.json()) == (200, {"success": True})
    records = read_records(cut_off_kafka.bootstrap, kafka_topic, pipeline_id=pipeline.pipeline.id, expect=1, settle=1)
    assert "m-after" in [r.value["messageId"] for r in records]
