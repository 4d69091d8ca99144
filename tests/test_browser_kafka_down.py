"""The browser endpoints while Kafka is unreachable: a bounded wait, then 503; nothing acknowledged lost."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.services import PipelineCreated
from signal_gateway.devbroker import broker_binary, wait_for_port
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import Response, post
from tests.fixtures.kafka import read_records
from tests.fixtures.net import TcpProxy, free_port

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
    tcp_proxy: Callable[[int], TcpProxy], gateway_factory: Callable[..., Gateway], log_dir: Path
) -> Iterator[CutOffKafka]:
    """A broker of its own that advertises the proxy's port, so every client (the gateway's producer
    and the tests' consumer) reaches it through the proxy. The session broker advertises its own
    port: a gateway bootstrapped through a proxy would go around it straight to the broker."""
    port = free_port()
    proxy = tcp_proxy(port)
    listener, advertised = f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{proxy.port}"
    with open(log_dir / f"tansu-behind-proxy-{port}.log", "ab") as log:
        broker = subprocess.Popen(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    gateway: Gateway | None = None
    try:
        wait_for_port(port)
        bootstrap = f"127.0.0.1:{proxy.port}"
        gateway = gateway_factory(KAFKA_BOOTSTRAP_SERVERS=bootstrap, KAFKA_ACK_TIMEOUT=str(ACK_TIMEOUT))
        yield CutOffKafka(gateway=gateway, proxy=proxy, bootstrap=bootstrap)
    finally:
        # Stop the gateway while the broker is still reachable, so its flush on exit does not wait out
        # records it was still retrying.
        proxy.restore()
        if gateway is not None:
            gateway.stop()
        broker.terminate()
        broker.wait(10)


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
