"""Refused events of known pipelines, published to ``KAFKA_REJECTED_TOPIC`` for the people running
the gateway (the live view in the admin reads them back; downstream tools may too).

``report()`` is called once per refused event whose pipeline is known: a bad payload, a refused
origin, a bad signature on a known source, a rate limit, each refused batch item. It is best effort
and costs the client nothing: the record is queued in the process's producer and never awaited; a
full queue, a broker that is down or a record Kafka never acknowledges only counts a drop
(``gateway_rejected_dropped_total{reason}``). Acknowledged records count in
``gateway_rejected_published_total``.

Rejected records share the producer with accepted events, so they get a budget of their own
(``MAX_PENDING_BYTES`` waiting in librdkafka at once): a flood of bad requests cannot fill the queue
that accepted events need, where a full queue answers 503.

The record: key ``<pipeline id>``; headers ``pipeline_id``, ``source_kind``, ``error_code`` (like
raw-events, so a reader filters without parsing); value, UTF-8 JSON::

    {"pipelineId": "pip_…", "code": "INVALID_PAYLOAD", "message": "…", "receivedAt": "…Z",
     "source": {"kind": "browser", "id": null}, "payload": "<first 8 KB of the body, as text>",
     "payloadBytes": 12345, "truncated": true, "schemaVersion": 1}
"""

from __future__ import annotations

import functools
import logging
import threading
from datetime import datetime
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException
from django.conf import settings

from ingestion import metrics
from ingestion.envelope import iso_ms
from ingestion.publisher import get_publisher
from ingestion.records import Record

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_PAYLOAD_BYTES = 8 * 1024
# Rejected records waiting in librdkafka's queue at once, in bytes of value (~1,800 records at 9 KB).
MAX_PENDING_BYTES = 16 * 1024 * 1024
_SCHEMA_VERSION_HEADER = ("schema_version", str(SCHEMA_VERSION).encode())


class _Budget:
    """Bytes of rejected records queued and not yet reported delivered. Reserved on the event loop,
    released by the producer's poll thread, hence the lock (uncontended: refusals are rare)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def reserve(self, size: int) -> bool:
        with self._lock:
            if self.used + size > self.limit:
                return False
            self.used += size
            return True

    def release(self, size: int) -> None:
        with self._lock:
            self.used -= size


_budget = _Budget(MAX_PENDING_BYTES)


def report(
    *,
    pipeline_id: str,
    source_kind: str,
    code: str,
    message: str,
    received_at: datetime,
    payload: bytes,
    source_id: str | None = None,
) -> None:
    """Queue one refused event for the rejected-events topic; returns at once and never raises.

    ``payload`` is the event as the client sent it (the body, or one batch item's bytes); only its
    first ``MAX_PAYLOAD_BYTES`` are kept, as text (invalid UTF-8 replaced)."""
    try:
        record = to_record(
            pipeline_id=pipeline_id,
            source_kind=source_kind,
            source_id=source_id,
            code=code,
            message=message,
            received_at=received_at,
            payload=payload,
        )
        size = len(record.value)
        if not _budget.reserve(size):
            metrics.rejected_dropped("backlog")
            return
        try:
            get_publisher().produce_nowait(
                settings.KAFKA_REJECTED_TOPIC, record, functools.partial(_delivered, _budget, size)
            )
        except (BufferError, KafkaException):
            _budget.release(size)
            metrics.rejected_dropped("queue_full")
    except Exception:  # best effort: a refusal's answer must go out whatever happens here
        logger.exception("could not queue a rejected-events record for %s", pipeline_id)


def to_record(
    *,
    pipeline_id: str,
    source_kind: str,
    source_id: str | None,
    code: str,
    message: str,
    received_at: datetime,
    payload: bytes,
) -> Record:
    value = {
        "pipelineId": pipeline_id,
        "code": code,
        "message": message,
        "receivedAt": iso_ms(received_at),
        "source": {"kind": source_kind, "id": source_id},
        "payload": payload[:MAX_PAYLOAD_BYTES].decode("utf-8", errors="replace"),
        "payloadBytes": len(payload),
        "truncated": len(payload) > MAX_PAYLOAD_BYTES,
        "schemaVersion": SCHEMA_VERSION,
    }
    headers: list[tuple[str, str | bytes | None]] = [
        ("pipeline_id", pipeline_id.encode()),
        ("source_kind", source_kind.encode()),
        ("error_code", code.encode()),
        _SCHEMA_VERSION_HEADER,
    ]
    return Record(pipeline_id.encode(), orjson.dumps(value), headers)


def _delivered(budget: _Budget, size: int, err: KafkaError | None, _msg: Any) -> None:
    """librdkafka's delivery report (poll thread): the record is acknowledged, or given up on."""
    budget.release(size)
    if err is None:
        metrics.rejected_published()
    else:
        metrics.rejected_dropped("undelivered")
