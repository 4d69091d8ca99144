"""Request bodies: content type, gzip, size limits (after decompression too), UTF-8 JSON, nesting."""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from ingestion.errors import ApiError, InvalidPayload, PayloadTooLarge, UnsupportedMediaType

MAX_EVENT_BYTES = 64 * 1024
MAX_DEPTH = 32
MAX_GZIP_MEMBERS = 16
_GZIP_MAGIC = b"\x1f\x8b"
_COUNT_BELOW = 8 * 1024
_JSON_TYPES = {"", "application/json", "text/plain"}


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def decode_json_body(
    raw: bytes,
    *,
    content_type: str,
    content_encoding: str,
    limit: int,
    too_large: type[ApiError] = PayloadTooLarge,
    max_depth: int | None = MAX_DEPTH,
) -> dict[str, Any]:
    """The body as a JSON object; JSON may come as application/json or text/plain (no preflight).
    Over ``limit`` bytes, as sent or once decompressed, raises ``too_large``; nesting deeper than
    ``max_depth`` containers raises InvalidPayload (None: the caller checks nesting itself, part by part)."""
    if _media_type(content_type) not in _JSON_TYPES:
        raise UnsupportedMediaType(
            f"content type {content_type!r} is not accepted; send application/json or text/plain"
        )
    data = decompress(raw, content_encoding=content_encoding, limit=limit, too_large=too_large)
    if not data:
        raise InvalidPayload("the body is empty")
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidPayload(f"the body is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidPayload("the body must be a JSON object")
    if max_depth is not None:
        # Fewer brackets than the limit cannot nest past it: a small body (one event) skips the walk.
        # A large body nearly always has more, so it is walked without counting first.
        small = len(data) <= _COUNT_BELOW and data.count(b"{") + data.count(b"[") <= max_depth
        if not small and depth_exceeds(body, max_depth):
            raise InvalidPayload(f"the body nests deeper than {max_depth} levels")
    return body


def decompress(raw: bytes, *, content_encoding: str, limit: int, too_large: type[ApiError] = PayloadTooLarge) -> bytes:
    encoding = content_encoding.strip().lower()
    if encoding in {"", "identity"}:
        if len(raw) > limit:
            raise too_large(f"the body is over {limit} bytes")
        return raw
    if encoding not in {"gzip", "x-gzip"}:
        raise UnsupportedMediaType(f"content encoding {content_encoding!r} is not accepted; use gzip")
    # Every member (RFC 1952 allows several; gzip -d reads them all), each inflated no further than
    # the limit: a second member was once dropped with a 200, and its events lost.
    parts: list[bytes] = []
    room = limit + 1
    rest = raw
    for _ in range(MAX_GZIP_MEMBERS):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            data = inflater.decompress(rest, room)
        except zlib.error as exc:
            raise InvalidPayload(f"the gzip body is corrupt: {exc}") from None
        room -= len(data)
        if room <= 0:
            raise too_large(f"the body is over {limit} bytes once decompressed")
        if not inflater.eof:
            raise InvalidPayload("the gzip body is truncated")
        parts.append(data)
        rest = inflater.unused_data
        if not rest:
            return parts[0] if len(parts) == 1 else b"".join(parts)
        if not rest.startswith(_GZIP_MAGIC):
            raise InvalidPayload(f"the body has {len(rest)} bytes after the gzip stream that are not gzip")
    # Each member costs a decompressor and a copy of the rest of the body: a body of tiny members is refused.
    raise InvalidPayload(f"the body has more than {MAX_GZIP_MEMBERS} gzip members")


def start_of_body(raw: bytes, *, content_encoding: str, size: int) -> bytes:
    """The first ``size`` bytes of the body as the client meant it (decompressed when gzip), for a
    record of what was refused; the raw bytes when they do not decompress."""
    if content_encoding.strip().lower() not in {"gzip", "x-gzip"}:
        return raw[:size]
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw, size)
    except zlib.error:
        return raw[:size]


def encode(value: Any) -> bytes:
    return orjson.dumps(value)


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether a parsed JSON value nests deeper than ``limit`` containers (recursion is bounded by
    ``limit``; only containers are descended into)."""
    if limit == 0:
        return True
    for item in value.values() if type(value) is dict else value:
        kind = type(item)
        if (kind is dict or kind is list) and depth_exceeds(item, limit - 1):
            return True
    return False
