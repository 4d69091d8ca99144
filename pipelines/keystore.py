"""The key store: what the hot path asks to authenticate a request, answered from memory.

``await keystore.resolve(token)`` returns an immutable ``PipelineSnapshot`` for a ``dk_`` pipeline
key or a ``wh_`` webhook source, ``None`` when the token is unknown or revoked, and raises
``KeyStoreUnavailable`` when it cannot tell (a token it has never seen while the database is down).

Tiers: process memory -> Redis (async) -> PostgreSQL (a bounded thread hop, on a miss only).

- Known tokens: a bounded LRU of snapshots. A cached answer is served at once; past its freshness
  it is still served while a background task revalidates it against PostgreSQL, the source of
  truth, and rewrites (or deletes) the Redis record, so a missed invalidation heals within
  ``KEYSTORE_FRESH_SECONDS``.
- Unknown tokens: the process holds the directory, the set of every valid token (active keys,
  enabled webhook sources: few), loaded from PostgreSQL and kept current by the same invalidation
  channel and freshness rules. A well-formed token not in it is refused from memory, with no SQL and
  no Redis. Until the directory can be loaded, a never-seen token goes to Redis and PostgreSQL, and
  is answered 503 when they cannot tell.
- Every Redis and database call on the request path has a deadline, and a never-seen token's whole
  lookup is bounded by ``LOOKUP_DEADLINE_SECONDS``: a stalled peer gets a 503, not a hung request.

Changes arrive through Redis pub/sub (pipelines.invalidation) and evict at once. A generation
counter in Redis keeps a slow loader from writing back a record older than a change.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any, TypeVar

import redis.asyncio as aioredis
from django.conf import settings
from django.db import DatabaseError

from pipelines import crypto, tokens
from pipelines.dbcalls import BoundedDatabase
from pipelines.invalidation import CHANNEL, GENERATION_KEY, RECORD_PREFIX, RECORD_TTL_SECONDS
from pipelines.selectors import pipeline_record, valid_tokens

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Set the record only if no change was published since the loader read the generation.
_SET_IF_GENERATION = """
if (redis.call('GET', KEYS[1]) or '0') == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""

# Deadlines. A never-seen token costs at most: the channel's first subscription (0.5) + the
# directory's load (2) + one Redis read (0.5) + one database read, which fails at once after the
# directory's load timed out. LOOKUP_DEADLINE_SECONDS caps the sum under the 5 s the SPEC allows.
LOOKUP_DEADLINE_SECONDS = 4.5
REDIS_TIMEOUT_SECONDS = 0.5
DB_TIMEOUT_SECONDS = 2.0
DB_RETRY_SECONDS = 2.0
LISTENER_START_WAIT = 0.5

REDIS_RETRY_SECONDS = 2.0
REFRESH_RETRY_SECONDS = 1.0
# A directory past its freshness is still trusted this long while it reloads.
DIRECTORY_GRACE_SECONDS = 10.0
DIRECTORY_RETRY_SECONDS = 2.0
# Without the invalidation channel, nobody announces new keys: reload the directory this often.
DIRECTORY_RELOAD_WITHOUT_CHANNEL_SECONDS = 5.0


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
    loaded_at: float
    refreshing: bool = False


def _not_counted(tier: str, result: str) -> None:
    return None


# Counts each lookup by tier (memory, redis, database) and result (hit, miss, unknown, error):
# ingestion.lifecycle sets it to metrics.keystore_lookup, so pipelines/ imports nothing of ingestion/.
count_lookup: Callable[[str, str], None] = _not_counted


