"""Redis for the request path: one connection per process, and every command that concurrent
requests need goes out together in one round trip.

Deduplication and rate-limit leases ask Redis something for most requests. redis-py's asyncio client
costs ~90 us of CPU per round trip and ~15 us per pipelined command on this machine, a third of a
whole track request; here commands are packed by hiredis (``pack_command``), written by an asyncio
Protocol and their replies parsed by hiredis's ``Reader`` as they arrive, with no task switch in
between (bench/redis_cost.py measures both in one run). While one batch is on the wire, the
commands that arrive meanwhile wait and go out together in the next write: under load one round
trip serves many requests, and no request waits for more than the one before it.

Redis is never allowed to hold a request up: a batch unanswered after ``timeout`` fails every
command waiting with ``RedisUnavailable``, the connection is dropped, and for ``retry_after``
seconds every call fails at once without trying. Callers decide what a failure means (dedup lets the
event through; the rate limiter falls back to its local bucket).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis

logger = logging.getLogger(__name__)

Command = tuple[Any, ...]


class RedisUnavailable(Exception):
    """Redis did not answer in time, or is known to be down."""


class _Waiter:
    """One call's share of the replies: ``count`` of them, for ``future`` (None: nobody waits)."""

    __slots__ = ("count", "future", "replies")

    def __init__(self, count: int, future: asyncio.Future[list[Any]] | None) -> None:
        self.count = count
        self.future = future
        self.replies: list[Any] = []


class _Connection(asyncio.Protocol):
    def __init__(self, pipe: RedisPipe) -> None:
        self.pipe = pipe
        self.transport: asyncio.Transport | None = None
        self.parser = hiredis.Reader()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        self.pipe._replies(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipe._lost(self, exc or ConnectionResetError("redis closed the connection"))


class RedisPipe:
    def __init__(self, url: str, *, timeout: float = 0.25, retry_after: float = 1.0) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        db = int((parts.path or "/0").lstrip("/") or 0)
        self._hello: list[Command] = []
        if parts.password:
            password = unquote(parts.password)
            self._hello.append(("AUTH", unquote(parts.username), password) if parts.username else ("AUTH", password))
        if db:
            self._hello.append(("SELECT", db))
        self.timeout = timeout
        self.retry_after = retry_after
        self._connection: _Connection | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queued: list[bytes] = []  # packed commands waiting for the next write
        self._queued_waiters: list[_Waiter] = []
        self._on_wire: deque[_Waiter] = deque()  # written, replies not all read yet, in order
        self._deadline: asyncio.TimerHandle | None = None
        self._down_until = 0.0
        self.round_trips = 0
        self.commands = 0

    @property
    def down(self) -> bool:
        return time.monotonic() < self._down_until

    async def call(self, commands: Sequence[Command]) -> list[Any]:
        """The replies to ``commands``, in order (a Redis error reply is a ``hiredis.ReplyError``
        in its place); raises RedisUnavailable."""
        if time.monotonic() < self._down_until:
            raise RedisUnavailable("redis is down; not asking again yet")
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue(commands, future)
        return await future

    def send(self, commands: Sequence[Command]) -> None:
        """Queue ``commands`` without waiting for them (their replies are read and dropped); nothing
        happens while Redis is down."""
        if time.monotonic() >= self._down_until:
            self._queue(commands, None)

    # -- writing ----------------------------------------------------------------------------------

    def _queue(self, commands: Sequence[Command], future: asyncio.Future[list[Any]] | None) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first use, or a new loop: the old connection is not ours to use
            self._loop, self._connection, self._connecting = loop, None, None
            self._on_wire.clear()
        self._queued.append(b"".join([hiredis.pack_command(command) for command in commands]))
        self._queued_waiters.append(_Waiter(len(commands), future))
        if self._connection is None:
            if self._connecting is None:
                self._connecting = loop.create_task(self._connect(), name="redis-pipe-connect")
        elif not self._on_wire:
            self._flush()

    def _flush(self) -> None:
        connection = self._connection
        if connection is None or connection.transport is None or not self._queued:
            return
        assert self._loop is not None
        data, self._queued = b"".join(self._queued), []
        waiters, self._queued_waiters = self._queued_waiters, []
        self._on_wire.extend(waiters)
        connection.transport.write(data)
        self.round_trips += 1
        self.commands += sum(w.count for w in waiters)
        self._deadline = self._loop.call_later(self.timeout, self._timed_out)

    async def _connect(self) -> None:
        assert self._loop is not None
        try:
            async with asyncio.timeout(self.timeout * 4):
                _, connection = await self._loop.create_connection(lambda: _Connection(self), self._host, self._port)
                if self._hello:
                    hello: asyncio.Future[list[Any]] = self._loop.create_future()
                    self._on_wire.appendleft(_Waiter(len(self._hello), hello))
                    assert connection.transport is not None
                    connection.transport.write(b"".join(hiredis.pack_command(c) for c in self._hello))
                    self._connection = connection
                    for reply in await hello:
                        if isinstance(reply, hiredis.ReplyError):
                            raise RedisUnavailable(f"redis refused the connection: {reply}")
                self._connection = connection
        except (OSError, TimeoutError, RedisUnavailable) as exc:
            self._connecting = None
            self._fail(exc)
            return
        self._connecting = None
        self._flush()

    # -- reading (from the protocol) --------------------------------------------------------------

    def _replies(self, connection: _Connection) -> None:
        parser = connection.parser
        while self._on_wire:
            try:
                reply = parser.gets()
            except hiredis.ProtocolError as exc:
                self._fail(exc)
                return
            if reply is False:
                return
            waiter = self._on_wire[0]
            waiter.replies.append(reply)
            if len(waiter.replies) == waiter.count:
                self._on_wire.popleft()
                if waiter.future is not None and not waiter.future.done():
                    waiter.future.set_result(waiter.replies)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._flush()  # the batch is answered: what queued up meanwhile goes out together

    def _lost(self, connection: _Connection, exc: Exception) -> None:
        if connection is self._connection:
            self._fail(exc)

    def _timed_out(self) -> None:
        self._fail(TimeoutError(f"no answer within {self.timeout:g} s"))

    def _fail(self, exc: BaseException) -> None:
        if time.monotonic() >= self._down_until:
            logger.warning("redis unavailable on the request path for %.1f s: %r", self.retry_after, exc)
        self._down_until = time.monotonic() + self.retry_after
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        connection, self._connection = self._connection, None
        if connection is not None and connection.transport is not None:
            connection.transport.abort()
        error = RedisUnavailable(f"redis did not answer: {exc!r}")
        waiters = [*self._on_wire, *self._queued_waiters]
        self._on_wire.clear()
        self._queued, self._queued_waiters = [], []
        for waiter in waiters:
            if waiter.future is not None and not waiter.future.done():
                waiter.future.set_exception(error)

    async def aclose(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._connection is not None and self._connection.transport is not None:
            self._connection.transport.close()
        self._connection = None


_default: RedisPipe | None = None


def get_redis_pipe() -> RedisPipe | None:
    """The process's pipe, or None when the gateway runs without Redis (the demo)."""
    global _default
    if _default is None:
        from django.conf import settings

        if not settings.REDIS_URL:
            return None
        _default = RedisPipe(settings.REDIS_URL, timeout=settings.REDIS_HOT_PATH_TIMEOUT)
    return _default
