"""The field mapping of a webhook source: a vendor's payload onto a partial Segment-style event.

A mapping is ``{"envelope field": "dotted.path.in.payload"}``, set per webhook source in the admin.
``validate_mapping`` checks one when it is saved; ``apply_mapping`` applies it to a payload and
never drops anything: what does not fit its field is kept under ``properties``, with a note.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ingestion import event_types
from ingestion.envelope import MAX_ID_LENGTH, MAX_TIME_LENGTH, iso_from_ms

# What a mapping may write: whole objects (and fields nested under them), text fields, and the two
# fields read specially (type, timestamp). Declared once: validate_mapping and apply_mapping use them.
OBJECT_TARGETS = ("properties", "traits", "context")
TEXT_TARGETS = ("event", "name", "userId", "anonymousId", "groupId", "messageId")
ID_TARGETS = frozenset({"userId", "anonymousId", "groupId", "messageId"})
MAPPABLE_FIELDS = frozenset({"type", "timestamp", *OBJECT_TARGETS, *TEXT_TARGETS})
FALLBACK_EVENT_NAME = "webhook"
_DIGITS = re.compile(r"[0-9]{1,20}")
_PATH_RE = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")
_MISSING = object()


class MappingInvalid(ValueError):
    """A mapping that cannot be applied; the message says why in one line."""


def validate_mapping(mapping: object) -> None:
    """A mapping is ``{"envelope field": "dotted.path.in.payload"}``; nested targets such as
    ``properties.amount`` are allowed under properties, traits and context."""
    if not isinstance(mapping, dict):
        raise MappingInvalid("mapping must be a JSON object of envelope field -> dotted payload path")
    for target, path in mapping.items():
        head = target.split(".", 1)[0]
        if head not in MAPPABLE_FIELDS or ("." in target and head not in OBJECT_TARGETS):
            raise MappingInvalid(f"mapping target {target!r} is not an envelope field")
        if not isinstance(path, str) or not _PATH_RE.match(path):
            raise MappingInvalid(f"mapping path for {target!r} must be a dotted path such as data.object.id")


def _read_path(payload: Any, path: str) -> Any:
    """The value at a dotted path (``data.object.id``, ``items.0.sku``), or ``_MISSING``."""
    current = payload
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and _DIGITS.fullmatch(part) and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def _epoch_to_iso(value: float) -> str:
    # Webhook payloads stamp events in unix seconds (Stripe's created) or milliseconds (HubSpot's occurredAt).
    millis = value if abs(value) >= 1e11 else value * 1000
    return iso_from_ms(math.floor(millis))


def _as_timestamp(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return _epoch_to_iso(value)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_TIME_LENGTH:
            return None  # the envelope refuses longer times; refusing the webhook would lose the event
        if _DIGITS.fullmatch(text):
            return _as_timestamp(int(text))
        try:
            parsed = datetime.fromisoformat(text)
            if parsed.tzinfo is not None:
                parsed.astimezone(UTC)  # the envelope works in UTC; 0001-01-01T00:30+01:00 has no UTC time
        except (ValueError, OverflowError):
            return None
        return text
    return None


def _put(container: dict[str, Any], keys: list[str], value: Any) -> None:
    for index, key in enumerate(keys[:-1]):
        child = container.get(key)
        if child is None:
            child = container[key] = {}
        if not isinstance(child, dict):
            # Something else already lives there: keep both rather than overwrite one.
            container[".".join(keys[index:])] = value
            return
        container = child
    container[keys[-1]] = value


def apply_mapping(payload: Any, mapping: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Map a webhook payload onto a partial Segment-style event.

    ``mapping`` is ``{"event": "type", "userId": "data.object.customer", "properties.amount":
    "data.object.amount", ...}``. Returns the event (``type`` defaults to ``track``; a track with no
    readable name is called ``"webhook"``) and notes on whatever could not be mapped. Nothing is
    dropped: a value that does not fit its field goes under ``properties``, and when the payload is
    not an object or no property was mapped, the raw payload is kept as ``properties.payload``.
    """
    notes: list[str] = []
    event: dict[str, Any] = {"type": "track"}
    objects: dict[str, dict[str, Any]] = {target: {} for target in OBJECT_TARGETS}
    stray: dict[str, Any] = {}

    def read(target: str, path: Any) -> Any:
        if not isinstance(path, str) or not path:
            notes.append(f"{target}: mapping path {path!r} is not a dotted path")
            return _MISSING
        value = _read_path(payload, path)
        if value is _MISSING:
            notes.append(f"{target}: {path!r} is not in the payload")
        return value

    # Whole objects first, so that properties.x and friends land on top of them.
    for target, path in mapping.items():
        if target not in OBJECT_TARGETS:
            continue
        value = read(target, path)
        if value is _MISSING or value is None:
            continue
        if isinstance(value, dict):
            objects[target].update(copy.deepcopy(value))
        else:
            notes.append(f"{target}: {path!r} is not an object; kept as properties.{target}")
            stray[target] = copy.deepcopy(value)

    for target, path in mapping.items():
        if target in OBJECT_TARGETS or "." in target:
            continue
        value = read(target, path)
        if value is _MISSING:
            continue
        if value is None or value == "":
            notes.append(f"{target}: {path!r} is empty")
        elif target == "type":
            if isinstance(value, str) and value in event_types.ALL:
                event["type"] = value
            else:
                notes.append(f"type: {value!r} is not a Segment event type; using track")
                stray["type"] = value
        elif target == "timestamp":
            stamp = _as_timestamp(value)
            if stamp is None:
                notes.append(f"timestamp: {value!r} is not a time; kept as properties.timestamp")
                stray["timestamp"] = value
            else:
                event["timestamp"] = stamp
        elif target in ID_TARGETS and isinstance(value, str) and len(value) > MAX_ID_LENGTH:
            # The envelope refuses longer ids; refusing the webhook would lose the vendor's event.
            notes.append(f"{target}: {path!r} is longer than {MAX_ID_LENGTH} characters; kept as properties.{target}")
            stray[target] = value
        elif target in TEXT_TARGETS and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            event[target] = str(value)
        else:
            notes.append(f"{target}: {path!r} is not a string; kept as properties.{target}")
            stray[target] = copy.deepcopy(value)

    # Deeper targets after their parents: context.page before context.page.url.
    for target, path in sorted(mapping.items(), key=lambda item: item[0].count(".")):
        if "." not in target:
            continue
        head, *rest = target.split(".")
        if head not in OBJECT_TARGETS:
            notes.append(
                f"{target}: only properties, traits and context take nested fields; kept as properties.{target}"
            )
            head, rest = "properties", [target]
        value = read(target, path)
        if value is not _MISSING:
            _put(objects[head], rest, copy.deepcopy(value))

    if event["type"] == "group" and "groupId" not in event:
        # The envelope refuses a group call without a groupId; refusing the webhook would lose the event.
        notes.append("type: 'group' needs a groupId and none was mapped; using track")
        event["type"] = "track"
        stray["type"] = "group"

    properties = objects["properties"]
    for key, value in stray.items():
        properties.setdefault(key, value)
    if not isinstance(payload, dict) or not properties:
        reason = "the payload is not an object" if not isinstance(payload, dict) else "no property was mapped"
        notes.append(f"properties: {reason}; the raw payload is kept as properties.payload")
        properties.setdefault("payload", copy.deepcopy(payload))

    if event["type"] == "track" and "event" not in event:
        notes.append(f"event: no event name was mapped; using {FALLBACK_EVENT_NAME!r}")
        event["event"] = FALLBACK_EVENT_NAME
    event["properties"] = properties
    for target in ("traits", "context"):
        if objects[target]:
            event[target] = objects[target]
    return event, notes
