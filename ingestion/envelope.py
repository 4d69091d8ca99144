"""The canonical envelope (SPEC §5): one shape for every event, however it arrived.

``build_envelope`` validates the Segment-spec fields it relies on, corrects the event time for the
client's clock skew, adds the gateway's own context, and keeps unknown top-level keys as they came.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from ingestion import addresses, consent, event_types
from ingestion.errors import InvalidPayload

SCHEMA_VERSION = 1
MAX_ID_LENGTH = 256
# The longest ISO 8601 time worth reading: 2024-05-01T12:00:00.123456+05:30 is 32 characters.
MAX_TIME_LENGTH = 64

# Keys the gateway owns; a client's value for these is replaced, not kept.
_GATEWAY_KEYS = frozenset({"pipelineId", "source", "schemaVersion", "receivedAt", "writeKey"})
# Inputs whose body is written by a page anyone can load: its context.ip and context.userAgent are
# claims, kept apart from what the gateway saw. A server (/v1/events, /v1/batch, webhooks) is
# authenticated and reports its end user's address, so its context.ip stands.
_UNTRUSTED_CONTEXT = frozenset({"browser", "pixel"})
# Ids end up in Kafka's message key and headers, and in downstream logs: no control characters
# (C0, DEL, C1), NUL above all.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(slots=True)
class RequestFacts:
    """What the gateway knows about the request, independent of the body. Not frozen: one is built
    per request and only read after, and a frozen dataclass's __init__ (object.__setattr__ per
    field) cost more than building the envelope's time fields."""

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
    ip_mode: str = addresses.FULL  # the pipeline's: full, truncate or drop
    consent_required: bool = False  # the pipeline's: consent not given counts as denied
    received_ms: int = field(init=False)
    received_iso: str = field(init=False)

    def __post_init__(self) -> None:
        self.received_ms = _epoch_ms(self.received_at)
        self.received_iso = iso_from_ms(self.received_ms)

    def apply_privacy(self, *, ip_mode: str, consent_required: bool) -> None:
        """The pipeline's privacy settings; the observed address is masked once, here, for every event."""
        self.ip_mode = ip_mode
        self.consent_required = consent_required
        if ip_mode != addresses.FULL:
            self.ip = addresses.masked(self.ip, ip_mode)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _epoch_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _MS


def iso_ms(moment: datetime) -> str:
    # isoformat, not strftime: strftime writes the year 999 as "999", which is not ISO 8601.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


@lru_cache(maxsize=4096)
def _second(epoch_s: int) -> str:
    return (_EPOCH + timedelta(seconds=epoch_s)).isoformat()[:19]


def iso_from_ms(epoch_ms: int) -> str:
    """ISO 8601 with milliseconds for a unix time in ms (the hot path's formatter: the date part is
    cached per second)."""
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{_second(seconds)}.{millis:03d}Z"


def _parse_iso(value: str) -> tuple[int, str] | None:
    """(unix ms, ISO string with ms) for a client's time; None if unreadable."""
    try:
        parsed = datetime.fromisoformat(value)
        moment = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return _epoch_ms(moment), (value if _CANONICAL.fullmatch(value) else iso_ms(moment))


# Cached (a batch repeats its sentAt on every event): at most 4,096 strings of at most MAX_TIME_LENGTH
# characters, ~1 MB whatever clients send; longer ones are refused before they get here.
_parse_cached = lru_cache(maxsize=4096)(_parse_iso)


def parse_time(value: Any, field: str) -> tuple[int, str] | None:
    if value is None or value == "":
        return None
    if type(value) is not str:
        raise InvalidPayload(f"{field} must be an ISO 8601 string")
    if len(value) > MAX_TIME_LENGTH:
        # Refused before parsing: 60,000-character timestamps once filled the parse cache (RSS 121 -> 352 MB).
        raise InvalidPayload(f"{field} is longer than {MAX_TIME_LENGTH} characters; send an ISO 8601 time")
    parsed = _parse_cached(value)
    if parsed is None:
        raise InvalidPayload(f"{field} is not an ISO 8601 time (or is out of range): {value!r}")
    return parsed


def _identifier(event: dict[str, Any], field: str) -> str | None:
    """An id as a string. A JSON integer is kept digit for digit; a JSON number the parser could not
    keep exactly (past 64 bits, or with a fraction or exponent) arrives as a float and is refused,
    since its text would be some other id (``99999999999999999999`` would become ``1e+20``)."""
    value = event.get(field)
    if value is None or value == "":
        return None
    kind = type(value)
    if kind is str:
        text = value
    elif kind is int:
        text = str(value)
    elif kind is float:
        raise InvalidPayload(f"{field} must be a string: this number cannot be kept exactly, send it quoted")
    else:
        raise InvalidPayload(f"{field} must be a string")
    if len(text) > MAX_ID_LENGTH:
        raise InvalidPayload(f"{field} is longer than {MAX_ID_LENGTH} characters")
    if not text.isprintable() and _CONTROL.search(text):  # isprintable: the common case, 2.5x cheaper
        raise InvalidPayload(f"{field} must not contain control characters")
    return text


