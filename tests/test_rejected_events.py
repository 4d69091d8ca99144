"""The rejected-events topic (issue 10): refused events of known pipelines, best effort, for operators."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from confluent_kafka.admin import AdminClient
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from ingestion import metrics, rejected
from ingestion import publisher as publisher_module
from ingestion.publisher import Publisher
from tests.fixtures.gateway import Gateway
from tests.fixtures.kafka import read_records
from tests.fixtures.net import free_port


@pytest.fixture
def publisher_at() -> Iterator[Callable[[str], Publisher]]:
    """This process's publisher (``get_publisher()``), pointed at a given broker, closed after."""
    saved = publisher_module._default

    def point_at(bootstrap: str) -> Publisher:
        publisher_module._default = Publisher(bootstrap=bootstrap, topic=settings.KAFKA_TOPIC, ack_timeout=2.0)
        return publisher_module._default

    yield point_at
    if publisher_module._default is not None and publisher_module._default is not saved:
        publisher_module._default.close(timeout=1.0)
    publisher_module._default = saved


def counter(name: str, **labels: str) -> int:
    """This process's value of a counter, as a scrape of /metrics shows it."""
    wanted = tuple(sorted(labels.items()))
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name and tuple(sorted(sample.labels.items())) == wanted:
                return int(sample.value)
    raise AssertionError(f"{name} {labels} is not in /metrics")


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_refused_event_is_on_rejected_events_with_its_reason_time_source_and_first_8_kb(
    publisher_at: Callable[[str], Publisher], kafka_bootstrap: str
) -> None:
    # Given the process's producer on a broker with the rejected-events topic
    publisher = publisher_at(kafka_bootstrap)
    assert publisher.ensure_topic(partitions=3, topic=settings.KAFKA_REJECTED_TOPIC)
    pipeline_id = f"pip_{uuid.uuid4().hex[:16]}"
    body = b'{"event": "' + b"x" * 20_000 + b'"}'
    published_before = counter("gateway_rejected_published_total")

    # When a refusal is reported
    started = time.monotonic()
    rejected.report(
        pipeline_id=pipeline_id,
        source_kind="browser",
        code="INVALID_PAYLOAD",
        message="a track event needs a non-empty event name",
        received_at=datetime(2026, 11, 29, 8, 30, 1, 234_000, tzinfo=UTC),
        payload=body,
    )
    returned_after = time.monotonic() - started

    # Then it returned without waiting for Kafka, and the record is on the topic
    assert returned_after < 0.05, returned_after
    [record] = read_records(kafka_bootstrap, settings.KAFKA_REJECTED_TOPIC, pipeline_id=pipeline_id, expect=1)
    assert record.headers == {
        "pipeline_id": pipeline_id,
        "source_kind": "browser",
        "error_code": "INVALID_PAYLOAD",
        "schema_version": "1",
    }
    assert record.key == pipeline_id
    assert record.value == {
        "pipelineId": pipeline_id,
        "code": "INVALID_PAYLOAD",
        "message": "a track event needs a non-empty event name",
        "receivedAt": "2026-11-29T08:30:01.234Z",
        "source": {"kind": "browser", "id": None},
        "payload": body[:8192].decode(),
        "payloadBytes": len(body),
        "truncated": True,
        "schemaVersion": 1,
    }
    # And /metrics counts it once Kafka has acknowledged it
    assert wait_for(lambda: counter("gateway_rejected_published_total") == published_before + 1)


def test_a_payload_that_is_not_utf8_arrives_as_text_with_replacement_characters(
    publisher_at: Callable[[str], Publisher], kafka_bootstrap: str
) -> None:
    # Given the process's producer on a broker with the rejected-events topic
    assert publisher_at(kafka_bootstrap).ensure_topic(partitions=3, topic=settings.KAFKA_REJECTED_TOPIC)
    pipeline_id = f"pip_{uuid.uuid4().hex[:16]}"

    # When a webhook whose body is not UTF-8 is refused
    rejected.report(
        pipeline_id=pipeline_id,
        source_kind="webhook",
        source_id="wh_abc",
        code="INVALID_SIGNATURE",
        message="bad signature",
        received_at=datetime.now(UTC),
        payload=b"caf\xe9 \xff",
    )

    # Then the record is readable JSON, the bad bytes replaced, nothing truncated
    [record] = read_records(kafka_bootstrap, settings.KAFKA_REJECTED_TOPIC, pipeline_id=pipeline_id, expect=1)
    assert record.value["payload"] == "caf\ufffd \ufffd"
    assert (record.value["payloadBytes"], record.value["truncated"]) == (6, False)
    assert record.value["source"] == {"kind": "webhook", "id": "wh_abc"}


def test_with_the_broker_down_reporting_never_waits_and_past_its_backlog_counts_drops(
    publisher_at: Callable[[str], Publisher], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a producer whose broker does not answer, and a rejected-events backlog of ~3 records
    publisher_at(f"127.0.0.1:{free_port()}")
    record_size = len(
        rejected.to_record(
            pipeline_id="pip_down",
            source_kind="server",
            source_id=None,
            code="INVALID_SIGNATURE",
            message="bad signature",
            received_at=datetime.now(UTC),
            payload=b"{}" * 2000,
        ).value
    )
    monkeypatch.setattr(rejected, "_budget", rejected._Budget(3 * record_size + record_size // 2))
    dropped_before = counter("gateway_rejected_dropped_total", reason="backlog")

    # When ten refusals are reported
    started = time.monotonic()
    for _ in range(10):
        rejected.report(
            pipeline_id="pip_down",
            source_kind="server",
            code="INVALID_SIGNATURE",
            message="bad signature",
            received_at=datetime.now(UTC),
            payload=b"{}" * 2000,
        )
    took = time.monotonic() - started

    # Then none waited for Kafka; three wait in the producer's queue and seven were dropped and counted
    assert took < 0.2, took
    assert counter("gateway_rejected_dropped_total", reason="backlog") == dropped_before + 7


def test_the_gateway_creates_the_rejected_events_topic_at_start_up(
    gateway_factory: Callable[..., Gateway], kafka_bootstrap: str
) -> None:
    # Given a rejected-events topic name that no broker has seen
    topic = f"rejected-{uuid.uuid4().hex[:12]}"

    # When a gateway starts with it
    gateway_factory(KAFKA_REJECTED_TOPIC=topic)

    # Then the topic exists, with the configured partitions
    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=5)
    assert topic in metadata.topics, sorted(metadata.topics)
    assert len(metadata.topics[topic].partitions) == settings.KAFKA_TOPIC_PARTITIONS
