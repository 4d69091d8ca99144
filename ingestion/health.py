"""Liveness and readiness: is the process up; can it reach PostgreSQL, Redis and Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection
from django.http import HttpResponse

from ingestion import metrics
from ingestion.answers import json_response
from ingestion.lifecycle import InFlight
from ingestion.publisher import get_publisher

CHECK_TIMEOUT = 2.0


def liveness() -> HttpResponse:
    return json_response({"status": "ok"})


def _database() -> None:
    close_old_connections()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _redis() -> str:
    if not settings.REDIS_URL:
        return "not configured"
    client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        await client.ping()
    finally:
        await client.aclose()
    return "ok"


async def _kafka() -> None:
    await asyncio.to_thread(get_publisher().check, 1.5)


async def _status(check: Callable[[], Awaitable[object]]) -> dict[str, str]:
    try:
        result = await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except Exception as exc:
        return {"status": "down", "error": str(exc)[:200] or type(exc).__name__}
    return {"status": result if isinstance(result, str) else "ok"}


async def readiness() -> HttpResponse:
    if InFlight.draining:
        metrics.ready(False)
        return json_response({"status": "draining"}, status=503)
    names = ("database", "redis", "kafka")
    results = await asyncio.gather(
        _status(sync_to_async(_database, thread_sensitive=False)), _status(_redis), _status(_kafka)
    )
    checks = dict(zip(names, results, strict=True))
    ready = all(c["status"] != "down" for c in checks.values())
    metrics.ready(ready)  # gateway_ready: also refreshed every 15 s by ingestion.monitor
    return json_response({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
