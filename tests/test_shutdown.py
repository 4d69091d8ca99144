"""SIGTERM: the gateway stops taking new work, finishes what is in flight, flushes, and exits 0."""

from __future__ import annotations

import http.client
import signal
import socket
import threading
import time
from collections.abc import Callable

import pytest

from pipelines.services import PipelineCreated
from tests.conftest import KafkaBehindProxy
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import Response, post
from tests.fixtures.kafka import read_records


def test_sigterm_lets_a_request_in_flight_finish_and_its_event_reach_kafka(
    pipeline: PipelineCreated,
    kafka_behind_proxy: KafkaBehindProxy,
    gateway_factory: Callable[..., Gateway],
    kafka_topic: str,
) -> None:
    gateway = gateway_factory(KAFKA_BOOTSTRAP_SERVERS=kafka_behind_proxy.bootstrap, KAFKA_ACK_TIMEOUT="8")
    assert post(gateway.url + "/v1/t", {"event": "Before"}, key=pipeline.pipeline_key).status == 200
    kafka_behind_proxy.proxy.stall()  # the next request waits for an acknowledgement that cannot come yet
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
    with pytest.raises(OSError):  # it stopped listening at once: the load balancer sees it gone
        socket.create_connection(("127.0.0.1", gateway.port), timeout=2).close()
    kafka_behind_proxy.proxy.restore()
    in_flight.join(20)
    exit_code = gateway.process.wait(20)

    assert [a.status for a in answers] == [200]
    assert exit_code == 0
    records = read_records(kafka_behind_proxy.bootstrap, kafka_topic, pipeline_id=pipeline.pipeline.id, expect=2)
    assert "in-flight-1" in {r.value["messageId"] for r in records}


def test_a_request_on_an_open_connection_after_sigterm_is_told_to_go_elsewhere(
    pipeline: PipelineCreated, kafka_behind_proxy: KafkaBehindProxy, gateway_factory: Callable[..., Gateway]
) -> None:
    # Given a client with a kept-alive connection, and a request in flight that keeps the process up
    gateway = gateway_factory(KAFKA_BOOTSTRAP_SERVERS=kafka_behind_proxy.bootstrap, KAFKA_ACK_TIMEOUT="8")
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    connection.request("GET", "/healthz")
    assert connection.getresponse().read() == b'{"status":"ok"}'
    kafka_behind_proxy.proxy.stall()
    in_flight = threading.Thread(
        target=post, args=(gateway.url + "/v1/t", {"event": "Slow"}), kwargs={"key": pipeline.pipeline_key}
    )
    in_flight.start()
    time.sleep(1.0)

    # When the process is told to stop, and the client sends another request on its connection
    gateway.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    headers = {"Authorization": f"Bearer {pipeline.pipeline_key}", "Content-Type": "application/json"}
    connection.request("POST", "/v1/t", body=b'{"event": "Late"}', headers=headers)
    answer = connection.getresponse()
    body = answer.read()

    # Then it is refused with 503 and told to close the connection; the process still exits cleanly
    assert answer.status == 503, body
    assert answer.getheader("Connection") == "close"
    kafka_behind_proxy.proxy.restore()
    in_flight.join(20)
    assert gateway.process.wait(20) == 0
