"""Request signatures: pure functions over bytes, strings and headers.

Owns two things, neither of which touches a Django request:

* the server-side HMAC of ``POST /v1/events`` and ``/v1/batch``, with ``sign_server_request`` for
  clients, tests and docs: ``X-Signature: v2=<hex>`` over ``<X-Timestamp>.<METHOD> <path>.<raw body>``,
  bound to the request it was made for, and SPEC §2's ``sha256=<hex>`` over ``<X-Timestamp>.<raw
  body>`` (v1), accepted while ``SERVER_SIGNATURE_V1`` is on (see README, "Signing server requests");
* each third-party webhook scheme, verified exactly as its vendor documents it (``verify_webhook``),
  declared once in ``SCHEMES``: the webhook source model takes its choices from there.

Verifiers return ``None`` or raise ``InvalidSignature`` / ``StaleTimestamp``. The signature is
checked before the time window, so only an authentic request is ever told that it is stale.
Time comes in as ``now`` (unix seconds) so callers and tests own the clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ingestion.errors import InvalidSignature, StaleTimestamp

if TYPE_CHECKING:
    from pipelines.keystore import WebhookSource

logger = logging.getLogger(__name__)

SERVER_TOLERANCE_SECONDS = 300
DEFAULT_WEBHOOK_TOLERANCE_SECONDS = 300

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


def sign_server_request(
    secret: bytes, body: bytes, timestamp_ms: int, *, method: str | None = None, path: str | None = None
) -> dict[str, str]:
    """The ``X-Signature`` and ``X-Timestamp`` headers a server-side client sends with ``body``: v2,
    bound to ``method`` and ``path``, when they are given; v1 otherwise."""
    timestamp = str(int(timestamp_ms))
    if method is None or path is None:
        return {"X-Signature": "sha256=" + _hmac(secret, _v1_message(timestamp, body)).hex(), "X-Timestamp": timestamp}
    digest = _hmac(secret, _v2_message(timestamp, method, path, body))
    return {"X-Signature": "v2=" + digest.hex(), "X-Timestamp": timestamp}


def _v1_message(timestamp: str, body: bytes) -> bytes:
    return timestamp.encode() + b"." + body


def _v2_message(timestamp: str, method: str, path: str, body: bytes) -> bytes:
    # The method and path as the gateway routes them (no query); a signature for /v1/batch does not
    # verify on /v1/events. Non-ASCII cannot occur in a path daphne accepts; replaced, never raised.
    return f"{timestamp}.{method} {path}.".encode("utf-8", "replace") + body


def verify_server_signature(
    *,
    secrets: Sequence[bytes],
    body: bytes,
    signature_header: str | None,
    timestamp_header: str | None,
    now: float,
    method: str,
    path: str,
    accept_v1: bool = True,
    tolerance: float = SERVER_TOLERANCE_SECONDS,
) -> None:
    """Accept ``body`` when ``X-Signature`` is its HMAC under any active secret (``v2=``: with the
    request's ``method`` and ``path``; ``sha256=``, v1: without, while ``accept_v1``) and
    ``X-Timestamp`` (unix ms) is within ``tolerance`` seconds of ``now``, either way."""
    if not signature_header:
        raise InvalidSignature("X-Signature header is missing")
    scheme, _, given = signature_header.strip().partition("=")
    scheme = scheme.lower()
    if scheme not in {"sha256", "v2"} or not given:
        raise InvalidSignature("X-Signature must look like v2=<hex> (or sha256=<hex>)")
    if scheme == "sha256" and not accept_v1:
        raise InvalidSignature(
            "sha256= signatures, over the timestamp and body only, are no longer accepted: send v2=<hex>, "
            "the HMAC of <X-Timestamp>.<METHOD> <path>.<body>"
        )
    timestamp = (timestamp_header or "").strip()
    if not timestamp:
        raise StaleTimestamp("X-Timestamp header is missing")
    if not _DIGITS.fullmatch(timestamp):
        raise StaleTimestamp("X-Timestamp must be unix milliseconds")
    if not secrets:
        raise InvalidSignature("this pipeline has no active signing secret")
    message = _v1_message(timestamp, body) if scheme == "sha256" else _v2_message(timestamp, method, path, body)
    # Every secret is tried, so timing does not tell which one exists.
    matches = [_hex_matches(_hmac(secret, message), given) for secret in secrets]
    if not any(matches):
        raise InvalidSignature(
            "X-Signature does not match the body" if scheme == "sha256" else "X-Signature does not match the request"
        )
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
    scheme = SCHEMES.get(source.scheme)
    if scheme is None:
        raise _misconfigured(source.id, f"unknown scheme {source.scheme!r}")
    if scheme.needs_secret and not source.secret:
        raise _misconfigured(source.id, "no secret")
    scheme.verify(
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


def _standard_webhooks_secret_problem(secret: str) -> str | None:
    if not secret.startswith("whsec_"):
        return "standard-webhooks secrets look like whsec_<base64>"
    try:
        base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        return "standard-webhooks secret is not valid base64 after whsec_"
    return None


def _shared_secret_problem(secret: str) -> str | None:
    # HTTP trims a header value's ends (RFC 9110 5.5), so such a secret could never be matched.
    if secret != secret.strip() or any(ord(char) < 0x20 or ord(char) == 0x7F for char in secret):
        return "a shared secret travels in a header: no spaces at its ends and no control characters"
    return None


@dataclass(frozen=True)
class Scheme:
    """A webhook signature scheme: its name in the admin, its verifier, and what its secret must be."""

    label: str
    verify: Callable[..., None]
    needs_secret: bool = True
    secret_problem: Callable[[str], str | None] | None = None


# The one list of webhook schemes: verify_webhook dispatches on it and the admin offers its keys.
SCHEMES: dict[str, Scheme] = {
    "stripe": Scheme("Stripe", _verify_stripe),
    "shopify": Scheme("Shopify", _verify_shopify),
    "github": Scheme("GitHub", _verify_github),
    "hubspot-v3": Scheme("HubSpot v3", _verify_hubspot_v3),
    "standard-webhooks": Scheme(
        "Standard Webhooks (Svix)", _verify_standard_webhooks, secret_problem=_standard_webhooks_secret_problem
    ),
    "generic-hmac": Scheme("Generic HMAC", _verify_generic_hmac),
    "shared-secret": Scheme("Shared secret header", _verify_shared_secret, secret_problem=_shared_secret_problem),
    "none": Scheme("None (unauthenticated)", _verify_none, needs_secret=False),
}


def secret_problem(scheme: str, secret: str) -> str | None:
    """Why ``secret`` cannot serve ``scheme``, in one line; None when it can."""
    found = SCHEMES.get(scheme)
    if found is None:
        return f"scheme must be one of {', '.join(SCHEMES)}"
    if not found.needs_secret:
        return None
    if not secret:
        return f"scheme {scheme} needs a secret"
    return found.secret_problem(secret) if found.secret_problem else None
