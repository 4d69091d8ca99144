"""The key store: what the hot path asks to authenticate a request, answered from memory.

``await keystore.resolve(token)`` returns an immutable ``PipelineSnapshot`` for a ``dk_`` pipeline
key or a ``wh_`` webhook source, ``None`` when the token is unknown or revoked, and raises
``KeyStoreUnavailable`` when it cannot tell (a never-seen token while Redis or the database is down).

Tiers: process memory -> Redis (async) -> PostgreSQL (one thread hop, on a miss only). A cached
answer is served at once; past its freshness it is still served while a background task
revalidates it. Changes arrive through Redis pub/sub (pipelines.invalidation) and evict at once.
A generation counter in Redis keeps a slow loader from writing back a record older than a change.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, close_old_connections

from pipelines import crypto, tokens
from pipelines.invalidation import CHANNEL, GENERATION_KEY, RECORD_PREFIX, RECORD_TTL_SECONDS
from pipelines.selectors import pipeline_record

logger = logging.getLogger(__name__)

# Set the record only if no change was published since the loader read the generation.
_SET_IF_GENERATION = """
if (redis.call('GET', KEYS[1]) or '0') == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""

REDIS_RETRY_SECONDS = 2.0
REFRESH_RETRY_SECONDS = 1.0
LISTENER_START_WAIT = 1.0


class KeyStoreUnavailable(Exception):
    """The token was never seen and a tier that could know it is down."""


@dataclass(frozen=True, slots=True)
class WebhookSource:
    id: str
    scheme: str
    secret: str
    tolerance_seconds: int
    mapping: Mapping[str, str]
    options: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PipelineSnapshot:
    pipeline_id: str
    enabled: bool
    origins: frozenset[str]
    rate_limit_rps: int
    dedup_enabled: bool
    cookie_domain: str
    signing_secrets: tuple[bytes, ...]
    webhook_sources: Mapping[str, WebhookSource]
    consent_required: bool = False  # missing consent counts as denied
    ip_mode: str = "full"  # full | truncate | drop (Pipeline.IpMode)


def snapshot_from_record(record: Mapping[str, Any]) -> PipelineSnapshot:
    secrets: list[bytes] = []
    for token in record["signing_secrets"]:
        try:
            secrets.append(crypto.decrypt(token).encode())
        except crypto.SecretUnreadable:
            logger.error("pipeline %s has a signing secret no configured key can read", record["pipeline_id"])
    hooks: dict[str, WebhookSource] = {}
    for source_id, hook in record["webhook_sources"].items():
        try:
            secret = crypto.decrypt(hook["secret"]) if hook["secret"] else ""
        except crypto.SecretUnreadable:
            logger.error("webhook source %s has a secret no configured key can read", source_id)
            continue
        hooks[source_id] = WebhookSource(
            id=source_id,
            scheme=hook["scheme"],
            secret=secret,
            tolerance_seconds=int(hook["tolerance_seconds"]),
            mapping=MappingProxyType(dict(hook["mapping"])),
            options=MappingProxyType(dict(hook["options"])),
        )
    return PipelineSnapshot(
        pipeline_id=record["pipeline_id"],
        enabled=bool(record["enabled"]),
        origins=frozenset(record["origins"]),
        rate_limit_rps=int(record["rate_limit_rps"]),
        dedup_enabled=bool(record["dedup_enabled"]),
        cookie_domain=record["cookie_domain"],
        signing_secrets=tuple(secrets),
        webhook_sources=MappingProxyType(hooks),
        # A record cached in Redis by an older version has neither: the defaults are the old behaviour.
        consent_required=bool(record.get("consent_required", False)),
        ip_mode=str(record.get("ip_mode", "full")),
    )


@dataclass(slots=True)
class _Entry:
    snapshot: PipelineSnapshot | None
    fresh_until: float
    refreshing: bool = False


def _not_counted(tier: str, result: str) -> None:
    return None


# Counts each lookup by tier (memory, redis, database) and result (hit, miss, unknown, error):
# ingestion.lifecycle sets it to metrics.keystore_lookup, so pipelines/ imports nothing of ingestion/.
count_lookup: Callable[[str, str], None] = _not_counted


def _load_record_from_db(token: str) -> dict[str, Any] | None:
    # No request signals run on this path, so drop a connection the server closed ourselves.
    close_old_connections()
    return pipeline_record(token)


