"""What a Redis round trip costs the event loop: redis-py's asyncio client against ingestion.redis_pipe
(hiredis packing and parsing over one connection), for 1, 10 and 100 commands per round trip.

    .venv/bin/python bench/redis_cost.py [--url redis://127.0.0.1:6379/15]

Prints the event-loop thread's CPU per round trip and per command, both measured in the same run.
The commands are the dedup marks' ``SET key p NX GET EX 60``; the keys are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis  # noqa: E402

from ingestion.redis_pipe import RedisPipe  # noqa: E402

SIZES = (1, 10, 100)


def rounds(size: int) -> int:
    return 2000 if size < 100 else 300


async def redis_py(url: str) -> dict[int, float]:
    client = aioredis.Redis.from_url(url)
    await client.ping()
    out = {}
    for size in SIZES:
        started = time.thread_time()
        for n in range(rounds(size)):
            pipe = client.pipeline(transaction=False)
            for i in range(size):
                pipe.set(b"sg:bench:py:%d:%d" % (n, i), b"p", nx=True, get=True, ex=60)
            await pipe.execute()
        out[size] = (time.thread_time() - started) / rounds(size)
    await client.aclose()
    return out


async def redis_pipe(url: str) -> dict[int, float]:
    pipe = RedisPipe(url, timeout=5.0)
    await pipe.call([("PING",)])
    out = {}
    for size in SIZES:
        started = time.thread_time()
        for n in range(rounds(size)):
            await pipe.call([("SET", b"sg:bench:rp:%d:%d" % (n, i), b"p", "NX", "GET", "EX", 60) for i in range(size)])
        out[size] = (time.thread_time() - started) / rounds(size)
    await pipe.aclose()
    return out


async def main(url: str) -> None:
    baseline = await redis_py(url)
    ours = await redis_pipe(url)
    client = aioredis.Redis.from_url(url)
    async for key in client.scan_iter("sg:bench:*", count=1000):
        await client.delete(key)
    await client.aclose()
    print(
        f"{'commands per round trip':>24} | {'redis-py us/trip':>16} {'us/cmd':>7} | {'redis_pipe us/trip':>18} {'us/cmd':>7} | ratio"
    )
    for size in SIZES:
        a, b = baseline[size] * 1e6, ours[size] * 1e6
        print(f"{size:>24} | {a:>16.1f} {a / size:>7.2f} | {b:>18.1f} {b / size:>7.2f} | {a / b:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/15")
    asyncio.run(main(parser.parse_args().url))
