"""The ingestion path, driven in-process: with the key cached, a request makes no thread hop, no SQL
query and no Redis command (issue: a lean request path)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import override_settings

from ingestion import dedup, delivery, ratelimit, redis_pipe
from ingestion import publisher as publisher_module
from ingestion.handler import IngestionHandler
from pipelines import keystore as keystore_module
from pipelines import services
from tests.fixtures.queries import count_queries


@pytest.fixture
def fresh_singletons(kafka_bootstrap: str, tmp_path: Path) -> Iterator[None]:
    """This process's publisher, key store, Redis pipe, limiter, dedup and delivery (with a spool of
    its own), pointed at the session's broker, and torn down after."""
    modules = (publisher_module, keystore_module, redis_pipe, ratelimit, dedup, delivery)
    with override_settings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, SPOOL_DIR=str(tmp_path / "spool")):
        for module in modules:
            module._default = None  # type: ignore[attr-defined]
        yield
        if delivery._default is not None:
            delivery._default.spool.close()
        if publisher_module._default is not None:
            publisher_module._default.close(timeout=5)
        for module in modules:
            module._default = None  # type: ignore[attr-defined]


def scope(key: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/t",
        "raw_path": b"/v1/t",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", b"text/plain"),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
    }


async def post_track(app: IngestionHandler, key: str) -> int:
    body = json.dumps({"event": "Hot Path", "anonymousId": "visitor-1"}).encode()
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope(key), receive, send)
    return statuses[0]


def test_a_cached_key_costs_no_thread_hop_no_query_and_no_redis_command(
    pipeline: services.PipelineCreated, fresh_singletons: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = IngestionHandler()
    hops: list[object] = []
    redis_commands: list[object] = []
    real_run_in_executor = asyncio.BaseEventLoop.run_in_executor
    real_execute = aioredis.Redis.execute_command

    def counting_run_in_executor(self: asyncio.BaseEventLoop, executor: Any, func: Any, *args: Any) -> Any:
        hops.append(func)
        return real_run_in_executor(self, executor, func, *args)

    async def counting_execute(self: aioredis.Redis, *args: Any, **options: Any) -> Any:
        redis_commands.append(args[0])
        return await real_execute(self, *args, **options)

    async def scenario() -> tuple[tuple[int, int, int, int], list[int], int, tuple[int, int]]:
        monkeypatch.setattr(asyncio.BaseEventLoop, "run_in_executor", counting_run_in_executor)
        monkeypatch.setattr(aioredis.Redis, "execute_command", counting_execute)
        with count_queries() as warm_queries:
            first = await post_track(app, pipeline.pipeline_key)  # the miss: Redis, then one hop to SQL
        warm = (first, len(hops), warm_queries.count, len(redis_commands))
        hops.clear()
        redis_commands.clear()
        pipe = redis_pipe.get_redis_pipe()
        assert pipe is not None
        leased = pipe.commands  # the first request leased rate-limit tokens for the next ones
        with count_queries() as queries:
            statuses = [await post_track(app, pipeline.pipeline_key) for _ in range(20)]
        pipe_commands = (leased, pipe.commands - leased)
        monkeypatch.undo()
        await keystore_module.get_keystore().aclose()
        await sync_to_async(connections.close_all)()
        return warm, statuses, queries.count, pipe_commands

    (first, warm_hops, warm_queries, warm_redis), statuses, queries, (leased, hot) = asyncio.run(scenario())

    assert first == 200
    assert warm_hops > 0 and warm_queries > 0 and warm_redis > 0  # the counters do see a miss
    assert statuses == [200] * 20
    assert hops == []
    assert queries == 0
    assert redis_commands == []
    assert leased > 0 and hot == 0  # rate-limit tokens come from a lease, not a round trip per request
