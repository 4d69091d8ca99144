"""The durable local spool (ingestion/spool.py): what is appended survives the process, in order;
a torn tail is cut off; the cursor moves only past what Kafka has; dead processes' parts are adopted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ingestion.records import Record
from ingestion.spool import Spool, SpoolFull


def record(n: int) -> Record:
    return Record(f"pip_x:visitor-{n % 3}".encode(), f'{{"n": {n}}}'.encode(), [("message_id", f"m-{n}".encode())])


def append_all(spool: Spool, batches: list[list[Record]]) -> list[range]:
    async def go() -> list[range]:
        return list(await asyncio.gather(*(spool.append(batch) for batch in batches)))

    return asyncio.run(go())


def test_appended_records_survive_the_process_and_read_back_in_order(tmp_path: Path) -> None:
    # Given three requests' records appended and synced
    spool = Spool(tmp_path, max_bytes=10**9)
    seqs = append_all(spool, [[record(0), record(1)], [record(2)], [record(3), record(4), record(5)]])
    spool.close()

    # When a new process opens the spool
    reopened = Spool(tmp_path, max_bytes=10**9)

    # Then it finds all of them, in the order they were appended, with their keys, values and headers
    found = reopened.read(100)
    assert [s.record for s in found] == [record(n) for n in range(6)]
    assert [s.seq for s in found] == list(range(6))
    assert [list(r) for r in seqs] == [[0, 1], [2], [3, 4, 5]]
    assert reopened.depth == 6
    reopened.close()


def test_what_was_committed_is_not_read_again_and_drained_segments_are_deleted(tmp_path: Path) -> None:
    # Given a spool that rolls over to a new segment every few records
    spool = Spool(tmp_path, max_bytes=10**9, segment_bytes=200)
    for n in range(10):  # one group each, as requests arriving apart
        append_all(spool, [[record(n)]])
    first_segment = sorted(spool.own.path.glob("*.seg"))[0]
    assert len(list(spool.own.path.glob("*.seg"))) > 2

    # When the first six are in Kafka
    spool.commit(spool.read(6))
    spool.close()
    reopened = Spool(tmp_path, max_bytes=10**9, segment_bytes=200)

    # Then only the other four are left to drain, and the segments behind the cursor are gone
    assert [s.record for s in reopened.read(100)] == [record(n) for n in range(6, 10)]
    assert reopened.depth == 4
    assert not first_segment.exists()
    reopened.close()


def test_a_frame_torn_by_a_crash_is_cut_off_and_the_rest_is_kept(tmp_path: Path) -> None:
    # Given a spool whose last write was cut short by a crash (the request was never answered)
    spool = Spool(tmp_path, max_bytes=10**9)
    append_all(spool, [[record(0)], [record(1)]])
    segment = sorted(spool.own.path.glob("*.seg"))[-1]
    spool.close()
    whole = segment.read_bytes()
    segment.write_bytes(whole + whole[: len(whole) // 3])  # half a frame more

    # When the spool is opened again
    reopened = Spool(tmp_path, max_bytes=10**9)

    # Then the two whole records are there and the torn bytes are gone from the file
    assert [s.record for s in reopened.read(100)] == [record(0), record(1)]
    assert segment.read_bytes() == whole
    append_all(reopened, [[record(2)]])  # and writing goes on cleanly after them
    assert [s.record for s in reopened.read(100)] == [record(0), record(1), record(2)]
    reopened.close()


def test_two_processes_own_separate_parts_and_a_dead_ones_part_is_adopted(tmp_path: Path) -> None:
    # Given two processes on one spool root
    first = Spool(tmp_path, max_bytes=10**9)
    second = Spool(tmp_path, max_bytes=10**9)
    assert first.own.path != second.own.path
    append_all(first, [[record(1)]])
    assert second.orphans() == []  # the first is alive: its part is not for the taking

    # When the first goes away with a record in its part
    first.close()

    # Then the second adopts that part and can drain it
    [orphan] = second.orphans()
    assert [s.record for s in orphan.read(10)] == [record(1)]
    orphan.commit(orphan.read(10))
    assert orphan.depth == 0
    orphan.release()
    second.close()


def test_an_append_past_the_cap_is_refused_at_once(tmp_path: Path) -> None:
    # Given a spool capped at a few kilobytes, nearly full
    spool = Spool(tmp_path, max_bytes=4096)
    append_all(spool, [[record(n) for n in range(20)]])

    # When more arrives than fits
    async def too_much() -> None:
        await spool.append([Record(b"k", b"x" * 4096, [])])

    # Then it is refused (503 to the client) without touching the disk
    with pytest.raises(SpoolFull):
        asyncio.run(too_much())
    assert spool.depth == 20
    spool.close()
