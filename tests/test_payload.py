"""Request bodies (ingestion/payload.py): the nesting limit holds for small bodies, which are
screened by counting brackets, and for large ones, which are walked straight away."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ingestion.errors import InvalidPayload
from ingestion.payload import MAX_DEPTH, decode_json_body
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
