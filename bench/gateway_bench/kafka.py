"""The Kafka count: the bench pipeline's records read back from the topic, to reconcile with the
events the gateway answered 2xx."""

from __future__ import annotations

import time

from bench.gateway_bench.core import BenchError


def count_records(
    bootstrap: str, topic: str, *, pipeline_id: str, timeout: float = 120.0, idle: float = 2.0
) -> dict[str, int]:
    """The bench pipeline's records in the topic, read back by assignment from the beginning (a group
    join takes ~20 s on Tansu), and how many distinct message ids they carry.

    The watermarks are reported too, but not trusted: Tansu 0.6 (memory storage) answers a high
    watermark short of the records it serves, so reading stops only after every partition reached its
    end and ``idle`` seconds passed with nothing new (the gateway is stopped by then)."""
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
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                    continue
                last_record = time.monotonic()
                at_end.discard(msg.partition())
                read += 1
                headers = dict(msg.headers() or [])
                if headers.get("pipeline_id", b"").decode() == pipeline_id:
                    for_pipeline += 1
                    message_ids.add(headers.get("message_id", b""))
        return {
            "read": read,
            "for_pipeline": for_pipeline,
            "distinct_message_ids": len(message_ids),
            "by_watermarks": by_watermarks,
        }
    finally:
        consumer.close()
