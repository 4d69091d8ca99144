"""Duplicates leave one record; two processes share one pipeline's rate limit."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from pipelines.services import PipelineCreated
from tests.conftest import KafkaBehindProxy
from tests.faults.conftest import report, topic_message_ids, wait_until_drained
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import post, request


def test_the_same_event_sent_twice_and_within_a_batch_leaves_one_record(
    gateway_factory: Callable[..., Gateway], busy_pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str,
) -> None:  # fmt: skip
    # Given two gateway processes on one pipeline
    first, second = gateway_factory(), gateway_factory()
    event = {"type": "track", "event": "Paid", "messageId": "dup-1", "userId": "u1"}

    # When the same event arrives twice at one, once at the other, and twice within one batch
    answers = [post(g.url + "/v1/t", event, key=busy_pipeline.pipeline_key).status for g in (first, first, second)]
    batch = post(
        first.url + "/v1/batch", {"batch": [{**event, "messageId": "dup-2"}] * 2}, key=busy_pipeline.pipeline_key
    )

    # Then each was answered as accepted, and each messageId is once in the topic
    assert answers == [200, 200, 200]
    assert batch.json() == {"success": True, "accepted": 2, "rejected": 0, "errors": []}
    found = topic_message_ids(kafka_bootstrap, kafka_topic, busy_pipeline.pipeline.id, expect=2)
    report("duplicates sent", sent=5, answered_200=5, records={m: n for m, n in found.items()})
    assert found == {"dup-1": 1, "dup-2": 1}


def test_a_retry_after_a_client_timeout_leaves_one_record(
    kafka_behind_proxy: KafkaBehindProxy, gateway_factory: Callable[..., Gateway], busy_pipeline: PipelineCreated,
    kafka_topic: str,
) -> None:  # fmt: skip
    # Given a gateway whose Kafka stalls, and a client that gives up after one second
    gateway = gateway_factory(KAFKA_BOOTSTRAP_SERVERS=kafka_behind_proxy.bootstrap, KAFKA_ACK_TIMEOUT="3")
    assert (
        post(gateway.url + "/v1/t", {"event": "Warm", "anonymousId": "a"}, key=busy_pipeline.pipeline_key).status == 200
    )
    kafka_behind_proxy.proxy.stall()
    body = b'{"event": "Slow", "messageId": "retry-1", "anonymousId": "a"}'
    headers = {"Authorization": f"Bearer {busy_pipeline.pipeline_key}", "Content-Type": "application/json"}
    try:
        urllib.request.urlopen(urllib.request.Request(gateway.url + "/v1/t", data=body, headers=headers), timeout=1)
        raise AssertionError("the first attempt should have timed out on the client's side")
    except (TimeoutError, urllib.error.URLError):
        pass

    # When the client retries, first while the gateway still holds the event, then until it succeeds
    statuses = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        statuses.append(post(gateway.url + "/v1/t", body, key=busy_pipeline.pipeline_key).status)
        if statuses[-1] == 200:
            break
        time.sleep(1.0)
    kafka_behind_proxy.proxy.restore()
    wait_until_drained(gateway)

    # Then the retry is answered 200 in the end (503 while the first copy was in flight), and the topic has one copy
    found = topic_message_ids(kafka_behind_proxy.bootstrap, kafka_topic, busy_pipeline.pipeline.id, expect=2)
    report("client retry after a timeout", attempts=len(statuses) + 1, answers=statuses, records=found["retry-1"])
    assert statuses[-1] == 200 and set(statuses) <= {200, 503}, statuses
    assert found["retry-1"] == 1


def test_two_processes_share_one_pipelines_rate_limit_within_15_percent(
    gateway_factory: Callable[..., Gateway], make_pipeline: Callable[..., PipelineCreated],
) -> None:  # fmt: skip
    # Given a pipeline of 50 events/s and two gateway processes
    created = make_pipeline(rate_limit_rps=50)
    gateways = [gateway_factory(), gateway_factory()]
    seconds = 6.0
    accepted = [0, 0]
    limited: list[str | None] = []
    lock = threading.Lock()

    def hammer(index: int, gateway: Gateway) -> None:
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            response = post(
                gateway.url + "/v1/t", {"event": "E", "anonymousId": f"v{index}-{n}"}, key=created.pipeline_key
            )
            n += 1
            with lock:
                if response.status == 200:
                    accepted[index] += 1
                elif response.status == 429:
                    limited.append(response.header("Retry-After"))

    # When both are sent as much as they will take, from two clients each, for six seconds
    threads = [threading.Thread(target=hammer, args=(i % 2, gateways[i % 2])) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then together they accepted the rate times the time plus one burst, within 15%, each its share
    expected = 50 * seconds + 50
    total = sum(accepted)
    report(
        "two processes, one rate limit",
        rate=50,
        seconds=seconds,
        accepted=total,
        expected=expected,
        per_process=accepted,
    )
    assert abs(total - expected) <= 0.15 * expected, (accepted, expected)
    assert all(a > 0 for a in accepted)
    assert limited and all(value and value.isdigit() and int(value) >= 1 for value in limited)


def test_a_pixel_over_the_limit_still_answers_the_gif_and_is_not_published(
    gateway: Gateway, make_pipeline: Callable[..., PipelineCreated], kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a pipeline of one event per second
    created = make_pipeline(rate_limit_rps=1)

    # When a mail client opens five emails at once
    answers = [
        request("GET", f"{gateway.url}/v1/pixel/track?wk={created.pipeline_key}&e=Open&uid=u&mid=px-{n}")
        for n in range(5)
    ]

    # Then each gets the GIF, and only what the limit allows is published
    assert [(a.status, a.header("Content-Type")) for a in answers] == [(200, "image/gif")] * 5
    found = topic_message_ids(kafka_bootstrap, kafka_topic, created.pipeline.id, expect=5, timeout=5)
    assert 1 <= len(found) <= 2, found
