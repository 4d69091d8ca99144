"""Kafka cut while events arrive: every event answered 200 is in the topic afterwards."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pipelines.services import PipelineCreated
from tests.conftest import KafkaBehindProxy
from tests.faults.conftest import FAULT_CUT_SECONDS, FAULT_EVENTS, report, topic_message_ids, wait_until_drained
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import post, request
from tests.fixtures.load import Answers, send_events

LEAD_SECONDS = 5.0  # load before the cut, and after the restore


def run_with_a_cut(
    gateway: Gateway, proxy_cut: Callable[[], None], proxy_restore: Callable[[], None], pipeline: PipelineCreated,
    *, cut_seconds: float, prefix: str,
) -> tuple[Answers, float]:  # fmt: skip
    """FAULT_EVENTS events spread over the lead, the cut and the lead after it."""
    rate = FAULT_EVENTS / (2 * LEAD_SECONDS + cut_seconds)
    answers: list[Answers] = []
    sender = threading.Thread(
        target=lambda: answers.append(
            send_events(gateway.url, pipeline.pipeline_key, FAULT_EVENTS, prefix=prefix, rate=rate)
        )
    )
    sender.start()
    time.sleep(LEAD_SECONDS)
    proxy_cut()
    time.sleep(cut_seconds)
    restored_at = time.monotonic()
    proxy_restore()
    sender.join(cut_seconds + 120)
    return answers[0], restored_at


def test_a_broker_cut_loses_nothing_answered_200(
    kafka_behind_proxy: KafkaBehindProxy, gateway_factory: Callable[..., Gateway], busy_pipeline: PipelineCreated,
    kafka_topic: str,
) -> None:  # fmt: skip
    # Given a gateway whose only way to Kafka is a proxy, taking a steady stream of events
    gateway = gateway_factory(KAFKA_BOOTSTRAP_SERVERS=kafka_behind_proxy.bootstrap, KAFKA_ACK_TIMEOUT="2")
    proxy = kafka_behind_proxy.proxy

    # When Kafka is cut off for FAULT_CUT_SECONDS in the middle of it, then comes back
    answers, _ = run_with_a_cut(
        gateway, proxy.cut, proxy.restore, busy_pipeline, cut_seconds=FAULT_CUT_SECONDS, prefix="cut"
    )
    wait_until_drained(gateway)

    # Then every event answered 200 is in the topic (the spool took them during the cut)
    accepted = answers.accepted()
    found = topic_message_ids(
        kafka_behind_proxy.bootstrap, kafka_topic, busy_pipeline.pipeline.id, expect=len(accepted)
    )
    missing = accepted - set(found)
    duplicates = sum(n - 1 for n in found.values())
    report(
        "broker cut", cut_seconds=FAULT_CUT_SECONDS, sent=FAULT_EVENTS, answered_200=len(accepted),
        answers=dict(answers.by_status()), found=len(found), missing=len(missing), duplicates=duplicates,
    )  # fmt: skip
    assert not missing, sorted(missing)[:10]
    assert len(accepted) == FAULT_EVENTS, answers.by_status()  # the spool took every one: no 503


def test_a_cut_longer_than_the_message_timeout_is_recovered_without_a_restart(
    kafka_behind_proxy: KafkaBehindProxy, gateway_factory: Callable[..., Gateway], busy_pipeline: PipelineCreated,
    kafka_topic: str,
) -> None:  # fmt: skip
    # Given a gateway whose producer gives up on a record after 8 s (librdkafka's message timeout)
    gateway = gateway_factory(
        KAFKA_BOOTSTRAP_SERVERS=kafka_behind_proxy.bootstrap, KAFKA_ACK_TIMEOUT="2", KAFKA_MESSAGE_TIMEOUT_MS="8000"
    )
    proxy = kafka_behind_proxy.proxy
    events = FAULT_EVENTS // 2

    # When Kafka stalls (accepts connections, answers nothing) for longer than that, under load
    rate = events / (2 * LEAD_SECONDS + 15)
    answers: list[Answers] = []
    sender = threading.Thread(
        target=lambda: answers.append(
            send_events(gateway.url, busy_pipeline.pipeline_key, events, prefix="long", rate=rate)
        )
    )
    sender.start()
    time.sleep(LEAD_SECONDS)
    proxy.stall()
    time.sleep(15)
    proxy.restore()
    restored_at = time.monotonic()
    sender.join(120)

    # Then the same process recovers on its own: the spool drains, events go direct again, and a new
    # event is acknowledged by Kafka (no "fenced" producer answering 503 for a minute)
    checks = wait_until_drained(gateway, timeout=60)
    recovered_after = time.monotonic() - restored_at
    response = post(
        gateway.url + "/v1/t",
        {"event": "After", "messageId": "after-1", "anonymousId": "a"},
        key=busy_pipeline.pipeline_key,
    )
    assert response.status == 200
    assert request("GET", gateway.url + "/readyz").json()["checks"]["spool"]["mode"] == "direct"

    # ...and every event answered 200 is in the topic
    accepted = answers[0].accepted() | {"after-1"}
    found = topic_message_ids(
        kafka_behind_proxy.bootstrap, kafka_topic, busy_pipeline.pipeline.id, expect=len(accepted)
    )
    missing = accepted - set(found)
    report(
        "broker stalled past the message timeout", stall_seconds=15, message_timeout_s=8, sent=events + 1,
        answered_200=len(accepted), answers=dict(answers[0].by_status()), found=len(found), missing=len(missing),
        duplicates=sum(n - 1 for n in found.values()), recovered_after_s=round(recovered_after, 1),
        producers_replaced=checks["kafka"].get("producersReplaced"),
    )  # fmt: skip
    assert not missing, sorted(missing)[:10]
