"""Client times in the envelope (ingestion/envelope.py): what is parsed, what is refused before
parsing, and what parsing may keep in memory."""

from __future__ import annotations

import tracemalloc

import pytest

from ingestion.envelope import MAX_TIME_LENGTH, parse_time
from ingestion.errors import InvalidPayload


def test_a_canonical_time_is_read_as_sent() -> None:
    # Given the form SDKs send, when it is parsed, then it is kept as it came with its unix ms
    assert parse_time("2024-05-01T12:00:00.123Z", "timestamp") == (1714564800123, "2024-05-01T12:00:00.123Z")


def test_a_time_with_an_offset_is_normalised_to_utc_with_milliseconds() -> None:
    # Given a time with an offset and microseconds, when it is parsed, then it is UTC with ms
    assert parse_time("2024-05-01T14:00:00.123456+02:00", "timestamp") == (
        1714564800123,
        "2024-05-01T12:00:00.123Z",
    )


def test_a_time_longer_than_the_limit_is_refused_without_being_parsed() -> None:
    # Given a timestamp of 60,000 characters that starts like a real one
    value = "2024-05-01T12:00:00.123Z" + "9" * 59_976

    # When it is read, then it is refused, saying why, and quoting at most a little of it
    with pytest.raises(InvalidPayload, match=f"longer than {MAX_TIME_LENGTH} characters") as refused:
        parse_time(value, "timestamp")
    assert len(refused.value.message) < 200


def test_unique_invalid_timestamps_leave_no_memory_behind() -> None:
    # Given 1,000 distinct invalid timestamps of 60,000 characters each (60 MB in all)
    values = (f"{n:08d}" + "x" * 59_992 for n in range(1000))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]

    # When each one is read and refused
    for value in values:
        with pytest.raises(InvalidPayload):
            parse_time(value, "timestamp")

    # Then nothing of them is kept (a parse cache once held 4,096 of them: 240 MB)
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert kept < 1_000_000, kept


def test_unique_short_times_keep_the_cache_bounded_in_bytes() -> None:
    # Given 10,000 distinct times within the length limit, canonical and not
    values = [f"2024-05-01T12:{n // 1000 % 60:02d}:{n % 60:02d}.{n % 1000:03d}Z" for n in range(5000)]
    values += [f"2024-05-01T12:00:00.{n:06d}+01:00" for n in range(5000)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]

    # When each is parsed
    for value in values:
        parse_time(value, "timestamp")

    # Then what parsing keeps is bounded: at most a few thousand short canonical strings
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert kept < 2_000_000, kept
