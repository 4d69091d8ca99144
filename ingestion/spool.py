"""The durable local spool (SPEC §6): where an event goes when Kafka cannot take it, so that the
client still gets its 200, and from where it is replayed to Kafka once Kafka is back.

On disk: a directory per gateway process (``SPOOL_DIR/w<N>``), claimed with an exclusive ``flock``
on its ``lock`` file, so several workers on one port each own their part; a directory whose owner
died is unlocked, and a live process adopts it and drains it (``orphans``). In it, append-only
segment files ``<sequence>.seg`` of frames::

    u32 length | u32 crc32(body) | body = u64 seq | u64 spooled_at_ms | u16 key_len | key
                                          | u32 value_len | value | u8 headers | (u16 name | u16 value)*

and a ``cursor`` file (``<segment> <offset>``): everything before it is in Kafka. Appends are
written and fsync'd by one writer thread, in groups: every append that arrives while one group is
being written and synced goes into the next, so one fsync serves many requests. ``append`` returns a
future the event loop awaits; it completes once the frames are on disk, and only then may the
client be told 200. A frame cut short by a crash (its request was never answered) is cut off the
end when the directory is opened again. Segments wholly behind the cursor are deleted.

Measured before choosing this over SQLite in WAL mode (bench/spool_formats.py, same machine, one
run): see the README's "Delivery guarantees".
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ingestion.errors import Unavailable
from ingestion.records import Record

logger = logging.getLogger(__name__)

SEGMENT_BYTES = 64 * 1024 * 1024
_ROOM = 4096  # less than this left counts as full (readiness)
_FRAME_HEAD = struct.Struct("<II")
_BODY_HEAD = struct.Struct("<QQH")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_SUFFIX = ".seg"


class SpoolFull(Unavailable):
    """The spool is at SPOOL_MAX_BYTES: the client must retry later (503 + Retry-After)."""


@dataclass(frozen=True, slots=True)
class Position:
    """A place in the spool: a segment and a byte offset in it."""

    segment: int
    offset: int


@dataclass(frozen=True, slots=True)
class Spooled:
    seq: int
    spooled_at_ms: int
    record: Record
    end: Position  # just after this frame
    size: int  # the frame's bytes on disk


def encode(seq: int, spooled_at_ms: int, record: Record) -> bytes:
    key, value, headers = record
    parts = [_BODY_HEAD.pack(seq, spooled_at_ms, len(key)), key, _U32.pack(len(value)), value, bytes([len(headers)])]
    for name, header_value in headers:
        name_bytes = name.encode()
        value_bytes = (
            b"" if header_value is None else header_value if isinstance(header_value, bytes) else header_value.encode()
        )
        parts += [_U16.pack(len(name_bytes)), name_bytes, _U16.pack(len(value_bytes)), value_bytes]
    body = b"".join(parts)
    return _FRAME_HEAD.pack(len(body), zlib.crc32(body)) + body


def decode(body: bytes) -> tuple[int, int, Record]:
    seq, spooled_at_ms, key_len = _BODY_HEAD.unpack_from(body, 0)
    at = _BODY_HEAD.size
    key = body[at : at + key_len]
    at += key_len
    (value_len,) = _U32.unpack_from(body, at)
    at += 4
    value = body[at : at + value_len]
    at += value_len
    count = body[at]
    at += 1
    headers: list[tuple[str, str | bytes | None]] = []
    for _ in range(count):
        (name_len,) = _U16.unpack_from(body, at)
        name = body[at + 2 : at + 2 + name_len].decode()
        at += 2 + name_len
        (header_len,) = _U16.unpack_from(body, at)
        headers.append((name, body[at + 2 : at + 2 + header_len]))
        at += 2 + header_len
    return seq, spooled_at_ms, Record(key, value, headers)


def read_frames(path: Path, start: int, stop: int | None = None) -> tuple[list[tuple[int, bytes]], int]:
    """The whole frames of a segment from ``start`` (up to ``stop``): [(end offset, body)], and where
    the last whole, intact frame ends."""
    with open(path, "rb") as file:
        file.seek(start)
        data = file.read() if stop is None else file.read(max(0, stop - start))
    frames: list[tuple[int, bytes]] = []
    at = 0
    while at + _FRAME_HEAD.size <= len(data):
        length, crc = _FRAME_HEAD.unpack_from(data, at)
        end = at + _FRAME_HEAD.size + length
        if end > len(data):
            break
        body = data[at + _FRAME_HEAD.size : end]
        if zlib.crc32(body) != crc:
            break
        frames.append((start + end, body))
        at = end
    return frames, start + at


class SpoolDirectory:
    """One directory of segments and its cursor: opened by the process that holds its lock."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd = lock_fd
        self.lock = threading.Lock()  # the counts: the writer thread adds, the drainer takes away
        self.cursor = self._read_cursor()
        self.segments = sorted(int(p.name.removesuffix(_SUFFIX)) for p in path.glob(f"*{_SUFFIX}"))
        self.next_seq = 0
        self.depth = 0
        self.bytes = 0
        self.oldest_ms: int | None = None
        self._recover()

    # -- opening --------------------------------------------------------------------------------

    @classmethod
    def try_lock(cls, path: Path) -> SpoolDirectory | None:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(path, fd)

    def _read_cursor(self) -> Position:
        try:
            segment, offset = (self.path / "cursor").read_text().split()
            return Position(int(segment), int(offset))
        except (FileNotFoundError, ValueError):
            return Position(0, 0)

    def _recover(self) -> None:
        """Cut a frame left half-written by a crash off the end; count what is left to drain."""
        for segment in list(self.segments):
            path = self._segment_path(segment)
            frames, good_end = read_frames(path, 0)
            size = path.stat().st_size
            if good_end < size:
                logger.warning(
                    "spool %s: %d bytes after the last whole frame cut off (a crash mid-write)", path, size - good_end
                )
                with open(path, "r+b") as file:
                    file.truncate(good_end)
                    os.fsync(file.fileno())
            for end, body in frames:
                seq, spooled_at_ms, _ = decode(body)
                self.next_seq = max(self.next_seq, seq + 1)
                if (segment, end) > (self.cursor.segment, self.cursor.offset):
                    self.depth += 1
                    self.bytes += _FRAME_HEAD.size + len(body)
                    if self.oldest_ms is None:
                        self.oldest_ms = spooled_at_ms
        self._delete_drained()

    # -- reading (the drainer) ------------------------------------------------------------------

    def _segment_path(self, segment: int) -> Path:
        return self.path / f"{segment:020d}{_SUFFIX}"

    def read(self, limit: int, durable: dict[int, int] | None = None) -> list[Spooled]:
        """Up to ``limit`` frames after the cursor, in order. ``durable`` bounds each segment being
        written to what has been synced (a frame being appended is not read half-written)."""
        out: list[Spooled] = []
        for segment in self.segments:
            if segment < self.cursor.segment:
                continue
            start = self.cursor.offset if segment == self.cursor.segment else 0
            stop = durable.get(segment) if durable is not None else None
            frames, _ = read_frames(self._segment_path(segment), start, stop)
            for end, body in frames:
                seq, spooled_at_ms, record = decode(body)
                out.append(Spooled(seq, spooled_at_ms, record, Position(segment, end), _FRAME_HEAD.size + len(body)))
                if len(out) >= limit:
                    return out
        return out

    def commit(self, batch: Sequence[Spooled], durable: dict[int, int] | None = None) -> None:
        """Everything up to the end of ``batch`` is in Kafka: move the cursor (durably), drop
        finished segments."""
        if not batch:
            return
        upto = batch[-1].end
        tmp = self.path / "cursor.tmp"
        with open(tmp, "w") as file:
            file.write(f"{upto.segment} {upto.offset}\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self.path / "cursor")
        _fsync_dir(self.path)
        self.cursor = upto
        following = self.read(1, durable)
        with self.lock:
            self.cursor = upto
            self.depth = max(0, self.depth - len(batch))
            self.bytes = max(0, self.bytes - sum(s.size for s in batch))
            self.oldest_ms = following[0].spooled_at_ms if following and self.depth else None
        self._delete_drained()

    def _delete_drained(self, keep: int | None = None) -> None:
        for segment in list(self.segments):
            if segment < self.cursor.segment and segment != keep:
                self._segment_path(segment).unlink(missing_ok=True)
                self.segments.remove(segment)

    def release(self) -> None:
        os.close(self._lock_fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """This process's spool: its own directory, appended to by a writer thread, and drained."""

    def __init__(self, root: Path, *, max_bytes: int, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.own = self._claim()
        self._others_bytes = 0
        self._others_checked = 0.0
        self._segment = max(self.own.segments, default=0) + (1 if self.own.segments else 0)
        self._file = self._open_segment(self._segment)
        self._size = 0
        self.durable: dict[int, int] = {}
        self._appends: queue.SimpleQueue[
            tuple[list[Record], asyncio.Future[range], asyncio.AbstractEventLoop] | None
        ] = queue.SimpleQueue()
        self._pending_bytes = 0  # queued for the writer, not yet on disk
        self.failing = False  # the last write failed
        self._lock = threading.Lock()
        self._writer = threading.Thread(target=self._write_forever, name="spool-writer", daemon=True)
        self._writer.start()

    def _claim(self) -> SpoolDirectory:
        self.root.mkdir(parents=True, exist_ok=True)
        for n in range(1024):
            found = SpoolDirectory.try_lock(self.root / f"w{n}")
            if found is not None:
                logger.info("spool: %s, %d event(s) to drain", found.path, found.depth)
                return found
        raise RuntimeError(f"no free spool directory under {self.root}")

    def _open_segment(self, segment: int) -> int:
        fd = os.open(self.own._segment_path(segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if segment not in self.own.segments:
            self.own.segments.append(segment)
            _fsync_dir(self.own.path)
        return fd

    # -- appending (the event loop) -------------------------------------------------------------

    def append(self, records: Sequence[Record]) -> asyncio.Future[range]:
        """Queue ``records`` for the disk; the future completes, with the records' sequence numbers,
        once they are fsync'd. SpoolFull at once when the spool (every process's part) is at its cap."""
        size = sum(len(r.key) + len(r.value) + 64 for r in records)
        if self.own.bytes + self._pending_bytes + self.others_bytes() + size > self.max_bytes:
            raise SpoolFull(f"the local spool is full ({self.max_bytes} bytes); retry later")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[range] = loop.create_future()
        with self._lock:
            self._pending_bytes += size
        self._appends.put((list(records), future, loop))
        return future

    def full(self) -> bool:
        """Whether the spool (every process's part) is at its cap, within a few events' room, or its
        disk failed the last write."""
        return self.failing or self.own.bytes + self._pending_bytes + self.others_bytes() + _ROOM >= self.max_bytes

    def others_bytes(self) -> int:
        """What other processes' directories hold (summed at most once a second)."""
        now = time.monotonic()
        if now - self._others_checked >= 1.0:
            self._others_checked = now
            total = 0
            for directory in self.root.glob("w*"):
                if directory != self.own.path:
                    total += sum(p.stat().st_size for p in directory.glob(f"*{_SUFFIX}") if p.exists())
            self._others_bytes = total
        return self._others_bytes

    @property
    def depth(self) -> int:
        return self.own.depth

    @property
    def appending(self) -> bool:
        """Whether appends are queued that are not on disk yet."""
        return self._pending_bytes > 0

    def oldest_age_seconds(self) -> float:
        oldest = self.own.oldest_ms
        return 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)

    # -- the writer thread ----------------------------------------------------------------------

    def _write_forever(self) -> None:
        while True:
            first = self._appends.get()
            if first is None:
                return
            group = [first]
            while True:  # everything that arrived while the last group was being synced
                try:
                    item = self._appends.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._appends.put(None)
                    break
                group.append(item)
            self._write_group(group)

    def _write_group(self, group: list[tuple[list[Record], asyncio.Future[range], asyncio.AbstractEventLoop]]) -> None:
        now_ms = int(time.time() * 1000)
        frames: list[bytes] = []
        counted = 0
        for records, _, _ in group:
            for record in records:
                frames.append(encode(self.own.next_seq, now_ms, record))
                self.own.next_seq += 1
            counted += sum(len(r.key) + len(r.value) + 64 for r in records)
        data = b"".join(frames)
        error: BaseException | None = None
        try:
            written = 0
            while written < len(data):
                written += os.write(self._file, data[written:])
            os.fdatasync(self._file)
        except OSError as exc:
            logger.error("spool write failed: %s", exc)
            error = SpoolFull(f"the local spool cannot be written: {exc.strerror}")
            self.failing = True
            try:  # no half-written frame may stand before the next group's
                os.ftruncate(self._file, self._size)
            except OSError:
                pass
        else:
            self.failing = False
        with self._lock:
            self._pending_bytes -= counted
        if error is None:
            self._size += len(data)
            self.durable[self._segment] = self._size
            with self.own.lock:
                self.own.depth += len(frames)
                self.own.bytes += len(data)
                if self.own.oldest_ms is None:
                    self.own.oldest_ms = now_ms
        first = self.own.next_seq - len(frames)
        for records, future, loop in group:
            seqs = range(first, first + len(records))
            first += len(records)
            try:
                loop.call_soon_threadsafe(_settle, future, error, seqs)
            except RuntimeError:  # the loop is closed: nobody waits
                pass
        if error is None and self._size >= self.segment_bytes:
            os.close(self._file)
            self._segment += 1
            self._size = 0
            self._file = self._open_segment(self._segment)

    # -- draining -------------------------------------------------------------------------------

    def read(self, limit: int) -> list[Spooled]:
        return self.own.read(limit, self.durable)

    def commit(self, batch: Sequence[Spooled]) -> None:
        self.own.commit(batch, self.durable)

    def orphans(self) -> list[SpoolDirectory]:
        """Directories of processes that are gone, locked for us, with something to drain."""
        found = []
        for directory in sorted(self.root.glob("w*")):
            if directory == self.own.path or not directory.is_dir():
                continue
            claimed = SpoolDirectory.try_lock(directory)
            if claimed is None:
                continue
            if claimed.depth:
                found.append(claimed)
            else:
                claimed.release()
        return found

    def close(self) -> None:
        self._appends.put(None)
        self._writer.join(timeout=5)
        os.close(self._file)
        self.own.release()


def _settle(future: asyncio.Future[range], error: BaseException | None, seqs: range) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(seqs)
    else:
        future.set_exception(error)
