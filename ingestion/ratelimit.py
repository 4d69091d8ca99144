"""Per-pipeline rate limits (SPEC §6): ``rate_limit_rps`` events per second with a burst of one
second's worth, enforced across every gateway process.

The pipeline's bucket lives in Redis (``LEASE_SCRIPT``: a token bucket refilled by Redis's own
clock, so no two processes' clocks need agree). A process never asks it per request: it *leases*
tokens, a tenth of a second's worth at a time, into a local bucket, and requests take from that.
When the local bucket runs low a new lease is asked for in the background, before it is empty; a
request only waits for Redis when the local bucket is empty and cannot cover it (a pipeline of a few
events per second, or a burst), and then for one round trip shared with every other request in
flight (ingestion.redis_pipe). Leased tokens not used within ``LEASE_TTL_SECONDS`` lapse, so no
process hoards what another could use; all processes together never admit more than the bucket
gives out. What does not fit is refused: ``429 RATE_LIMITED`` with ``Retry-After`` in whole seconds
(a batch is admitted or refused whole).

With Redis down, or without REDIS_URL (the demo), each process keeps a plain local token bucket at
the pipeline's full rate: the limit then holds per process, not across them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

import hiredis

from ingestion.errors import RateLimited
from ingestion.redis_pipe import RedisPipe, RedisUnavailable

logger = logging.getLogger(__name__)

LEASE_SECONDS = 0.1  # how much of a second's worth one lease asks for
LEASE_TTL_SECONDS = 1.0
KEY_PREFIX = "sg:rl:"

# KEYS[1]: the bucket. ARGV: rate (tokens/s), burst (tokens), want. Returns the tokens granted: up to
# what the bucket holds, or, for more than a burst, all of it when the bucket is full (it goes into
# debt, so a batch bigger than a second's worth still goes through, and the rate still holds).
LEASE_SCRIPT = """
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil then tokens, at = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local grant = 0
if want > burst then
  -- more than a burst (a big batch): all of it once the bucket is full; the debt is paid back in time
  if tokens >= burst then grant = want end
else
  grant = math.min(want, math.floor(tokens))
end
tokens = tokens - grant
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return grant
"""
LEASE_SHA = __import__("hashlib").sha1(LEASE_SCRIPT.encode()).hexdigest()


class _Bucket:
    __slots__ = ("tokens", "lapse_at", "refilled_at", "lease")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.lapse_at = now + LEASE_TTL_SECONDS
        self.refilled_at = now
        self.lease: asyncio.Future[int] | None = None


class RateLimiter:
    def __init__(self, redis: RedisPipe | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = redis
        self._clock = clock
        self._leased: dict[str, _Bucket] = {}  # tokens leased from Redis
        self._local: dict[str, _Bucket] = {}  # a process-local bucket: no Redis, or Redis down
        self.fallbacks = 0

    async def admit(self, pipeline_id: str, rate: int, n: int) -> None:
        """Take ``n`` tokens of the pipeline's ``rate``, or raise RateLimited."""
        if self._redis is None or self._redis.down:
            return self._admit_locally(pipeline_id, rate, n)
        now = self._clock()
        bucket = self._leased.get(pipeline_id)
        if bucket is None:
            bucket = self._leased[pipeline_id] = _Bucket(0.0, now)
        if now >= bucket.lapse_at:
            bucket.tokens = 0.0  # an old lease lapses: another process may need those tokens
        lease_size = max(1, math.ceil(rate * LEASE_SECONDS))
        if bucket.tokens >= n:
            bucket.tokens -= n
            if bucket.tokens < lease_size / 2 and bucket.lease is None:
                self._lease(pipeline_id, bucket, rate, lease_size)  # before it runs dry, not awaited
            return None
        try:
            while bucket.tokens < n:
                lease = bucket.lease or self._lease(pipeline_id, bucket, rate, max(lease_size, n - int(bucket.tokens)))
                granted = await asyncio.shield(lease)
                if granted == 0 or bucket.tokens >= n:
                    break
        except RedisUnavailable:
            return self._admit_locally(pipeline_id, rate, n)
        if bucket.tokens < n:
            raise _refused(rate, n)
        bucket.tokens -= n
        return None

    def _lease(self, pipeline_id: str, bucket: _Bucket, rate: int, want: int) -> asyncio.Future[int]:
        assert self._redis is not None
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        bucket.lease = future
        redis = self._redis

        async def ask() -> None:
            try:
                [granted] = await redis.call([("EVALSHA", LEASE_SHA, 1, KEY_PREFIX + pipeline_id, rate, rate, want)])
                if isinstance(granted, hiredis.ReplyError) and str(granted).startswith("NOSCRIPT"):
                    [granted] = await redis.call(
                        [("EVAL", LEASE_SCRIPT, 1, KEY_PREFIX + pipeline_id, rate, rate, want)]
                    )
                if isinstance(granted, Exception):
                    raise RedisUnavailable(f"redis refused a rate-limit lease: {granted}")
                now = self._clock()
                if now >= bucket.lapse_at:
                    bucket.tokens = 0.0
                bucket.tokens += int(granted)
                bucket.lapse_at = now + LEASE_TTL_SECONDS
                future.set_result(int(granted))
            except RedisUnavailable as exc:
                future.set_exception(exc)
            finally:
                bucket.lease = None
                if future.done() and not future.cancelled():
                    future.exception()  # retrieved: a background lease may have nobody waiting

        asyncio.get_running_loop().create_task(ask(), name="rate-limit-lease")
        return future

    def _admit_locally(self, pipeline_id: str, rate: int, n: int) -> None:
        now = self._clock()
        bucket = self._local.get(pipeline_id)
        if bucket is None:
            bucket = self._local[pipeline_id] = _Bucket(float(rate), now)
        bucket.tokens = min(float(rate), bucket.tokens + (now - bucket.refilled_at) * rate)
        bucket.refilled_at = now
        if bucket.tokens < min(n, rate):  # more than a burst goes through a full bucket, into debt
            raise _refused(rate, n)
        bucket.tokens -= n
        if self._redis is not None:
            self.fallbacks += 1


def _refused(rate: int, n: int) -> RateLimited:
    wait = max(1, math.ceil(min(n, rate) / rate))
    return RateLimited(f"this pipeline takes {rate} events/s; retry in {wait} s", retry_after=wait)


_default: RateLimiter | None = None


def get_rate_limiter() -> RateLimiter:
    global _default
    if _default is None:
        from ingestion.redis_pipe import get_redis_pipe

        _default = RateLimiter(get_redis_pipe())
    return _default
