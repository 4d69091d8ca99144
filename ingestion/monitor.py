"""A small periodic task on each gateway process's event loop, for the operators' gauges.

Every half second it adds the request path's tallies to prometheus-client (ingestion.metrics.flush),
measures how late the loop ran its timer (``gateway_event_loop_lag_seconds``:
the worst of the last ~10 s, so a scrape every 15 s still sees a spike), samples the producer's
local queue (``gateway_kafka_queue_depth``) and the process's resident memory; every 15 s it runs
the readiness check, so ``gateway_ready`` is current even where nothing polls /readyz.

Started once per process by ``ingestion.lifecycle`` when daphne's loop runs; nothing on the request
path waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ingestion import metrics

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 0.5
LAG_WINDOW_SAMPLES = 20
READY_EVERY_SECONDS = 15.0

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_task: asyncio.Task[None] | None = None


def resident_bytes() -> int:
    """This process's resident set (Linux /proc; 0 elsewhere). A procfs read never waits on a disk."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


def start(
    *,
    queue_depth: Callable[[], int],
    check_ready: Callable[[], Awaitable[Any]],
    interval: float = INTERVAL_SECONDS,
) -> asyncio.Task[None]:
    """Start the task on the running loop (once per process); returns it."""
    global _task
    if _task is None or _task.done():
        _task = asyncio.get_running_loop().create_task(
            run(queue_depth=queue_depth, check_ready=check_ready, interval=interval), name="gateway-monitor"
        )
    return _task


async def run(
    *,
    queue_depth: Callable[[], int],
    check_ready: Callable[[], Awaitable[Any]],
    interval: float = INTERVAL_SECONDS,
    ready_every: float = READY_EVERY_SECONDS,
) -> None:
    loop = asyncio.get_running_loop()
    recent: deque[float] = deque(maxlen=LAG_WINDOW_SAMPLES)
    checking: asyncio.Task[Any] | None = None
    next_ready_check = loop.time()
    while True:
        if loop.time() >= next_ready_check and (checking is None or checking.done()):
            # Its own task: the check waits on PostgreSQL, Redis and Kafka (up to 2 s each, off the
            # loop), and the lag samples must go on meanwhile.
            checking = loop.create_task(_check(check_ready), name="gateway-monitor-ready")
            next_ready_check = loop.time() + ready_every
        before = loop.time()
        await asyncio.sleep(interval)
        recent.append(max(0.0, loop.time() - before - interval))
        try:
            depth = queue_depth()
        except Exception:  # a sampler must not stop the monitor
            logger.exception("could not sample the Kafka queue depth")
            depth = 0
        metrics.loop_sample(lag_seconds=max(recent), queue_depth=depth, resident_bytes=resident_bytes())
        metrics.flush()  # the request path's tallies, into prometheus-client


async def _check(check_ready: Callable[[], Awaitable[Any]]) -> None:
    try:
        await check_ready()
    except Exception:
        logger.exception("the periodic readiness check failed")
        metrics.ready(False)
