"""The browser endpoints while Kafka is unreachable: answered 200 from the durable spool, within the bounded
wait; spooled events reach Kafka in order once it is back (issue 9)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from pipelines.services import PipelineCreated
from tests.conftest import KafkaBehindProxy
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import Response, post, request
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


def message_ids(cut: CutOffKafka, created: PipelineCreated, expect: int) -> list[str]:
    records = read_records(
        cut.bootstrap, "raw-events", pipeline_id=created.pipeline.id, expect=expect, timeout=30, settle=1
    )
    return [r.value["messageId"] for r in sorted(records, key=lambda r: r.offset)]


def test_an_event_sent_while_kafka_is_unreachable_is_answered_200_within_the_bounded_wait(
    cut_off_kafka: CutOffKafka, pipeline: PipelineCreated
) -> None:
    # Given a gateway that has published before, then loses Kafka
    assert track(cut_off_kafka.gateway, pipeline, "m-before").status == 200
    cut_off_kafka.proxy.cut()

    # When a browser posts an event
    started = time.monotonic()
    response = track(cut_off_kafka.gateway, pipeline, "m-during")
    waited = time.monotonic() - started

    # Then after at most the bounded wait it is accepted (spooled), with the visitor's cookies
    assert (response.status, response.json()) == (200, {"success": True}), response.body
    assert waited < ACK_TIMEOUT + SLACK, waited
    assert "_dfid" in response.cookies
    # ...and readiness tells the truth: still ready (the spool takes events), Kafka down, spooling
    ready = request("GET", cut_off_kafka.gateway.url + "/readyz")
    assert ready.status == 200
    checks = ready.json()["checks"]
    assert (checks["kafka"]["status"], checks["spool"]["mode"], checks["spool"]["depth"]) == ("down", "spooling", 1)


def test_once_kafka_is_known_down_events_are_spooled_at_once(
    cut_off_kafka: CutOffKafka, pipeline: PipelineCreated
) -> None:
    # Given a gateway that has seen Kafka fail to acknowledge
    cut_off_kafka.proxy.cut()
    assert track(cut_off_kafka.gateway, pipeline, "m-first").status == 200

    # When more events arrive during the outage
    started = time.monotonic()
    statuses = [track(cut_off_kafka.gateway, pipeline, f"m-{n}").status for n in range(20)]
    per_event = (time.monotonic() - started) / 20

    # Then each is answered 200 without waiting for Kafka: only for the spool's fsync
    assert statuses == [200] * 20
    assert per_event < 0.5, per_event


def test_spooled_events_reach_kafka_in_order_once_it_is_back_and_events_go_direct_again(
    cut_off_kafka: CutOffKafka, pipeline: PipelineCreated
) -> None:
    # Given one visitor's events: before, during and after an outage
    assert track(cut_off_kafka.gateway, pipeline, "m-0").status == 200
    cut_off_kafka.proxy.cut()
    assert [track(cut_off_kafka.gateway, pipeline, f"m-{n}").status for n in range(1, 6)] == [200] * 5

    # When Kafka comes back
    cut_off_kafka.proxy.restore()
    deadline = time.monotonic() + 20
    while request("GET", cut_off_kafka.gateway.url + "/readyz").json()["checks"]["spool"]["mode"] != "direct":
        assert time.monotonic() < deadline, "the spool was not drained"
        time.sleep(0.2)
    assert track(cut_off_kafka.gateway, pipeline, "m-6").status == 200

    # Then every event is in Kafka, once each, in the order they were answered
    found = message_ids(cut_off_kafka, pipeline, expect=7)
    assert found == [f"m-{n}" for n in range(7)], found
