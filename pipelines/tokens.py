"""Identifiers and secrets: prefixed, url-safe, drawn from the OS CSPRNG."""

from __future__ import annotations

import re
import secrets

# 24 random bytes = 192 bits, comfortably above the 128 the SPEC asks of a public key.
_KEY_BYTES = 24

PIPELINE_KEY_RE = re.compile(r"^dk_[A-Za-z0-9_-]{16,64}$")
WEBHOOK_SOURCE_RE = re.compile(r"^wh_[A-Za-z0-9_-]{8,64}$")


def _token(prefix: str, nbytes: int) -> str:
    return prefix + secrets.token_urlsafe(nbytes)


def new_pipeline_id() -> str:
    return _token("pip_", 12)


def new_pipeline_key() -> str:
    return _token("dk_", _KEY_BYTES)


def new_signing_secret() -> str:
    return _token("sk_", 32)


def new_source_id(kind: str) -> str:
    return _token("wh_" if kind == "webhook" else "src_", 12)


def redact(token: str) -> str:
    """A key as an error message or a log line may show it: its prefix and four characters, enough
    to tell keys apart, far too few to use one (``dk_AbCd…``)."""
    prefix, sep, rest = token.partition("_")
    return f"{prefix}_{rest[:4]}…" if sep and len(prefix) <= 4 else f"{token[:4]}…"


def looks_like_lookup_token(token: str) -> bool:
    """Cheap shape check so garbage never reaches Redis or the database."""
    return bool(PIPELINE_KEY_RE.match(token) or WEBHOOK_SOURCE_RE.match(token))
