"""SIGTERM: the gateway stops taking new work, finishes what is in flight, flushes, and exits 0."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

from pipelines.services import PipelineCreated
from tests.conftest import KafkaBehindProxy
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import Response, post, request
from tests.fixtures.kafka import read_records


def test_sigterm_lets_a_request_in_flight_finish_and_its_event_reach_kafka(
    pipeline: PipelineCreated,
    kafka_behind_proxy: KafkaBehindProxy,
    gateway_factory: Callable[..., Gateway],
    kafka_topic: str,
) -> None:
    gateway = gateway_factory(KAFKA_BOOTSTRAP_SERVERS=kafka_behind_proxy.bootstrap, KAFKA_ACK_TIMEOUT="8")
    assert post(gateway.url + "/v1/t", {"event": "Before"}, key=pipeline.pipeline_key).status == 200
    kafka_behind_proxy.proxy.cut()  # the next request waits for an acknowledgement that cannot come yet
    answers: list[Response] = []
    in_flight = threading.Thread(
        target=lambda: answers.append(
            post(gateway.url + "/v1/t", {"event": "In Flight", "messageId": "in-flight-1"}, key=pipeline.pipeline_key)
        )
    )
    in_flight.start()
    time.sleep(1.0)

    gateway.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    draining = request("GET", gateway.url + "/readyz")
    kafka_behind_proxy.proxy.restore()
    in_flight.join(20)
    exit_code = gateway.process.wait(20)

    assert draining.status == 503 and draining.json() == {"status": "draining"}
    assert [a.status for a in answers] == [200]
    assert exit_code == 0
    records = read_records(kafka_behind_proxy.bootstrap, kafka_topic, pipeline_id=pipeline.pipeline.id, expect=2)
    assert "in-flight-1" in {r.value["messageId"] for r in records}
