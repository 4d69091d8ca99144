"""The spool's on-disk format, measured before choosing: append-only segment files (ingestion.spool)
against SQLite in WAL mode, both fsync'd per group of appends, in one run on the same disk.

    .venv/bin/python bench/spool_formats.py [--batches 400] [--concurrency 50] [--dir /tmp]

Each of ``--concurrency`` writers appends batches of 100 track-sized records (~600 bytes) and waits
for each to be durable before the next, as requests do; both stores group what arrives while one
group syncs. Prints events/s and fsyncs (groups) for each, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingestion.records import Record  # noqa: E402
from ingestion.spool import Spool  # noqa: E402

RECORD = Record(b"pip_bench:3f6b1d2e-8c4a-4e7b-9b1f-000000000001", b"x" * 600, [("pipeline_id", b"pip_bench")])
BATCH = [RECORD] * 100


class SqliteSpool:
    """The alternative: one table, WAL, synchronous=FULL, one transaction per group."""

    def __init__(self, path: Path) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.groups = 0
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE spool (seq INTEGER PRIMARY KEY, key BLOB, value BLOB, headers BLOB)")
        threading.Thread(target=self._write_forever, daemon=True).start()

    def append(self, records: list[Record]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put((records, future, loop))
        return future

    def _write_forever(self) -> None:
        while True:
            group = [self._queue.get()]
            while True:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = [(r.key, r.value, repr(r.headers).encode()) for records, _, _ in group for r in records]
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO spool (key, value, headers) VALUES (?, ?, ?)", rows)
            self._db.execute("COMMIT")
            self.groups += 1
            for _, future, loop in group:
                loop.call_soon_threadsafe(future.set_result, None)


async def drive(store, batches: int, concurrency: int) -> float:  # type: ignore[no-untyped-def]
    async def writer(n: int) -> None:
        for _ in range(n):
            await store.append(BATCH)

    started = time.perf_counter()
    per = batches // concurrency
    await asyncio.gather(*(writer(per) for _ in range(concurrency)))
    return per * concurrency * len(BATCH) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sg-spool-formats-", dir=args.dir))
    segments = Spool(work / "segments", max_bytes=10**12)
    sqlite = SqliteSpool(work / "spool.sqlite3")
    seg_rate = asyncio.run(drive(segments, args.batches, args.concurrency))
    sql_rate = asyncio.run(drive(sqlite, args.batches, args.concurrency))
    segments.close()
    print(f"segment files (ingestion.spool): {seg_rate:>10,.0f} events/s")
    print(f"SQLite WAL, synchronous=FULL:    {sql_rate:>10,.0f} events/s ({sqlite.groups} commits)")
    print(f"segment files / SQLite:          {seg_rate / sql_rate:>10.2f}x")
    for path in sorted(work.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    work.rmdir()
    os.sync()


if __name__ == "__main__":
    main()
