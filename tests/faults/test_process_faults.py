"""The gateway process itself killed or stopped: SIGKILL while the spool holds events, SIGTERM under load."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pipelines.services import PipelineCreated
from tests.conftest import KafkaBehindProxy
from tests.faults.conftest import FAULT_EVENTS, report, topic_message_ids, wait_until_drained
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import request
from tests.fixtures.load import Answers, send_events


def test_events_spooled_before_a_sigkill_reach_kafka_after_a_restart(
    kafka_behind_proxy: KafkaBehindProxy, gateway_factory: Callable[..., Gateway], busy_pipeline: PipelineCreated,
    kafka_topic: str, tmp_path: Path,
) -> None:  # fmt: skip
    # Given a gateway that spooled events while Kafka was cut off
    spool_dir = str(tmp_path / "spool")
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_behind_proxy.bootstrap, "KAFKA_ACK_TIMEOUT": "2", "SPOOL_DIR": spool_dir}
    gateway = gateway_factory(**env)
    kafka_behind_proxy.proxy.cut()
    events = FAULT_EVENTS // 3
    answers = send_events(gateway.url, busy_pipeline.pipeline_key, events, prefix="kill", rate=2000, batch=10)
    spooled = request("GET", gateway.url + "/readyz").json()["checks"]["spool"]["depth"]
    assert spooled == len(answers.accepted()) == events, (spooled, answers.by_status())

    # When it is killed outright, Kafka comes back, and a new process starts on the same spool
    gateway.process.send_signal(signal.SIGKILL)
    gateway.process.wait(10)
    kafka_behind_proxy.proxy.restore()
    successor = gateway_factory(**env)
    wait_until_drained(successor)

    # Then every event the killed process answered 200 is in the topic
    accepted = answers.accepted()
    found = topic_message_ids(
        kafka_behind_proxy.bootstrap, kafka_topic, busy_pipeline.pipeline.id, expect=len(accepted)
    )
    missing = accepted - set(found)
    report(
        "SIGKILL with a full spool, then restart", sent=events, answered_200=len(accepted), spooled=spooled,
        found=len(found), missing=len(missing), duplicates=sum(n - 1 for n in found.values()),
    )  # fmt: skip
    assert not missing, sorted(missing)[:10]


def test_sigterm_under_load_loses_no_answered_event_and_exits_0(
    kafka_behind_proxy: KafkaBehindProxy, gateway_factory: Callable[..., Gateway], busy_pipeline: PipelineCreated,
    kafka_topic: str, tmp_path: Path,
) -> None:  # fmt: skip
    # Given a gateway under steady load, with Kafka stalled so that some requests wait for acknowledgements
    spool_dir = str(tmp_path / "spool")
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_behind_proxy.bootstrap, "KAFKA_ACK_TIMEOUT": "8",
        "SHUTDOWN_GRACE_SECONDS": "2", "SPOOL_DIR": spool_dir,
    }  # fmt: skip
    gateway = gateway_factory(**env)
    events = FAULT_EVENTS // 3
    answers: list[Answers] = []
    sender = threading.Thread(
        target=lambda: answers.append(
            send_events(gateway.url, busy_pipeline.pipeline_key, events, prefix="term", rate=400)
        )
    )
    sender.start()
    time.sleep(2.0)
    kafka_behind_proxy.proxy.stall()
    time.sleep(1.0)

    # When SIGTERM arrives in the middle of it
    gateway.process.send_signal(signal.SIGTERM)
    code = gateway.process.wait(30)
    sender.join(60)
    kafka_behind_proxy.proxy.restore()

    # Then it exits 0, and every event it answered 200 reaches Kafka (those it had spooled, through the
    # next process on its spool)
    successor = gateway_factory(**env)
    wait_until_drained(successor)
    accepted = answers[0].accepted()
    found = topic_message_ids(
        kafka_behind_proxy.bootstrap, kafka_topic, busy_pipeline.pipeline.id, expect=len(accepted)
    )
    missing = accepted - set(found)
    report(
        "SIGTERM under load", sent=len(answers[0].status), answered_200=len(accepted),
        answers=dict(answers[0].by_status()), found=len(found), missing=len(missing),
        duplicates=sum(n - 1 for n in found.values()), exit_code=code,
    )  # fmt: skip
    assert code == 0
    assert not missing, sorted(missing)[:10]
    assert accepted, "nothing was answered 200 before the SIGTERM"
