"""Database calls made from the event loop: on threads of their own, bounded in time and in number.

asgiref's ``sync_to_async`` runs every thread-sensitive call on one shared thread, so one query stuck
on a stalled PostgreSQL held up every other lookup behind it (issue 11: 170 s with no answer). Here
each call runs on a small pool of its own and its caller waits at most ``timeout`` seconds.

libpq has no read timeout: a query on a peer that accepts and never answers would hold its thread
for as long as the peer stays silent. When a caller gives up, the call's connection is shut down
(``shutdown(2)`` on the socket psycopg reports through its public ``Connection.fileno()``), which
ends the query with an error and gives the thread back; ``tests/test_dbcalls.py`` fails if an
upgrade stops that from working. Connecting is bounded by libpq's ``connect_timeout`` (settings).

After a timeout or a failure to connect, the database counts as down for ``retry_seconds``: calls
fail at once rather than each waiting out its own timeout; so they do while every thread is held by
an abandoned call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import DatabaseError, OperationalError, close_old_connections, connections

logger = logging.getLogger(__name__)

T = TypeVar("T")


class DatabaseUnavailable(DatabaseError):
    """The call was not made, or its answer not awaited: the database is stalled or overloaded."""


class _Call:
    """One call on a pool thread; ``abandon()`` from the loop cuts it loose if it is still running."""

    def __init__(self, fn: Callable[[], Any], alias: str, gate: BoundedDatabase) -> None:
        self._fn = fn
        self._alias = alias
        self._gate = gate
        self._lock = threading.Lock()
        self._abandoned = False
        self._running = False
        self._cut = False
        self._wrapper: Any = None

    def run(self) -> Any:
        # No request signals run on these threads: drop a connection the server closed ourselves.
        close_old_connections()
        wrapper = connections[self._alias]
        self._gate._thread_started(wrapper)
        try:
            with self._lock:
                if self._abandoned:  # the caller gave up while this waited for a thread
                    raise DatabaseUnavailable("the caller stopped waiting before the call started")
                self._running = True
                self._wrapper = wrapper
            return self._fn()
        finally:
            with self._lock:
                self._running = False
                cut = self._cut
            if self._gate._thread_finished(wrapper, cut=cut):
                wrapper.close()  # the pool closed while this ran: close our own connection

    def abandon(self, *, cut: bool) -> None:
        """Nobody waits for this call any more: it will not start, and with ``cut`` a running call's
        connection is shut down so its thread comes back."""
        with self._lock:
            self._abandoned = True
            if not (self._running and cut):
                return
            # Holding the lock: the thread cannot leave the call, and the ORM code inside opens
            # connections but never closes one, so the descriptor cannot be reused under us.
            _shutdown_socket(self._wrapper.connection)
            self._cut = True
            self._gate._thread_stuck()


def _shutdown_socket(raw: Any) -> None:
    """Wake a thread blocked reading a silent peer: its read returns end-of-file and libpq errors."""
    fileno = getattr(raw, "fileno", None)  # None while still connecting, or for SQLite
    if fileno is None:
        return
    try:
        fd = fileno()
    except Exception:  # psycopg raises once the connection is closed: nothing to wake
        return
    sock = socket.socket(fileno=os.dup(fd))  # a duplicate: closing it leaves psycopg's descriptor alone
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


class BoundedDatabase:
    """``await db.call(fn)`` runs ``fn`` (ORM code) on one of ``threads`` threads, within ``timeout``."""

    def __init__(
        self,
        *,
        threads: int,
        timeout: float,
        retry_seconds: float,
        alias: str = "default",
        name: str = "db",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threads = threads
        self._timeout = timeout
        self._retry_seconds = retry_seconds
        self._alias = alias
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._stuck = 0  # abandoned calls still on a thread
        # Each pool thread's connection wrapper, idle or in a call, to close them all at the end.
        self._idle: set[Any] = set()
        self._busy: dict[Any, int] = {}
        self._closed = False
        self._down_until = 0.0

    async def call(self, fn: Callable[[], T]) -> T:
        if self._clock() < self._down_until:
            raise DatabaseUnavailable("the database failed a moment ago; not asking again yet")
        with self._lock:
            if self._stuck >= self._threads:
                raise DatabaseUnavailable("every database thread is waiting on a silent connection")
        call = _Call(fn, self._alias, self)
        future = asyncio.get_running_loop().run_in_executor(self._executor, call.run)
        try:
            return await asyncio.wait_for(future, self._timeout)
        except TimeoutError:
            self._down_until = self._clock() + self._retry_seconds
            call.abandon(cut=True)
            logger.warning(
                "database call abandoned after %.1f s; failing fast for %.0f s", self._timeout, self._retry_seconds
            )
            raise DatabaseUnavailable(f"the database did not answer within {self._timeout:g} s") from None
        except OperationalError:
            # Refused, reset, or libpq's connect_timeout: the next call would most likely fail the same
            # way, after the same wait.
            self._down_until = self._clock() + self._retry_seconds
            raise
        except asyncio.CancelledError:
            call.abandon(cut=False)  # the caller is gone: do not start the call if it has not started
            raise

    def _thread_started(self, wrapper: Any) -> None:
        with self._lock:
            if self._closed:
                raise DatabaseUnavailable("the key store is shutting down")
            self._idle.discard(wrapper)
            self._busy[wrapper] = self._busy.get(wrapper, 0) + 1

    def _thread_stuck(self) -> None:
        with self._lock:
            self._stuck += 1

    def _thread_finished(self, wrapper: Any, *, cut: bool) -> bool:
        """Book the call's end; True if the pool has closed meanwhile and the thread must close
        its connection itself."""
        with self._lock:
            if cut:
                self._stuck = max(0, self._stuck - 1)
            left = self._busy.pop(wrapper, 1) - 1
            if left:
                self._busy[wrapper] = left
            elif not self._closed:
                self._idle.add(wrapper)
            return self._closed and not left

    @property
    def stuck(self) -> int:
        """Abandoned calls still holding a thread (0 once their connections have been cut loose)."""
        with self._lock:
            return self._stuck

    async def aclose(self) -> None:
        """Stop the pool and close the connections its threads opened (a thread in a call closes
        its own when the call ends)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle), set()
        if idle:
            # Django's close() refuses to run on the event loop.
            await asyncio.to_thread(_close_connections, idle)


def _close_connections(wrappers: list[Any]) -> None:
    for wrapper in wrappers:
        # Django refuses to close another thread's connection unless sharing is declared.
        wrapper.inc_thread_sharing()
        try:
            wrapper.close()
        except Exception as exc:
            logger.warning("closing a database connection at shutdown failed: %r", exc)
        finally:
            wrapper.dec_thread_sharing()
