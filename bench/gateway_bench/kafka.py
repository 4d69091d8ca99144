"""The Kafka count: the bench pipeline's records read back from the topic, to reconcile with the
events the gateway answered 2xx; and the drain watch, which times how long a topic takes to hold
the events a gateway answered while its Kafka was cut."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.gateway_bench.core import BenchError

if TYPE_CHECKING:
    from confluent_kafka import Message

# librdkafka's reconnect.backoff.max.ms: after Kafka comes back, a producer may wait this long
# before it tries again, so a drain that shows nothing may not have started yet.
RECONNECT_BACKOFF_MAX_S = 10.0


def _headers(msg: Message) -> dict[str, bytes]:
    headers: dict[str, bytes] = {}
    for item in msg.headers() or []:
        name, value = item[0], item[1]
        if isinstance(name, str) and isinstance(value, bytes):
            headers[name] = value
    return headers


def count_records(
    bootstrap: str,
    topic: str,
    *,
    pipeline_id: str,
    timeout: float = 120.0,
    idle: float = 2.0,
    message_id_prefix: bytes | None = None,
) -> dict[str, int]:
    """The bench pipeline's records in the topic, read back by assignment from the beginning (a group
    join takes ~20 s on Tansu), and how many distinct message ids they carry.

    The watermarks are reported too, but not trusted: Tansu 0.6 (memory storage) answers a high
    watermark short of the records it serves, so reading stops only after every partition reached its
    end and ``idle`` seconds passed with nothing new (the gateway is stopped by then).

    With ``message_id_prefix``, it also counts the distinct message ids that start with it
    (``with_prefix``): one run's events, told apart from the smoke requests and warm-ups."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-unused",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions) if topic in metadata.topics else []
        if not partitions:
            raise BenchError(f"topic {topic} has no partitions")
        by_watermarks = 0
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            by_watermarks += high - low
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        wanted = pipeline_id.encode()
        read = for_pipeline = 0
        message_ids: set[bytes] = set()
        deadline = time.monotonic() + timeout
        last_record = time.monotonic()
        while True:
            now = time.monotonic()
            if len(at_end) == len(partitions) and now - last_record >= idle:
                break
            if now >= deadline:
                raise BenchError(f"could not read {topic} to its end within {timeout:g}s")
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                partition = msg.partition() or 0
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(partition)
                    continue
                last_record = time.monotonic()
                at_end.discard(partition)
                read += 1
                headers = _headers(msg)
                if headers.get("pipeline_id") == wanted:
                    for_pipeline += 1
                    message_ids.add(headers.get("message_id", b""))
        counts = {
            "read": read,
            "for_pipeline": for_pipeline,
            "distinct_message_ids": len(message_ids),
            "by_watermarks": by_watermarks,
        }
        if message_id_prefix is not None:
            counts["with_prefix"] = sum(1 for m in message_ids if m.startswith(message_id_prefix))
        return counts
    finally:
        consumer.close()


@dataclass
class Drain:
    """What reached the topic after Kafka came back, of the events sent while it was cut."""

    expected: int  # events answered 2xx while Kafka was cut
    arrived: int  # distinct records of the events sent during the cut, read after the restore
    seconds_to_all: float | None  # from the restore until ``expected`` had arrived (None: never)
    seconds_to_last: float | None  # from the restore until the last of them arrived
    server_cpu_pct: float = 0.0  # the gateway's CPU meanwhile

    @property
    def complete(self) -> bool:
        return self.arrived >= self.expected

    @property
    def events_per_s(self) -> float | None:
        """The drain rate: answered events over the time until the topic held them all."""
        if not self.expected or not self.seconds_to_all:
            return None
        return self.expected / self.seconds_to_all


def watch_drain(
    bootstrap: str,
    topic: str,
    *,
    pipeline_id: str,
    message_id_prefix: bytes,
    expected: int,
    restored_at: float,
    timeout: float,
    settle: float = 3.0,
) -> Drain:
    """Reads the topic from the beginning, from just after Kafka was restored, counting the distinct
    records whose message id starts with ``message_id_prefix`` (the events sent while it was cut),
    and when each arrived (as seen by this consumer, polling every 50 ms at most).

    It stops once ``expected`` have arrived and nothing new came for ``settle`` seconds (records of
    requests answered non-2xx may still follow: they are counted, not waited for), or after
    ``timeout``. With nothing arrived yet it waits at least librdkafka's reconnect backoff."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-drain-unused",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
        }
    )
    wanted = pipeline_id.encode()
    seen: set[bytes] = set()
    all_at: float | None = None
    last_at: float | None = None
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        partitions = sorted(metadata.topics[topic].partitions) if topic in metadata.topics else []
        if not partitions:
            raise BenchError(f"topic {topic} has no partitions")
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = restored_at + timeout
        while True:
            now = time.monotonic()
            quiet_since = last_at if last_at is not None else restored_at + RECONNECT_BACKOFF_MAX_S
            if (len(seen) >= expected and now - quiet_since >= settle) or now >= deadline:
                break
            for msg in consumer.consume(num_messages=10_000, timeout=0.2):
                if msg.error() is not None:
                    continue
                headers = _headers(msg)
                message_id = headers.get("message_id", b"")
                if headers.get("pipeline_id") != wanted or not message_id.startswith(message_id_prefix):
                    continue
                if message_id not in seen:
                    seen.add(message_id)
                    last_at = time.monotonic()
                    if all_at is None and expected and len(seen) >= expected:
                        all_at = last_at
    finally:
        consumer.close()
    return Drain(
        expected=expected,
        arrived=len(seen),
        seconds_to_all=None if all_at is None else all_at - restored_at,
        seconds_to_last=None if last_at is None else last_at - restored_at,
    )
