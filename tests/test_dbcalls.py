"""Bounded database calls against a real PostgreSQL that stops answering (pipelines.dbcalls).

The second test guards what dbcalls adapts from psycopg: a call stuck on a silent connection is cut
loose by shutting its socket down. If a psycopg upgrade breaks that, the stuck thread stays stuck
and the test says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
from django.db import connections

from pipelines.dbcalls import BoundedDatabase, DatabaseUnavailable
from tests.fixtures.net import TcpProxy

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def database_through_proxy(tcp_proxy: Callable[[int], TcpProxy]) -> Iterator[tuple[str, TcpProxy]]:
    """New connections to the test database, as the pool's threads open them, go through a proxy
    the test can stall (connections already open, like this thread's, stay direct)."""
    db_settings = connections.settings["default"]
    proxy = tcp_proxy(int(db_settings.get("PORT") or 5432))
    saved = db_settings["HOST"], db_settings["PORT"]
    db_settings["HOST"], db_settings["PORT"] = "127.0.0.1", proxy.port
    yield "default", proxy
    db_settings["HOST"], db_settings["PORT"] = saved


def select_one(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")
        (value,) = cursor.fetchone()
    return int(value)


def test_a_call_to_a_stalled_database_gives_up_within_its_timeout(
    database_through_proxy: tuple[str, TcpProxy],
) -> None:
    alias, proxy = database_through_proxy
    db = BoundedDatabase(threads=2, timeout=0.5, retry_seconds=1.0, alias=alias)

    async def scenario() -> tuple[int, float, float, int]:
        # Given a pool with an open connection through the proxy
        assert await db.call(lambda: select_one(alias)) == 1
        # When the database stalls
        proxy.stall()
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            await db.call(lambda: select_one(alias))
        gave_up = time.monotonic() - started
        # Then the next call, while it is known to be stalled, fails at once
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            await db.call(lambda: select_one(alias))
        failed_fast = time.monotonic() - started
        # And once it answers again and the pause is over, calls work
        proxy.restore()
        await asyncio.sleep(1.1)
        answer = await db.call(lambda: select_one(alias))
        await db.aclose()
        return 1, gave_up, failed_fast, answer

    _, gave_up, failed_fast, answer = asyncio.run(scenario())

    assert 0.5 <= gave_up < 1.5
    assert failed_fast < 0.05
    assert answer == 1


def test_a_thread_stuck_on_a_silent_connection_is_cut_loose_while_the_database_stays_silent(
    database_through_proxy: tuple[str, TcpProxy],
) -> None:
    alias, proxy = database_through_proxy
    db = BoundedDatabase(threads=1, timeout=0.5, retry_seconds=0.1, alias=alias)

    async def scenario() -> tuple[int, int, str]:
        # Given the pool's only thread with an open connection through the proxy
        assert await db.call(lambda: select_one(alias)) == 1
        # When the database stalls and a call is abandoned
        proxy.stall()
        with pytest.raises(DatabaseUnavailable):
            await db.call(lambda: select_one(alias))
        stuck_at_once = db.stuck
        # Then the thread comes back though the database is still silent (its socket was shut down)
        deadline = time.monotonic() + 3
        while db.stuck and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stuck_later = db.stuck
        # And that thread, the only one, is free to make the next call (which meets the stall too)
        await asyncio.sleep(0.2)
        try:
            await db.call(lambda: select_one(alias))
            outcome = "answered"
        except DatabaseUnavailable as exc:
            outcome = str(exc)
        proxy.restore()
        await db.aclose()
        return stuck_at_once, stuck_later, outcome

    stuck_at_once, stuck_later, outcome = asyncio.run(scenario())

    assert stuck_at_once in (0, 1)
    assert stuck_later == 0, "psycopg no longer lets dbcalls cut a stuck call loose: see pipelines/dbcalls.py"
    assert "did not answer within" in outcome  # it waited for the database, not for a thread
