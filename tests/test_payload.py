"""Request bodies (ingestion/payload.py): the nesting limit holds for small bodies, which are
screened by counting brackets, and for large ones, which are walked straight away."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from ingestion.errors import InvalidPayload, PayloadTooLarge
from ingestion.payload import MAX_DEPTH, MAX_GZIP_MEMBERS, decode_json_body, decompress
from tests.fixtures.payloads import nested


def decode(body: dict[str, Any]) -> dict[str, Any]:
    return decode_json_body(
        json.dumps(body).encode(), content_type="application/json", content_encoding="", limit=1 << 22
    )


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def padded(body: dict[str, Any]) -> dict[str, Any]:
    """The same nesting in a body of about 20 KB, past the size where brackets are counted."""
    return {**body, "padding": ["x" * 100] * 200}


@pytest.mark.parametrize("size", [lambda b: b, padded], ids=["small body", "large body"])
def test_a_body_at_the_nesting_limit_is_accepted(size: Any) -> None:
    # Given a body nesting exactly MAX_DEPTH levels
    body = size(nested(MAX_DEPTH))
    assert depth(body) == MAX_DEPTH

    # When it is decoded, then it comes back whole
    assert decode(body) == body


@pytest.mark.parametrize("size", [lambda b: b, padded], ids=["small body", "large body"])
def test_a_body_one_level_past_the_limit_is_refused(size: Any) -> None:
    # Given a body nesting one level deeper than MAX_DEPTH
    body = size(nested(MAX_DEPTH + 1))
    assert depth(body) == MAX_DEPTH + 1

    # When it is decoded, then it is refused as the client's fault
    with pytest.raises(InvalidPayload, match="nests deeper"):
        decode(body)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    # Given a small body with more brackets than the limit, all of them inside strings
    body = {"event": "Viewed", "properties": {"q": "{[" * 40}}

    # When it is decoded, then it is accepted: only real containers count
    assert decode(body) == body


# -- gzip -------------------------------------------------------------------------------------------


def gunzip(raw: bytes, limit: int = 1 << 20) -> bytes:
    return decompress(raw, content_encoding="gzip", limit=limit)


def test_every_member_of_a_multi_member_gzip_body_is_decoded() -> None:
    # Given a batch whose gzip body is two members (what concatenating two gzip streams makes)
    body = json.dumps({"batch": [{"event": "A"}, {"event": "B"}]}).encode()
    raw = gzip.compress(body[:20]) + gzip.compress(body[20:])

    # When it is decompressed, then the second member's bytes are there too
    assert gunzip(raw) == body


def test_members_that_together_inflate_past_the_limit_are_refused_as_too_large() -> None:
    # Given two members of 40 KB each, under a 64 KB limit alone but not together
    raw = gzip.compress(b"x" * 40_000) * 2

    # When it is decompressed, then it is too large
    with pytest.raises(PayloadTooLarge):
        gunzip(raw, limit=64 * 1024)


@pytest.mark.parametrize("garbage", [b"garbage", b"\x00" * 8, b"\x1f"], ids=["text", "zeros", "half a magic number"])
def test_bytes_after_the_gzip_stream_are_refused(garbage: bytes) -> None:
    # Given a gzip body followed by bytes that are not another member
    raw = gzip.compress(b'{"event": "A"}') + garbage

    # When it is decompressed, then it is refused as the client's fault
    with pytest.raises(InvalidPayload, match="after the gzip"):
        gunzip(raw)


def test_a_truncated_second_member_is_refused() -> None:
    # Given a whole member followed by half of another
    second = gzip.compress(b'{"event": "B"}')
    raw = gzip.compress(b'{"event": "A"}') + second[: len(second) // 2]

    # When it is decompressed, then it is refused
    with pytest.raises(InvalidPayload, match="truncated"):
        gunzip(raw)


def test_a_body_of_more_gzip_members_than_the_limit_is_refused() -> None:
    # Given a body of thousands of empty gzip members (each costs a decompressor and a copy of the rest)
    raw = gzip.compress(b"") * 10_000

    # When it is decompressed, then it is refused quickly, saying why
    with pytest.raises(InvalidPayload, match=f"more than {MAX_GZIP_MEMBERS} gzip members"):
        gunzip(raw)
