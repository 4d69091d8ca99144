"""Kafka records of envelopes (SPEC §5): the message key, the value and the four headers."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from ingestion.envelope import SCHEMA_VERSION
from ingestion.errors import PayloadTooLarge

_SCHEMA_VERSION_HEADER = ("schema_version", str(SCHEMA_VERSION).encode())
# librdkafka refuses, at produce(), a record whose value, key and headers weigh more than its
# message.max.bytes (1,000,000 by default, which the publisher keeps), and the client was told 503
# with MSG_SIZE_TOO_LARGE: a retry that can never succeed. The key and headers take at most ~2.5 KB
# (ids of 256 characters in UTF-8, and librdkafka's 36 bytes per record).
PRODUCER_MAX_MESSAGE_BYTES = 1_000_000
MAX_VALUE_BYTES = PRODUCER_MAX_MESSAGE_BYTES - 4096


class Record(NamedTuple):
    """One Kafka message. A NamedTuple, not a frozen dataclass: a batch builds hundreds per request
    and a frozen dataclass's __init__ costs several times more."""

    key: bytes
    value: bytes
    headers: list[tuple[str, str | bytes | None]]


def to_record(envelope: dict[str, Any]) -> Record:
    """Key ``<pipelineId>:<anonymousId|userId|messageId>`` keeps one visitor's events in order.
    An envelope too large for the producer is PayloadTooLarge (413, or one batch item's error)."""
    pipeline_id = envelope["pipelineId"]
    message_id = envelope["messageId"]
    who = envelope["anonymousId"] or envelope["userId"] or message_id
    pipeline_header, source_header = _request_headers(pipeline_id, envelope["source"]["kind"])
    value = orjson.dumps(envelope)
    if len(value) > MAX_VALUE_BYTES:
        raise PayloadTooLarge(f"the event is {len(value)} bytes once enveloped; Kafka takes at most {MAX_VALUE_BYTES}")
    return Record(
        f"{pipeline_id}:{who}".encode(),
        value,
        [pipeline_header, source_header, ("message_id", message_id.encode()), _SCHEMA_VERSION_HEADER],
    )


@lru_cache(maxsize=1024)
def _request_headers(pipeline_id: str, source_kind: str) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    """The headers every record of one pipeline and source shares, built once (a batch has hundreds)."""
    return ("pipeline_id", pipeline_id.encode()), ("source_kind", source_kind.encode())
