"""Request signatures and webhook field mapping: pure functions over bytes, strings and headers.

Owns three things, none of which touches a Django request:

* the server-side HMAC of ``POST /v1/events`` and ``/v1/batch`` (``X-Signature`` over
  ``<X-Timestamp>.<raw body>``, SPEC §2), with ``sign_server_request`` for clients, tests and docs;
* each third-party webhook scheme, verified exactly as its vendor documents it (``verify_webhook``);
* the mapping of a webhook payload onto a partial Segment-style event (``apply_mapping``).

Verifiers return ``None`` or raise ``InvalidSignature`` / ``StaleTimestamp``. The signature is
checked before the time window, so only an authentic request is ever told that it is stale.
Time comes in as ``now`` (unix seconds) so callers and tests own the clock.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ingestion.envelope import MAX_ID_LENGTH, iso_from_ms
from ingestion.errors import InvalidSignature, StaleTimestamp

if TYPE_CHECKING:
    from pipelines.keystore import WebhookSource

logger = logging.getLogger(__name__)

SERVER_TOLERANCE_SECONDS = 300
DEFAULT_WEBHOOK_TOLERANCE_SECONDS = 300
FALLBACK_EVENT_NAME = "webhook"

_DIGITS = re.compile(r"[0-9]{1,20}")
_ALGORITHMS: dict[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
}
# HubSpot decodes exactly these escapes in the URL before signing (its v3 request-validation docs).
_HUBSPOT_DECODED = re.compile(r"%(3A|2F|3F|40|21|24|27|28|29|2A|2C|3B)", re.IGNORECASE)


# -- shared pieces ------------------------------------------------------------------------------


def _hmac(secret: bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(secret, message, _ALGORITHMS[algorithm]).digest()


def _hex_matches(expected: bytes, given: str) -> bool:
    # Compare bytes: compare_digest refuses non-ASCII str, and a header may carry anything.
    return hmac.compare_digest(expected.hex().encode(), given.strip().lower().encode("utf-8", "replace"))


def _b64_decode(value: str) -> bytes | None:
    """Standard or URL-safe base64, padding optional; None when it is not base64 at all."""
    text = value.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _b64_matches(expected: bytes, given: str) -> bool:
    decoded = _b64_decode(given)
    return decoded is not None and hmac.compare_digest(expected, decoded)


def _check_window(*, timestamp_s: float, now: float, tolerance: float, label: str) -> None:
    skew = now - timestamp_s
    if abs(skew) > tolerance:
        direction = "old" if skew > 0 else "in the future"
        raise StaleTimestamp(
            f"{label} is {abs(skew):.0f} s {direction}; at most {tolerance:.0f} s either way is accepted"
        )


def _misconfigured(source_id: str, detail: str) -> InvalidSignature:
    # The sender cannot fix this; the log tells the admin, the answer tells the sender nothing about our config.
    logger.error("webhook source %s cannot verify signatures: %s", source_id, detail)
    return InvalidSignature("this webhook source is misconfigured; its signatures cannot be verified")


# -- server-side HMAC (SPEC §2) -----------------------------------------------------------------


def sign_server_request(secret: bytes, body: bytes, timestamp_ms: int) -> dict[str, str]:
    """The ``X-Signature`` and ``X-Timestamp`` headers a server-side client sends with ``body``."""
    timestamp = str(int(timestamp_ms))
    digest = _hmac(secret, timestamp.encode() + b"." + body)
    return {"X-Signature": "sha256=" + digest.hex(), "X-Timestamp": timestamp}


def verify_server_signature(
    *,
    secrets: Sequence[bytes],
    body: bytes,
    signature_header: str | None,
    timestamp_header: str | None,
    now: float,
    tolerance: float = SERVER_TOLERANCE_SECONDS,
) -> None:
    """Accept ``body`` when ``X-Signature`` is its HMAC under any active secret and ``X-Timestamp``
    (unix ms) is within ``tolerance`` seconds of ``now``, either way."""
    if not signature_header:
        raise InvalidSignature("X-Signature header is missing")
    scheme, _, given = signature_header.strip().partition("=")
    if scheme.lower() != "sha256" or not given:
        raise InvalidSignature("X-Signature must look like sha256=<hex>")
    timestamp = (timestamp_header or "").strip()
    if not timestamp:
        raise StaleTimestamp("X-Timestamp header is missing")
    if not _DIGITS.fullmatch(timestamp):
        raise StaleTimestamp("X-Timestamp must be unix milliseconds")
    if not secrets:
        raise InvalidSignature("this pipeline has no active signing secret")
    message = timestamp.encode() + b"." + body
    # Every secret is tried, so timing does not tell which one exists.
    matches = [_hex_matches(_hmac(secret, message), given) for secret in secrets]
    if not any(matches):
        raise InvalidSignature("X-Signature does not match the body")
    timestamp_s = int(timestamp) / 1000
    if abs(now - timestamp_s) > tolerance and abs(now - int(timestamp)) <= tolerance:
        raise StaleTimestamp("X-Timestamp looks like unix seconds; it must be unix milliseconds")
    _check_window(timestamp_s=timestamp_s, now=now, tolerance=tolerance, label="X-Timestamp")


# -- webhook schemes ----------------------------------------------------------------------------


def verify_webhook(
    *,
    source: WebhookSource,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
) -> None:
    """Verify a third-party request with ``source``'s scheme.

    ``url`` is the full URL the sender called (scheme://host/path?query, query as sent); only
    hubspot-v3 signs it. ``headers`` names are matched case-insensitively.
    """
    verifier = _SCHEMES.get(source.scheme)
    if verifier is None:
        raise _misconfigured(source.id, f"unknown scheme {source.scheme!r}")
    if source.scheme != "none" and not source.secret:
        raise _misconfigured(source.id, "no secret")
    verifier(
        source=source,
        method=method,
        url=url,
        headers={name.lower(): value for name, value in headers.items()},
        body=body,
        now=now,
        tolerance=source.tolerance_seconds or DEFAULT_WEBHOOK_TOLERANCE_SECONDS,
    )


def _header(headers: Mapping[str, str], name: str, *, label: str | None = None) -> str:
    value = headers.get(name.lower(), "").strip()
    if not value:
        raise InvalidSignature(f"{label or name} header is missing")
    return value


def _verify_stripe(
    *, source: WebhookSource, headers: Mapping[str, str], body: bytes, now: float, tolerance: float, **_: Any
) -> None:
    # Stripe-Signature: t=<unix s>,v1=<hex>[,v1=<hex>][,v0=<hex>]; only v1 is a live scheme.
    header = _header(headers, "stripe-signature", label="Stripe-Signature")
    timestamp, candidates = "", []
    for item in header.split(","):
        key, _sep, value = item.strip().partition("=")
        if key == "t":
            timestamp = value.strip()
        elif key == "v1" and value:
            candidates.append(value)
    if not _DIGITS.fullmatch(timestamp) or not candidates:
        raise InvalidSignature("Stripe-Signature has no timestamp or no v1 signature")
    expected = _hmac(source.secret.encode(), timestamp.encode() + b"." + body)
    if not any([_hex_matches(expected, candidate) for candidate in candidates]):
        raise InvalidSignature("no Stripe-Signature v1 signature matches the body")
    _check_window(timestamp_s=int(timestamp), now=now, tolerance=tolerance, label="Stripe-Signature timestamp")


def _verify_shopify(*, source: WebhookSource, headers: Mapping[str, str], body: bytes, **_: Any) -> None:
    given = _header(headers, "x-shopify-hmac-sha256", label="X-Shopify-Hmac-Sha256")
    if not _b64_matches(_hmac(source.secret.encode(), body), given):
        raise InvalidSignature("X-Shopify-Hmac-Sha256 does not match the body")


def _verify_github(*, source: WebhookSource, headers: Mapping[str, str], body: bytes, **_: Any) -> None:
    header = _header(headers, "x-hub-signature-256", label="X-Hub-Signature-256")
    prefix, _sep, given = header.partition("=")
    if prefix != "sha256" or not _hex_matches(_hmac(source.secret.encode(), body), given):
        raise InvalidSignature("X-Hub-Signature-256 does not match the body")


def hubspot_signed_uri(url: str) -> str:
    """The URL as HubSpot signs it: the listed escapes decoded, nothing else touched."""
    return _HUBSPOT_DECODED.sub(lambda match: chr(int(match.group(1), 16)), url)


def _verify_hubspot_v3(
    *,
    source: WebhookSource,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: float,
    **_: Any,
) -> None:
    given = _header(headers, "x-hubspot-signature-v3", label="X-HubSpot-Signature-v3")
    timestamp = _header(headers, "x-hubspot-request-timestamp", label="X-HubSpot-Request-Timestamp")
    if not _DIGITS.fullmatch(timestamp):
        raise InvalidSignature("X-HubSpot-Request-Timestamp must be unix milliseconds")
    message = method.upper().encode() + hubspot_signed_uri(url).encode() + body + timestamp.encode()
    if not _b64_matches(_hmac(source.secret.encode(), message), given):
        raise InvalidSignature("X-HubSpot-Signature-v3 does not match the request")
    _check_window(timestamp_s=int(timestamp) / 1000, now=now, tolerance=tolerance, label="X-HubSpot-Request-Timestamp")


def _standard_webhooks_key(source: WebhookSource) -> bytes:
    # As the reference library reads it: whsec_ prefix optional, base64 padding optional.
    key = _b64_decode(source.secret.removeprefix("whsec_"))
    if not key:
        raise _misconfigured(source.id, "standard-webhooks secret is not whsec_<base64>")
    return key


def _verify_standard_webhooks(
    *, source: WebhookSource, headers: Mapping[str, str], body: bytes, now: float, tolerance: float, **_: Any
) -> None:
    msg_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    if not _DIGITS.fullmatch(timestamp):
        raise InvalidSignature("webhook-timestamp must be unix seconds")
    expected = _hmac(_standard_webhooks_key(source), f"{msg_id}.{timestamp}.".encode() + body)
    # Space-separated "<version>,<signature>"; versions other than v1 (e.g. v1a, asymmetric) are not ours.
    candidates = [sig for version, _, sig in (item.partition(",") for item in signatures.split()) if version == "v1"]
    if not any([_b64_matches(expected, candidate) for candidate in candidates]):
        raise InvalidSignature("no webhook-signature v1 signature matches the body")
    _check_window(timestamp_s=int(timestamp), now=now, tolerance=tolerance, label="webhook-timestamp")


def _verify_generic_hmac(*, source: WebhookSource, headers: Mapping[str, str], body: bytes, **_: Any) -> None:
    options = source.options
    name = str(options.get("header") or "x-signature")
    encoding = str(options.get("encoding") or "hex").lower()
    prefix = str(options.get("prefix") or "")
    algorithm = str(options.get("algorithm") or "sha256").lower()
    if algorithm not in _ALGORITHMS:
        raise _misconfigured(source.id, f"generic-hmac algorithm {algorithm!r} is not one of {', '.join(_ALGORITHMS)}")
    if encoding not in {"hex", "base64"}:
        raise _misconfigured(source.id, f"generic-hmac encoding {encoding!r} is not hex or base64")
    given = _header(headers, name)
    if prefix:
        if given[: len(prefix)].lower() != prefix.lower():
            raise InvalidSignature(f"{name} header does not start with {prefix!r}")
        given = given[len(prefix) :]
    expected = _hmac(source.secret.encode(), body, algorithm)
    matches = _hex_matches(expected, given) if encoding == "hex" else _b64_matches(expected, given)
    if not matches:
        raise InvalidSignature(f"{name} header does not match the body")


def _verify_shared_secret(*, source: WebhookSource, headers: Mapping[str, str], **_: Any) -> None:
    name = str(source.options.get("header") or "x-webhook-secret")
    given = _header(headers, name)
    if not hmac.compare_digest(given.encode("utf-8", "replace"), source.secret.encode()):
        raise InvalidSignature(f"{name} header does not match the shared secret")


def _verify_none(**_: Any) -> None:
    return None


_SCHEMES: dict[str, Callable[..., None]] = {
    "stripe": _verify_stripe,
    "shopify": _verify_shopify,
    "github": _verify_github,
    "hubspot-v3": _verify_hubspot_v3,
    "standard-webhooks": _verify_standard_webhooks,
    "generic-hmac": _verify_generic_hmac,
    "shared-secret": _verify_shared_secret,
    "none": _verify_none,
}

WEBHOOK_SCHEMES = frozenset(_SCHEMES)


# -- field mapping ------------------------------------------------------------------------------

_EVENT_TYPES = frozenset({"track", "page", "screen", "identify", "group", "alias"})
_OBJECT_TARGETS = ("properties", "traits", "context")
_TEXT_TARGETS = ("event", "name", "userId", "anonymousId", "groupId", "messageId")
_ID_TARGETS = frozenset({"userId", "anonymousId", "groupId", "messageId"})
_MISSING = object()


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
    objects: dict[str, dict[str, Any]] = {target: {} for target in _OBJECT_TARGETS}
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
        if target not in _OBJECT_TARGETS:
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
        if target in _OBJECT_TARGETS or "." in target:
            continue
        value = read(target, path)
        if value is _MISSING:
            continue
        if value is None or value == "":
            notes.append(f"{target}: {path!r} is empty")
        elif target == "type":
            if isinstance(value, str) and value in _EVENT_TYPES:
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
        elif target in _ID_TARGETS and isinstance(value, str) and len(value) > MAX_ID_LENGTH:
            # The envelope refuses longer ids; refusing the webhook would lose the vendor's event.
            notes.append(f"{target}: {path!r} is longer than {MAX_ID_LENGTH} characters; kept as properties.{target}")
            stray[target] = value
        elif target in _TEXT_TARGETS and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            event[target] = str(value)
        else:
            notes.append(f"{target}: {path!r} is not a string; kept as properties.{target}")
            stray[target] = copy.deepcopy(value)

    # Deeper targets after their parents: context.page before context.page.url.
    for target, path in sorted(mapping.items(), key=lambda item: item[0].count(".")):
        if "." not in target:
            continue
        head, *rest = target.split(".")
        if head not in _OBJECT_TARGETS:
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