class KeyStore:
    def __init__(
        self,
        *,
        redis_url: str = "",
        fresh_seconds: float = 60.0,
        negative_seconds: float = 30.0,
        max_entries: int = 10_000,
        db_threads: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis_url = redis_url
        self._fresh_seconds = fresh_seconds
        self._negative_seconds = negative_seconds
        self._max_entries = max_entries
        self._clock = clock
        # Least recently used first; both known and (while the directory is missing) unknown tokens.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[PipelineSnapshot | None]] = {}
        self._epoch = 0
        self._db = BoundedDatabase(
            threads=db_threads, timeout=DB_TIMEOUT_SECONDS, retry_seconds=DB_RETRY_SECONDS, name="keystore-db"
        )
        self._redis: aioredis.Redis | None = None
        self._redis_down_until = 0.0
        self._listener: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.subscribed = asyncio.Event() if redis_url else None
        # The directory: every valid token, or None until it has been loaded once.
        self._directory: set[str] | None = None
        self._directory_trusted_until = 0.0
        self._directory_reload_at = 0.0
        self._directory_retry_at = 0.0
        self._directory_load: asyncio.Task[bool] | None = None
        # Tokens named by an invalidation since the directory was read (token -> epoch of the message):
        # their membership is asked of Redis and the database, not of the directory.
        self._unsure: dict[str, int] = {}

    # -- the hot path -------------------------------------------------------------------------

    async def resolve(self, token: str) -> PipelineSnapshot | None:
        if not tokens.looks_like_lookup_token(token):
            return None
        entry = self._entries.get(token)
        if entry is not None:
            self._entries.move_to_end(token)
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
        if self._refused_by_directory(token):
            count_lookup("memory", "unknown")
            return None  # refused from memory: no Redis, no SQL, no timer
        count_lookup("memory", "miss")
        try:
            async with asyncio.timeout(LOOKUP_DEADLINE_SECONDS):
                return await self._resolve_unseen(token)
        except TimeoutError:
            logger.warning("key lookup gave up after %.1f s", LOOKUP_DEADLINE_SECONDS)
            raise KeyStoreUnavailable("configuration lookup timed out") from None

    async def _resolve_unseen(self, token: str) -> PipelineSnapshot | None:
        if self._redis_url and self._listener is None:
            await self._start_listener()
        directory = await self._trusted_directory()
        if directory is not None and token not in directory and token not in self._unsure:
            return None  # refused from memory: no Redis, no SQL
        return await self._load_once(token)

    # -- the directory of valid tokens ----------------------------------------------------------

    def _refused_by_directory(self, token: str) -> bool:
        """True when the directory, still trusted, does not list the token (and no change about it
        is pending). Past its freshness it keeps answering while a reload runs in the background."""
        directory = self._directory
        if directory is None or token in directory or token in self._unsure:
            return False
        now = self._clock()
        if now >= self._directory_trusted_until:
            return False
        if now >= self._directory_reload_at and self._directory_load is None:
            self._directory_load = self._spawn(self._reload_directory())
        return True

    async def _trusted_directory(self) -> set[str] | None:
        """The directory if it may refuse a token; loads it first when it is missing or too old."""
        now = self._clock()
        if self._directory is not None and now < self._directory_trusted_until:
            if now >= self._directory_reload_at and self._directory_load is None:
                self._directory_load = self._spawn(self._reload_directory())
            return self._directory
        if now < self._directory_retry_at:
            return None  # the last load failed a moment ago: do not queue on it again
        if self._directory_load is None:
            self._directory_load = self._spawn(self._reload_directory())
        loaded = await asyncio.shield(self._directory_load)
        return self._directory if loaded else None

    async def _reload_directory(self) -> bool:
        epoch, started = self._epoch, self._clock()
        try:
            try:
                valid = await self._db.call(valid_tokens)
            except DatabaseError as exc:
                logger.warning("could not load the key directory, retrying: %s", exc)
                self._directory_retry_at = self._clock() + DIRECTORY_RETRY_SECONDS
                return False
            self._unsure = {token: e for token, e in self._unsure.items() if e > epoch}
            for token, entry in list(self._entries.items()):
                if entry.loaded_at >= started:  # looked up after the directory was read: it is newer
                    if entry.snapshot is not None:
                        valid.add(token)
                    else:
                        valid.discard(token)
                elif (entry.snapshot is not None) != (token in valid) and token not in self._unsure:
                    del self._entries[token]  # e.g. a revocation whose message was lost
            self._directory = valid
            self._directory_trusted_until = started + self._fresh_seconds + DIRECTORY_GRACE_SECONDS
            self._directory_reload_at = started + self._directory_interval()
            return True
        finally:
            self._directory_load = None

    def _directory_interval(self) -> float:
        if self.subscribed is not None and not self.subscribed.is_set():
            return min(self._fresh_seconds, DIRECTORY_RELOAD_WITHOUT_CHANNEL_SECONDS)
        return self._fresh_seconds

    def _learn(self, token: str, valid: bool, epoch: int) -> None:
        """What a lookup of one token found, as of ``epoch``: keep the directory in step."""
        if self._directory is not None:
            if valid:
                self._directory.add(token)
            else:
                self._directory.discard(token)
        if token in self._unsure and self._unsure[token] <= epoch:
            del self._unsure[token]

    # -- loading one token ----------------------------------------------------------------------

    async def _load_once(self, token: str) -> PipelineSnapshot | None:
        """Concurrent misses for one token share a single load, which runs to its end even when a
        waiting request gives up (its own calls are bounded)."""
        task = self._inflight.get(token)
        if task is None:
            task = self._spawn(self._load(token))
            self._inflight[token] = task
            task.add_done_callback(partial(self._load_done, token))
        return await asyncio.shield(task)

    def _load_done(self, token: str, task: asyncio.Task[Any]) -> None:
        if self._inflight.get(token) is task:
            del self._inflight[token]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have given up

    async def _load(self, token: str, *, revalidate: bool = False) -> PipelineSnapshot | None:
        """One token from Redis, else the database. ``revalidate`` skips Redis's copy: it is what a
        stale entry was loaded from, and it outlives an invalidation that never reached Redis."""
        epoch = self._epoch
        redis_ok, generation, record = await self._from_redis(token, with_record=not revalidate)
        if record is None:
            record = await self._from_db(token)
            if redis_ok:
                await self._to_redis(token, generation, record)
        snapshot = snapshot_from_record(record) if record is not None else None
        ttl = self._fresh_seconds if snapshot is not None else self._negative_seconds
        now = self._clock()
        # A change published while we loaded may predate what we read: keep it, but revalidate.
        fresh_until = now + ttl if epoch == self._epoch else 0.0
        self._entries[token] = _Entry(snapshot=snapshot, fresh_until=fresh_until, loaded_at=now)
        self._entries.move_to_end(token)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        self._learn(token, snapshot is not None, epoch)
        return snapshot

    async def _from_db(self, token: str) -> dict[str, Any] | None:
        try:
            record = await self._db.call(partial(pipeline_record, token))
        except DatabaseError as exc:
            count_lookup("database", "error")
            logger.warning("database unavailable for key lookup: %s", exc)
            raise KeyStoreUnavailable("configuration database unavailable") from exc
        count_lookup("database", "hit" if record is not None else "unknown")
        return record

    async def _refresh(self, token: str) -> None:
        try:
            await self._load(token, revalidate=True)
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
                self._redis_url,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                health_check_interval=10,
            )
        return self._redis

    async def _redis_call(self, call: Callable[[aioredis.Redis], Awaitable[Any]]) -> tuple[bool, Any]:
        """(answered, result): one Redis command, bounded whatever the socket does."""
        client = self._client()
        if client is None:
            return False, None
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                return True, await call(client)
        except (aioredis.RedisError, OSError, TimeoutError) as exc:
            logger.warning("redis unavailable for key lookup: %r", exc)
            self._redis_down_until = self._clock() + REDIS_RETRY_SECONDS
            return False, None

    async def _from_redis(self, token: str, *, with_record: bool) -> tuple[bool, str, dict[str, Any] | None]:
        """(redis answered, generation, record or None)."""
        if not self._redis_url:
            return True, "0", None
        if with_record:
            ok, values = await self._redis_call(lambda c: c.mget(GENERATION_KEY, RECORD_PREFIX + token))
            generation, raw = values if ok and values else (None, None)
            count_lookup("redis", ("hit" if raw else "miss") if ok else "error")
        else:
            ok, generation = await self._redis_call(lambda c: c.get(GENERATION_KEY))
            raw = None
        gen = (generation.decode() if isinstance(generation, bytes) else str(generation)) if generation else "0"
        return ok, gen, (json.loads(raw) if raw else None)

    async def _to_redis(self, token: str, generation: str, record: dict[str, Any] | None) -> None:
        if record is None:
            # Gone from the database: drop any copy a missed invalidation left (deleting is always safe).
            await self._redis_call(lambda c: c.delete(RECORD_PREFIX + token))
            return
        payload = json.dumps(record)
        await self._redis_call(
            lambda c: c.eval(
                _SET_IF_GENERATION, 2, GENERATION_KEY, RECORD_PREFIX + token, generation, payload, RECORD_TTL_SECONDS
            )
        )

    # -- invalidation -------------------------------------------------------------------------

    def invalidate(self, tokens_: list[str]) -> None:
        self._epoch += 1
        for token in tokens_:
            self._entries.pop(token, None)
            self._unsure[token] = self._epoch
        if len(self._unsure) > self._max_entries:
            # More changes than we track one by one: stop trusting the directory until it reloads.
            self._unsure.clear()
            self._directory_trusted_until = 0.0

    def _mark_all_stale(self) -> None:
        """Whatever changed while we were not listening is unknown: revalidate everything."""
        self._epoch += 1
        for entry in self._entries.values():
            entry.fresh_until = 0.0
        self._directory_trusted_until = 0.0

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
            client = aioredis.Redis.from_url(
                self._redis_url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, health_check_interval=5
            )
            try:
                async with client.pubsub() as pubsub:
                    async with asyncio.timeout(5.0):  # a stalled Redis never confirms: try again
                        await pubsub.subscribe(CHANNEL)
                        while (await pubsub.get_message(timeout=1.0)) is None:
                            pass
                    if lost:
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
                logger.warning("keystore lost its invalidation channel, retrying: %r", exc)
                lost = True
                if self.subscribed is not None:
                    self.subscribed.clear()
                await asyncio.sleep(1.0)
            finally:
                await client.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- introspection and shutdown -----------------------------------------------------------

    def sizes(self) -> dict[str, int]:
        """What this process holds: cached answers, and valid tokens in the directory (-1: not loaded)."""
        return {
            "entries": len(self._entries),
            "directory": -1 if self._directory is None else len(self._directory),
        }

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
        await self._db.aclose()


_default: KeyStore | None = None


def get_keystore() -> KeyStore:
    """The process's key store (one per gateway process)."""
    global _default
    if _default is None:
        _default = KeyStore(
            redis_url=settings.REDIS_URL,
            fresh_seconds=settings.KEYSTORE_FRESH_SECONDS,
            negative_seconds=settings.KEYSTORE_NEGATIVE_SECONDS,
            max_entries=settings.KEYSTORE_MAX_ENTRIES,
            db_threads=settings.KEYSTORE_DB_THREADS,
        )
    return _default
