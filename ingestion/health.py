"""Liveness and readiness.

Readiness answers one question: can this process take events? It can while Kafka takes them or the
spool can (ingestion.delivery), so it is ``200`` with each dependency reported, PostgreSQL and Redis
included: with either down, keys already known keep working from memory, so they are ``degraded``,
not a reason to be pulled from the load balancer. It is ``503`` only when events cannot be taken:
the spool full (or failing) while it must be used, or the process draining after SIGTERM.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpResponse

from ingestion import metrics
from ingestion.answers import json_response
from ingestion.delivery import get_delivery
from ingestion.lifecycle import InFlight
from ingestion.publisher import get_publisher
from ingestion.redis_pipe import get_redis_pipe
from pipelines.dbcalls import BoundedDatabase

CHECK_TIMEOUT = 2.0
# A thread of its own for the database check, bounded: a stalled PostgreSQL holds it, not others.
_database_check = BoundedDatabase(threads=1, timeout=CHECK_TIMEOUT, retry_seconds=1.0, name="readyz-db")


def liveness() -> HttpResponse:
    return json_response({"status": "ok"})


def _select_one() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _database() -> str:
    await _database_check.call(_select_one)
    return "ok"


async def _redis() -> str:
    pipe = get_redis_pipe()
    if pipe is None:
        return "not configured"
    [pong] = await pipe.call([("PING",)])
    if isinstance(pong, Exception):
        raise pong
    return "ok"


async def _kafka() -> str:
    publisher = get_publisher()
    await asyncio.to_thread(publisher.check, 1.5)
    return "ok" if publisher.reachable else "recovering"


async def _status(check: Callable[[], Awaitable[str]], down: str) -> dict[str, Any]:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return {"status": await check()}
    except Exception as exc:
        return {"status": down, "error": str(exc)[:200] or type(exc).__name__}


async def readiness() -> HttpResponse:
    if InFlight.draining:
        metrics.ready(False)
        return json_response({"status": "draining"}, status=503)
    delivery = get_delivery()
    database, redis, kafka = await asyncio.gather(
        _status(_database, "degraded"), _status(_redis, "degraded"), _status(_kafka, "down")
    )
    kafka["producersReplaced"] = delivery.publisher.recreated
    spool = delivery.spool
    spool_state = {
        "status": "ok",
        "depth": spool.depth,
        "bytes": spool.own.bytes + spool.others_bytes(),
        "maxBytes": settings.SPOOL_MAX_BYTES,
        "oldestAgeSeconds": round(spool.oldest_age_seconds(), 3),
        "mode": "spooling" if delivery.spooling else "direct",
    }
    spool_full = spool.full()
    if spool_full:
        spool_state["status"] = "full"
    kafka_takes_events = kafka["status"] == "ok" and not delivery.spooling
    ready = not spool_full or kafka_takes_events
    metrics.ready(ready)  # gateway_ready: also refreshed every 15 s by ingestion.monitor
    checks = {"database": database, "redis": redis, "kafka": kafka, "spool": spool_state}
    return json_response({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
