"""What refusing unknown keys costs the key store: SQL, PostgreSQL transactions, Redis commands, RSS.

    DATABASE_URL=postgres://… REDIS_URL=redis://…/N .venv/bin/python bench/unknown_keys.py [--keys 20000]

In-process, against the PostgreSQL and Redis the environment names (the database must be migrated;
the script adds one pipeline). It starts a key store with one valid key looked up, then presents
``--keys`` distinct well-formed ``dk_`` keys nobody issued, one after another, and prints what they
cost: ORM statements, PostgreSQL transactions (pg_stat_database), Redis commands sent, the growth of
the process's RSS and the time taken. Issue 11 measured 39,751 transactions for 20,000 keys.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signal_gateway.settings")

import django  # noqa: E402

django.setup()

import redis.asyncio as aioredis  # noqa: E402
from asgiref.sync import sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from pipelines import services  # noqa: E402
from pipelines.keystore import KeyStore, KeyStoreUnavailable  # noqa: E402
from tests.fixtures.queries import count_queries  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def transactions() -> int:
    """Commits and rollbacks PostgreSQL has counted for this database (its statistics lag ~1 s)."""
    time.sleep(1.5)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
        (count,) = cursor.fetchone()
    connection.close()
    return int(count)


async def measure(keys: list[str], valid_key: str) -> dict[str, Any]:
    store = KeyStore(
        redis_url=settings.REDIS_URL,
        fresh_seconds=settings.KEYSTORE_FRESH_SECONDS,
        negative_seconds=settings.KEYSTORE_NEGATIVE_SECONDS,
    )
    await store.resolve(valid_key)
    # An idle PostgreSQL backend reports its transactions up to 10 s late: let the warm-up's land.
    await asyncio.sleep(11)
    sent: list[object] = []
    real = aioredis.Redis.execute_command

    async def counting(self: aioredis.Redis, *args: Any, **options: Any) -> Any:
        sent.append(args[0])
        return await real(self, *args, **options)

    # Reading the statistics is itself a few transactions: measure that, to leave it out.
    overhead = -(await sync_to_async(transactions)())
    xacts_before = await sync_to_async(transactions)()
    overhead += xacts_before
    gc.collect()
    rss_before = rss_bytes()
    refused = unavailable = 0
    started = time.monotonic()
    aioredis.Redis.execute_command = counting  # type: ignore[method-assign]
    try:
        with count_queries() as queries:
            for key in keys:
                try:
                    refused += await store.resolve(key) is None
                except KeyStoreUnavailable:
                    unavailable += 1
    finally:
        aioredis.Redis.execute_command = real  # type: ignore[method-assign]
    elapsed = time.monotonic() - started
    gc.collect()
    rss_growth = rss_bytes() - rss_before
    await store.aclose()
    xacts_after = await sync_to_async(transactions)()
    return {
        "keys": len(keys),
        "refused": refused,
        "unavailable": unavailable,
        "sql_statements": queries.count,
        "postgres_transactions": xacts_after - xacts_before - overhead,
        "redis_commands": len(sent),
        "rss_growth_mb": round(rss_growth / 2**20, 1),
        "seconds": round(elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=20_000)
    args = parser.parse_args()
    valid_key = services.pipeline_create(name=f"bench unknown keys {secrets.token_hex(4)}").pipeline_key
    connection.close()
    keys = ["dk_" + secrets.token_urlsafe(24) for _ in range(args.keys)]
    print(json.dumps(asyncio.run(measure(keys, valid_key))))


if __name__ == "__main__":
    main()