class KeyStore:
    def __init__(
        self,
        *,
        redis_url: str = "",
        fresh_seconds: float = 60.0,
        negative_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis_url = redis_url
        self._fresh_seconds = fresh_seconds
        self._negative_seconds = negative_seconds
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Future[PipelineSnapshot | None]] = {}
        self._epoch = 0
        self._redis: aioredis.Redis | None = None
        self._redis_down_until = 0.0
        self._listener: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.subscribed = asyncio.Event() if redis_url else None

    # -- the hot path -------------------------------------------------------------------------

    async def resolve(self, token: str) -> PipelineSnapshot | None:
        if not tokens.looks_like_lookup_token(token):
            return None
        if self._redis_url and self._listener is None:
            await self._start_listener()
        entry = self._entries.get(token)
        if entry is not None:
            if self._clock() < entry.fresh_until:
                count_lookup("memory", "hit" if entry.snapshot is not None else "unknown")
                return entry.snapshot
            if entry.snapshot is not None:
                # Serve what we know; a revoke still lands within the freshness window plus one load.
                if not entry.refreshing:
                    entry.refreshing = True
                    self._spawn(self._refresh(token))
                count_lookup("memory", "hit")
                return entry.snapshot
        count_lookup("memory", "miss")
        return await self._load_once(token)

    # -- loading ------------------------------------------------------------------------------

    async def _load_once(self, token: str) -> PipelineSnapshot | None:
        """Concurrent misses for one token share a single load."""
        pending = self._inflight.get(token)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[PipelineSnapshot | None] = asyncio.get_running_loop().create_future()
        self._inflight[token] = future
        try:
            snapshot = await self._load(token)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved when nobody else waits
            raise
        else:
            future.set_result(snapshot)
            return snapshot
        finally:
            del self._inflight[token]

    async def _load(self, token: str) -> PipelineSnapshot | None:
        epoch = self._epoch
        redis_ok, generation, record = await self._from_redis(token)
        if record is None:
            try:
                record = await sync_to_async(_load_record_from_db)(token)
            except DatabaseError as exc:
                count_lookup("database", "error")
                logger.warning("database unavailable for key lookup: %s", exc)
                raise KeyStoreUnavailable("configuration database unavailable") from exc
            count_lookup("database", "hit" if record is not None else "unknown")
            if record is None and not redis_ok:
                # Redis, the tier that carries revocations and new keys, cannot confirm: say so
                # rather than turn away a key we cannot check (a 401 would make SDKs drop events).
                raise KeyStoreUnavailable("configuration cache unavailable")
            if record is not None and redis_ok:
                await self._to_redis(token, generation, record)
        snapshot = snapshot_from_record(record) if record is not None else None
        ttl = self._fresh_seconds if snapshot is not None else self._negative_seconds
        # A change published while we loaded may predate what we read: keep it, but revalidate.
        fresh_until = self._clock() + ttl if epoch == self._epoch else 0.0
        self._entries[token] = _Entry(snapshot=snapshot, fresh_until=fresh_until)
        return snapshot

    async def _refresh(self, token: str) -> None:
        try:
            await self._load(token)
        except Exception as exc:  # keep serving the known answer; try again shortly
            logger.warning("revalidation of a cached key failed, serving it from memory: %s", exc)
            entry = self._entries.get(token)
            if entry is not None:
                entry.fresh_until = self._clock() + REFRESH_RETRY_SECONDS
                entry.refreshing = False

    # -- Redis --------------------------------------------------------------------------------

    def _client(self) -> aioredis.Redis | None:
        if not self._redis_url or self._clock() < self._redis_down_until:
            return None
        if self._redis is None:
            self._redis = aioredis.Redis.from_url(
                self._redis_url, socket_connect_timeout=0.5, socket_timeout=0.5, health_check_interval=10
            )
        return self._redis

    def _redis_failed(self, exc: Exception) -> None:
        logger.warning("redis unavailable for key lookup: %s", exc)
        self._redis_down_until = self._clock() + REDIS_RETRY_SECONDS

    async def _from_redis(self, token: str) -> tuple[bool, str, dict[str, Any] | None]:
        """(redis answered, generation, record or None)."""
        client = self._client()
        if client is None:
            return (not self._redis_url), "0", None
        try:
            generation, raw = await client.mget(GENERATION_KEY, RECORD_PREFIX + token)
        except (aioredis.RedisError, OSError) as exc:
            count_lookup("redis", "error")
            self._redis_failed(exc)
            return False, "0", None
        count_lookup("redis", "hit" if raw else "miss")
        gen = (generation.decode() if isinstance(generation, bytes) else generation) if generation else "0"
        return True, gen, (json.loads(raw) if raw else None)

    async def _to_redis(self, token: str, generation: str, record: dict[str, Any]) -> None:
        client = self._client()
        if client is None:
            return
        try:
            await client.eval(
                _SET_IF_GENERATION,
                2,
                GENERATION_KEY,
                RECORD_PREFIX + token,
                generation,
                json.dumps(record),
                RECORD_TTL_SECONDS,
            )
        except (aioredis.RedisError, OSError) as exc:
            self._redis_failed(exc)

    # -- invalidation -------------------------------------------------------------------------

    def invalidate(self, tokens_: list[str]) -> None:
        self._epoch += 1
        for token in tokens_:
            self._entries.pop(token, None)

    def _mark_all_stale(self) -> None:
        self._epoch += 1
        for entry in self._entries.values():
            entry.fresh_until = 0.0

    async def _start_listener(self) -> None:
        """Subscribe before the first lookup, so nothing loaded can miss its invalidation."""
        self._listener = asyncio.get_running_loop().create_task(self._listen(), name="keystore-invalidation")
        assert self.subscribed is not None
        try:
            await asyncio.wait_for(self.subscribed.wait(), LISTENER_START_WAIT)
        except TimeoutError:
            logger.warning("keystore started without its invalidation channel; entries revalidate on reconnect")

    async def _listen(self) -> None:
        lost = False
        while True:
            client = aioredis.Redis.from_url(self._redis_url, socket_connect_timeout=0.5, health_check_interval=5)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    if lost:
                        # Whatever changed while we were not listening is unknown: revalidate everything.
                        self._mark_all_stale()
                    assert self.subscribed is not None
                    self.subscribed.set()
                    while True:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                        if message and message["type"] == "message":
                            self.invalidate(json.loads(message["data"])["tokens"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("keystore lost its invalidation channel, retrying: %s", exc)
                lost = True
                if self.subscribed is not None:
                    self.subscribed.clear()
                await asyncio.sleep(1.0)
            finally:
                await client.aclose()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except (asyncio.CancelledError, Exception):
                pass
            self._listener = None
        for task in list(self._tasks):
            task.cancel()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


_default: KeyStore | None = None


def get_keystore() -> KeyStore:
    """The process's key store (one per gateway process)."""
    global _default
    if _default is None:
        _default = KeyStore(
            redis_url=settings.REDIS_URL,
            fresh_seconds=settings.KEYSTORE_FRESH_SECONDS,
            negative_seconds=settings.KEYSTORE_NEGATIVE_SECONDS,
        )
    return _default
