"""Kafka records of envelopes (SPEC §5): the message key, the value and the four headers."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from ingestion.envelope import SCHEMA_VERSION

_SCHEMA_VERSION_HEADER = ("schema_version", str(SCHEMA_VERSION).encode())


class Record(NamedTuple):
    """One Kafka message. A NamedTuple, not a frozen dataclass: a batch builds hundreds per request
    and a frozen dataclass's __init__ costs several times more."""

    key: bytes
    value: bytes
    headers: list[tuple[str, str | bytes | None]]


def to_record(envelope: dict[str, Any]) -> Record:
    """Key ``<pipelineId>:<anonymousId|userId|messageId>`` keeps one visitor's events in order."""
    pipeline_id = envelope["pipelineId"]
    message_id = envelope["messageId"]
    who = envelope["anonymousId"] or envelope["userId"] or message_id
    pipeline_header, source_header = _request_headers(pipeline_id, envelope["source"]["kind"])
    return Record(
        f"{pipeline_id}:{who}".encode(),
        orjson.dumps(envelope),
        [pipeline_header, source_header, ("message_id", message_id.encode()), _SCHEMA_VERSION_HEADER],
    )


@lru_cache(maxsize=1024)
def _request_headers(pipeline_id: str, source_kind: str) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    """The headers every record of one pipeline and source shares, built once (a batch has hundreds)."""
    return ("pipeline_id", pipeline_id.encode()), ("source_kind", source_kind.encode())