def _object(event: dict[str, Any], field: str) -> dict[str, Any]:
    value = event.get(field)
    if value is None:
        return {}
    if type(value) is not dict:
        raise InvalidPayload(f"{field} must be an object")
    return value


def _text(event: dict[str, Any], field: str) -> str | None:
    value = event.get(field)
    if value is None or type(value) is str:
        return value
    raise InvalidPayload(f"{field} must be a string")


def _observed_context(context: dict[str, Any], facts: RequestFacts) -> None:
    """A page's context: ``ip`` and ``userAgent`` are what the gateway saw (the socket peer or a trusted
    proxy's X-Forwarded-For; the User-Agent header), whatever the body says; a different value the
    body claimed is kept apart, in ``context.claimed`` (an address only if it is one, masked by the IP
    mode like the observed one)."""
    claimed: dict[str, Any] = {}
    claimed_ip = context.pop("ip", None)
    if claimed_ip is not None and claimed_ip != facts.ip:
        # Only an address is kept, in the gateway's form, and as the IP mode leaves it.
        kept = addresses.masked(addresses.normalise(claimed_ip), facts.ip_mode)
        if kept is not None and kept != facts.ip:
            claimed["ip"] = kept
    claimed_agent = context.pop("userAgent", None)
    if type(claimed_agent) is str and claimed_agent and claimed_agent != facts.user_agent:
        claimed["userAgent"] = claimed_agent
    context.pop("claimed", None)
    if facts.ip:
        context["ip"] = facts.ip  # already masked (RequestFacts.apply_privacy)
    if facts.user_agent:
        context["userAgent"] = facts.user_agent
    if claimed:
        context["claimed"] = claimed


def _reported_context(context: dict[str, Any], facts: RequestFacts) -> None:
    """A server's context: its ``ip`` and ``userAgent`` (its end user's) stand; the observed values fill
    in when absent; the IP mode applies to whichever address results."""
    if not context.get("ip"):
        if facts.ip:
            context["ip"] = facts.ip  # already masked
        else:
            context.pop("ip", None)
    elif facts.ip_mode != addresses.FULL:
        ip = context["ip"]
        kept = addresses.masked(ip if type(ip) is str else None, facts.ip_mode)
        if kept is None:
            del context["ip"]
        else:
            context["ip"] = kept
    if facts.user_agent and not context.get("userAgent"):
        context["userAgent"] = facts.user_agent


def build_envelope(
    event: dict[str, Any], event_type: str | None, facts: RequestFacts, click_ids: dict[str, str] | None = None
) -> dict[str, Any]:
    """``event_type`` set by the path (browser, pixel) wins over the body's ``type``; ``click_ids``
    (one batch event's own) override the request's."""
    kind = event_type or event.get("type")
    if kind not in event_types.ALL:
        raise InvalidPayload(f"type must be one of {', '.join(event_types.ALL)}")
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
    if original is not None and sent is not None:
        try:
            timestamp = iso_from_ms(facts.received_ms - (sent[0] - original[0]))  # the client's clock skew, out
        except (OverflowError, ValueError):
            raise InvalidPayload("timestamp and sentAt are too far apart to correct for clock skew") from None
    elif original is not None:
        timestamp = original[1]
    else:
        timestamp = facts.received_iso

    if facts.source_kind in _UNTRUSTED_CONTEXT:
        _observed_context(context, facts)
    else:
        _reported_context(context, facts)
    consent.tag(context, required=facts.consent_required)
    context["clickIds"] = (facts.click_ids if click_ids is None else click_ids) or {}
    context["vendorIds"] = facts.vendor_ids or {}
    context["gpc"] = facts.gpc

    envelope = {
        "messageId": message_id,
        "type": kind,
        "event": name,
        "name": _text(event, "name"),
        "properties": properties,
        "traits": traits,
        "userId": user_id,
        "anonymousId": anonymous_id,
        "groupId": group_id,
        "timestamp": timestamp,
        "originalTimestamp": original[1] if original else None,
        "sentAt": sent[1] if sent else None,
        "receivedAt": facts.received_iso,
        "context": context,
        "pipelineId": facts.pipeline_id,
        "source": {"kind": facts.source_kind, "id": facts.source_id},
        "schemaVersion": SCHEMA_VERSION,
    }
    for key, value in event.items():  # unknown keys are kept as they came (integrations, _metadata, …)
        if key not in envelope and key not in _GATEWAY_KEYS:
            envelope[key] = value
    return envelope
