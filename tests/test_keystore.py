"""The key store in this process, against the real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from pipelines import services
from pipelines.keystore import KeyStore
from pipelines.models import PipelineKey
from tests.fixtures.net import TcpProxy
from tests.fixtures.queries import count_queries

pytestmark = pytest.mark.django_db(transaction=True)


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    """Run an async scenario; close the DB connection its thread hop opened."""

    async def wrapped() -> Any:
        try:
            return await scenario()
        finally:
            await sync_to_async(connections.close_all)()

    return asyncio.run(wrapped())


def random_key() -> str:
    return "dk_" + secrets.token_urlsafe(24)


def redis_port() -> int:
    return int(settings.REDIS_URL.rsplit(":", 1)[1].split("/")[0])


def redis_db() -> str:
    return settings.REDIS_URL.rsplit("/", 1)[1]


def test_cached_key_resolves_with_zero_database_queries(pipeline: services.PipelineCreated) -> None:
    store = KeyStore(redis_url=settings.REDIS_URL)

    async def scenario() -> tuple[Any, Any, int, int]:
        with count_queries() as first_lookup:
            first = await store.resolve(pipeline.pipeline_key)
        with count_queries() as cached_lookup:
            second = await store.resolve(pipeline.pipeline_key)
        await store.aclose()
        return first, second, first_lookup.count, cached_lookup.count

    first, second, first_queries, cached_queries = run(scenario)

    assert first is not None and first.pipeline_id == pipeline.pipeline.id
    assert second is first
    assert first_queries > 0  # the counter does see the miss
    assert cached_queries == 0


def test_key_cached_in_redis_resolves_in_a_new_process_without_a_lookup_in_the_database(
    pipeline: services.PipelineCreated,
) -> None:
    warm = KeyStore(redis_url=settings.REDIS_URL)
    cold = KeyStore(redis_url=settings.REDIS_URL)  # another process's empty memory

    async def scenario() -> tuple[Any, list[str]]:
        await warm.resolve(pipeline.pipeline_key)
        with count_queries() as lookup:
            snapshot = await cold.resolve(pipeline.pipeline_key)
        await warm.aclose()
        await cold.aclose()
        return snapshot, lookup.statements

    snapshot, statements = run(scenario)

    assert snapshot is not None and snapshot.pipeline_id == pipeline.pipeline.id
    # The new process loads its directory of valid tokens once; the record itself came from Redis.
    assert len(statements) == 1 and " UNION ALL " in statements[0]


def test_snapshot_carries_what_a_request_needs(make_pipeline: Callable[..., services.PipelineCreated]) -> None:
    created = make_pipeline(
        origins=["https://shop.example.com"], rate_limit_rps=50, dedup_enabled=False, cookie_domain="example.com"
    )
    store = KeyStore(redis_url=settings.REDIS_URL)

    async def scenario() -> Any:
        snapshot = await store.resolve(created.pipeline_key)
        await store.aclose()
        return snapshot

    snapshot = run(scenario)

    assert snapshot.enabled is True
    assert snapshot.origins == frozenset({"https://shop.example.com"})
    assert (snapshot.rate_limit_rps, snapshot.dedup_enabled, snapshot.cookie_domain) == (50, False, "example.com")
    assert snapshot.signing_secrets == (created.signing_secret.encode(),)
    with pytest.raises(AttributeError):
        snapshot.enabled = False  # type: ignore[misc]


@contextmanager
def count_redis_commands() -> Iterator[list[object]]:
    """Every command a key store's Redis client sends, whatever connection it uses."""
    sent: list[object] = []
    real = aioredis.Redis.execute_command

    async def counting(self: aioredis.Redis, *args: Any, **options: Any) -> Any:
        sent.append(args[0])
        return await real(self, *args, **options)

    aioredis.Redis.execute_command = counting  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        aioredis.Redis.execute_command = real  # type: ignore[method-assign]


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_twenty_thousand_distinct_unknown_keys_cost_no_sql_no_redis_and_no_memory(
    pipeline: services.PipelineCreated,
) -> None:
    # Given a key store that has started (its directory of valid tokens is loaded)
    store = KeyStore(redis_url=settings.REDIS_URL)
    unknown = [random_key() for _ in range(20_000)] + ["wh_" + secrets.token_urlsafe(12) for _ in range(100)]

    async def scenario() -> tuple[list[Any], int, int, int, dict[str, int]]:
        await store.resolve(pipeline.pipeline_key)
        gc.collect()
        rss_before = rss_bytes()
        # When 20,100 well-formed tokens nobody issued are presented
        with count_queries() as queries, count_redis_commands() as redis_commands:
            answers = [await store.resolve(token) for token in unknown]
        gc.collect()
        rss_growth = rss_bytes() - rss_before
        sizes = store.sizes()
        await store.aclose()
        return answers, queries.count, len(redis_commands), rss_growth, sizes

    answers, queries, redis_commands, rss_growth, sizes = run(scenario)

    # Then each is refused from memory: no SQL statement, no Redis command, nothing kept per key
    assert answers == [None] * len(unknown)
    assert (queries, redis_commands) == (0, 0)
    assert sizes["entries"] == 1  # only the valid key that was looked up
    assert rss_growth < 2 * 1024 * 1024


