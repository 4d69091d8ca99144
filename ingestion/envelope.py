"""The canonical envelope (SPEC §5): one shape for every event, however it arrived.

``build_envelope`` validates the Segment-spec fields it relies on, corrects the event time for the
client's clock skew, adds the gateway's own context, and keeps unknown top-level keys as they came.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from ingestion.errors import InvalidPayload
from ingestion.publisher import Record

SCHEMA_VERSION = 1
EVENT_TYPES = ("track", "page", "screen", "identify", "group", "alias")
MAX_ID_LENGTH = 256

# Keys the gateway owns; a client's value for these is replaced, not kept.
_GATEWAY_KEYS = frozenset({"pipelineId", "source", "schemaVersion", "receivedAt", "writeKey"})


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the gateway knows about the request, independent of the body."""

    pipeline_id: str
    source_kind: str
    source_id: str | None
    received_at: datetime
    ip: str | None
    user_agent: str | None
    gpc: bool
    anonymous_id: str | None = None
    vendor_ids: dict[str, str] | None = None
    click_ids: dict[str, str] | None = None
    sent_at: Any = None  # a batch's top-level sentAt applies to events that carry none
    require_identity: bool = True


def iso_ms(moment: datetime) -> str:
    # isoformat, not strftime: strftime writes the year 999 as "999", which is not ISO 8601.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def parse_time(value: Any, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidPayload(f"{field} is not an ISO 8601 time: {value[:64]!r}") from None
        try:
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:30:00+01:00 is before the year 1 in UTC
            raise InvalidPayload(f"{field} is out of range: {value[:64]!r}") from None
    raise InvalidPayload(f"{field} must be an ISO 8601 string")


def _identifier(event: dict[str, Any], field: str) -> str | None:
    value = event.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidPayload(f"{field} must be a string")
    text = str(value)
    if len(text) > MAX_ID_LENGTH:
        raise InvalidPayload(f"{field} is longer than {MAX_ID_LENGTH} characters")
    return text


def _object(event: dict[str, Any], field: str) -> dict[str, Any]:
    value = event.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidPayload(f"{field} must be an object")
    return value


def _text(event: dict[str, Any], field: str) -> str | None:
    value = event.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidPayload(f"{field} must be a string")
    return value


def build_envelope(event: dict[str, Any], event_type: str | None, facts: RequestFacts) -> dict[str, Any]:
    """``event_type`` set by the path (browser, pixel) wins over the body's ``type``."""
    kind = event_type or event.get("type")
    if kind not in EVENT_TYPES:
        raise InvalidPayload(f"type must be one of {', '.join(EVENT_TYPES)}")
    name = _text(event, "event") if kind == "track" else None
    if kind == "track" and not name:
        raise InvalidPayload("a track event needs a non-empty event name")
    user_id = _identifier(event, "userId")
    anonymous_id = _identifier(event, "anonymousId") or facts.anonymous_id
    group_id = _identifier(event, "groupId")
    if kind == "group" and not group_id:
        raise InvalidPayload("a group call needs a groupId")
    message_id = _identifier(event, "messageId") or str(uuid.uuid4())
    if facts.require_identity and not (user_id or anonymous_id):
        raise InvalidPayload("an event needs a userId or an anonymousId")

    context = dict(_object(event, "context"))
    properties = _object(event, "properties")
    traits = _object(event, "traits")
    original = parse_time(event.get("timestamp"), "timestamp")
    sent = parse_time(event.get("sentAt", facts.sent_at), "sentAt")
    received = facts.received_at
    if original is not None and sent is not None:
        try:
            timestamp = received - (sent - original)  # the client's clock skew, taken out
        except OverflowError:
            raise InvalidPayload("timestamp and sentAt are too far apart to correct for clock skew") from None
    else:
        timestamp = original or received

    if facts.ip and not context.get("ip"):
        context["ip"] = facts.ip
    if facts.user_agent and not context.get("userAgent"):
        context["userAgent"] = facts.user_agent
    context["clickIds"] = facts.click_ids or {}
    context["vendorIds"] = facts.vendor_ids or {}
    context["gpc"] = facts.gpc

    envelope = {k: v for k, v in event.items() if k not in _GATEWAY_KEYS}
    envelope.update(
        messageId=message_id,
        type=kind,
        event=name,
        name=_text(event, "name"),
        properties=properties,
        traits=traits,
        userId=user_id,
        anonymousId=anonymous_id,
        groupId=group_id,
        timestamp=iso_ms(timestamp),
        originalTimestamp=iso_ms(original) if original else None,
        sentAt=iso_ms(sent) if sent else None,
        receivedAt=iso_ms(received),
        context=context,
        pipelineId=facts.pipeline_id,
        source={"kind": facts.source_kind, "id": facts.source_id},
        schemaVersion=SCHEMA_VERSION,
    )
    return envelope


def to_record(envelope: dict[str, Any]) -> Record:
    """Key ``<pipelineId>:<anonymousId|userId|messageId>`` keeps one visitor's events in order."""
    who = envelope["anonymousId"] or envelope["userId"] or envelope["messageId"]
    return Record(
        key=f"{envelope['pipelineId']}:{who}".encode(),
        value=orjson.dumps(envelope),
        headers=[
            ("pipeline_id", envelope["pipelineId"].encode()),
            ("source_kind", envelope["source"]["kind"].encode()),
            ("message_id", envelope["messageId"].encode()),
            ("schema_version", str(SCHEMA_VERSION).encode()),
        ],
    )
