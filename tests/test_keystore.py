"""The key store in this process, against the real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from pipelines import services
from pipelines.keystore import KeyStore, KeyStoreUnavailable
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


def test_key_cached_in_redis_resolves_in_a_new_process_without_the_database(
    pipeline: services.PipelineCreated,
) -> None:
    warm = KeyStore(redis_url=settings.REDIS_URL)
    cold = KeyStore(redis_url=settings.REDIS_URL)  # another process's empty memory

    async def scenario() -> tuple[Any, int]:
        await warm.resolve(pipeline.pipeline_key)
        with count_queries() as lookup:
            snapshot = await cold.resolve(pipeline.pipeline_key)
        await warm.aclose()
        await cold.aclose()
        return snapshot, lookup.count

    snapshot, queries = run(scenario)

    assert snapshot is not None and snapshot.pipeline_id == pipeline.pipeline.id
    assert queries == 0


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


def test_unknown_key_is_negative_cached(transactional_db: None) -> None:
    store = KeyStore(redis_url=settings.REDIS_URL)
    unknown = random_key()

    async def scenario() -> tuple[Any, Any, int, int]:
        with count_queries() as first_lookup:
            first = await store.resolve(unknown)
        with count_queries() as second_lookup:
            second = await store.resolve(unknown)
        await store.aclose()
        return first, second, first_lookup.count, second_lookup.count

    first, second, first_queries, second_queries = run(scenario)

    assert first is None and second is None
    assert first_queries > 0
    assert second_queries == 0


def test_malformed_key_never_reaches_the_database(transactional_db: None) -> None:
    store = KeyStore(redis_url=settings.REDIS_URL)

    async def scenario() -> tuple[Any, int]:
        with count_queries() as lookup:
            result = await store.resolve("not-a-key'; DROP TABLE x;--")
        await store.aclose()
        return result, lookup.count

    assert run(scenario) == (None, 0)


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


def test_with_redis_unreachable_known_keys_resolve_and_unknown_ones_are_unavailable(
    pipeline: services.PipelineCreated, tcp_proxy: Callable[[int], TcpProxy]
) -> None:
    proxy = tcp_proxy(redis_port())
    store = KeyStore(redis_url=f"redis://127.0.0.1:{proxy.port}/{redis_db()}", fresh_seconds=0.0)

    async def scenario() -> tuple[Any, Any, BaseException | None]:
        warm = await store.resolve(pipeline.pipeline_key)
        proxy.cut()
        known = await store.resolve(pipeline.pipeline_key)
        await asyncio.sleep(0.2)  # let the background revalidation fail against the dead Redis
        known_again = await store.resolve(pipeline.pipeline_key)
        try:
            await store.resolve(random_key())
        except KeyStoreUnavailable as exc:
            error: BaseException | None = exc
        else:
            error = None
        await store.aclose()
        return warm, (known, known_again), error

    warm, known, error = run(scenario)

    assert warm is not None
    assert known == (warm, warm)
    assert isinstance(error, KeyStoreUnavailable)


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