def test_cached_answers_are_bounded_and_the_least_recently_used_goes_first(
    make_pipeline: Callable[..., services.PipelineCreated],
) -> None:
    # Given a key store that may cache two answers, and three valid keys
    store = KeyStore(redis_url=settings.REDIS_URL, max_entries=2)
    a, b, c = (make_pipeline().pipeline_key for _ in range(3))

    async def scenario() -> tuple[dict[str, int], list[int]]:
        # When a, b, a, c are looked up, and then a, b, b again
        for key in (a, b, a, c):
            await store.resolve(key)
        sizes = store.sizes()
        commands = []
        for key in (a, b, b):
            with count_redis_commands() as sent:
                await store.resolve(key)
            commands.append(len(sent))
        await store.aclose()
        return sizes, commands

    sizes, commands = run(scenario)

    # Then two answers are kept: a was still in memory; b, the least recently used when c came, had
    # been dropped and was read again (from Redis), then kept
    assert sizes["entries"] == 2
    assert commands[0] == 0
    assert commands[1] > 0
    assert commands[2] == 0


def test_malformed_key_never_reaches_the_database_or_redis(transactional_db: None) -> None:
    store = KeyStore(redis_url=settings.REDIS_URL)
    malformed = ["not-a-key'; DROP TABLE x;--", "dk_short", "dk_" + "a" * 65, "wh_" + "é" * 10, "", "dk_" + "\x00" * 20]

    async def scenario() -> tuple[list[Any], int, int]:
        with count_queries() as lookup, count_redis_commands() as redis_commands:
            results = [await store.resolve(token) for token in malformed]
        await store.aclose()
        return results, lookup.count, len(redis_commands)

    assert run(scenario) == ([None] * len(malformed), 0, 0)


def test_key_created_after_a_negative_answer_resolves_within_five_seconds(
    pipeline: services.PipelineCreated,
) -> None:
    store = KeyStore(redis_url=settings.REDIS_URL, negative_seconds=300)
    future_key = random_key()

    async def scenario() -> tuple[Any, Any, float]:
        before = await store.resolve(future_key)
        assert store.subscribed is not None
        await asyncio.wait_for(store.subscribed.wait(), 5)
        await sync_to_async(PipelineKey.objects.create)(key=future_key, pipeline=pipeline.pipeline)
        started = time.monotonic()
        after = None
        while after is None and time.monotonic() - started < 5:
            after = await store.resolve(future_key)
            await asyncio.sleep(0.05)
        await store.aclose()
        return before, after, time.monotonic() - started

    before, after, elapsed = run(scenario)

    assert before is None
    assert after is not None and after.pipeline_id == pipeline.pipeline.id
    assert elapsed < 5


def test_revoked_key_stops_resolving_within_five_seconds(pipeline: services.PipelineCreated) -> None:
    store = KeyStore(redis_url=settings.REDIS_URL)

    async def scenario() -> tuple[Any, Any, float]:
        before = await store.resolve(pipeline.pipeline_key)
        assert store.subscribed is not None
        await asyncio.wait_for(store.subscribed.wait(), 5)
        await sync_to_async(services.key_revoke)(key=pipeline.pipeline_key)
        started = time.monotonic()
        after = before
        while after is not None and time.monotonic() - started < 5:
            await asyncio.sleep(0.05)
            after = await store.resolve(pipeline.pipeline_key)
        await store.aclose()
        return before, after, time.monotonic() - started

    before, after, elapsed = run(scenario)

    assert before is not None
    assert after is None
    assert elapsed < 5


def test_with_redis_unreachable_known_and_new_keys_resolve_and_unknown_ones_are_refused(
    make_pipeline: Callable[..., services.PipelineCreated], tcp_proxy: Callable[[int], TcpProxy]
) -> None:
    proxy = tcp_proxy(redis_port())
    store = KeyStore(redis_url=f"redis://127.0.0.1:{proxy.port}/{redis_db()}", fresh_seconds=0.0)
    known_key, new_key = make_pipeline().pipeline_key, make_pipeline().pipeline_key

    async def scenario() -> tuple[Any, Any, Any, Any]:
        warm = await store.resolve(known_key)
        proxy.cut()
        known = await store.resolve(known_key)
        await asyncio.sleep(0.2)  # let the background revalidation run without Redis
        known_again = await store.resolve(known_key)
        new = await store.resolve(new_key)
        unknown = await store.resolve(random_key())
        await store.aclose()
        return warm, (known, known_again), new, unknown

    warm, known, new, unknown = run(scenario)

    assert warm is not None
    assert known == (warm, warm)
    assert new is not None and new.pipeline_id != warm.pipeline_id  # PostgreSQL is the source of truth
    assert unknown is None  # refused from the directory of valid tokens


def test_redis_coming_back_revalidates_what_was_cached(
    pipeline: services.PipelineCreated, tcp_proxy: Callable[[int], TcpProxy]
) -> None:
    proxy = tcp_proxy(redis_port())
    store = KeyStore(redis_url=f"redis://127.0.0.1:{proxy.port}/{redis_db()}")

    async def scenario() -> Any:
        await store.resolve(pipeline.pipeline_key)
        assert store.subscribed is not None
        await asyncio.wait_for(store.subscribed.wait(), 5)
        proxy.cut()
        # The revocation's message is published while this process cannot hear it.
        await sync_to_async(services.key_revoke)(key=pipeline.pipeline_key)
        proxy.restore()
        started = time.monotonic()
        result = await store.resolve(pipeline.pipeline_key)
        while result is not None and time.monotonic() - started < 8:
            await asyncio.sleep(0.1)
            result = await store.resolve(pipeline.pipeline_key)
        await store.aclose()
        return result

    assert run(scenario) is None
