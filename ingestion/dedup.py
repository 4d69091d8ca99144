"""Deduplication by ``messageId`` (SPEC §6): an event whose pipeline has already had its messageId in
the last ``DEDUP_WINDOW_SECONDS`` is answered as accepted and not published again.

A mark per (pipeline, messageId) lives in Redis, so it holds across requests and gateway processes.
Each request places its marks with one ``SET key p NX GET EX`` per event, all in one round trip
(ingestion.redis_pipe, shared with other requests in flight), and learns from each old value:
- none: the event is new (this request now holds a *pending* mark, ``p``);
- ``d``: a copy was delivered: a duplicate, answered accepted and not published;
- ``p``: a copy is still being delivered by another request: the client is told to retry (503), since
  that copy may yet fail; by then it is either delivered (``d``) or gone.
Once the request knows its fate, ``settle`` turns its pending marks into delivered ones (``d``, for
the whole window) or deletes them, so a retry of an event that got a 503 is accepted: a mark never
outlives a failed publish. A pending mark expires after ``PENDING_SECONDS`` whatever happens, so a
process killed mid-request cannot block its events' retries for the whole window. settle's commands
are sent without waiting, with the next round trip.

Events without a client messageId get a fresh UUID from the envelope and are not looked up. With
Redis down, events pass through undeduplicated and ``gateway_dedup_bypassed_total`` counts them.
Without REDIS_URL (the one-machine demo) the marks live in this process's memory, bounded.

A mark's key is 12 bytes of BLAKE2b over the pipeline id and messageId: a messageId may be 256
characters, and Redis spends ~70 bytes per key besides.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from ingestion import metrics
from ingestion.redis_pipe import RedisPipe, RedisUnavailable

PENDING_SECONDS = 60
# From this many marks on, a request's marks are placed (and settled) by one Lua script rather than a
# command each: one reply to parse instead of a hundred (bench/inprocess.py --redis, 100-event batches).
SCRIPT_FROM = 5
# KEYS: the marks; ARGV[1]: the pending marks' lifetime. Returns each mark's old value (nil: new).
_PLACE = """
local old = {}
for i, key in ipairs(KEYS) do
  old[i] = redis.call('SET', key, 'p', 'NX', 'GET', 'EX', ARGV[1])
end
return old
"""
# KEYS: the marks; ARGV[1]: the window. Pending marks become delivered ones.
_DELIVER = """
for _, key in ipairs(KEYS) do
  redis.call('SET', key, 'd', 'XX', 'EX', ARGV[1])
end
return 0
"""
KEY_PREFIX = b"sg:dd:"
LOCAL_MAX_MARKS = 1_000_000
_PENDING, _DELIVERED = b"p", b"d"


def mark_key(pipeline_id: str, message_id: str) -> bytes:
    digest = hashlib.blake2b(f"{pipeline_id}\0{message_id}".encode(), digest_size=12).digest()
    return KEY_PREFIX + digest


@dataclass(slots=True)
class Claim:
    """What a request may publish: ``publish[i]`` for its i-th event; ``duplicates``, how many were
    already delivered; ``in_flight`` when some event is being delivered by another request right
    now; ``keys``, the marks this request placed."""

    publish: list[bool]
    duplicates: int = 0
    in_flight: bool = False
    keys: list[bytes] = field(default_factory=list)


class Dedup:
    def __init__(self, redis: RedisPipe | None, *, window_seconds: int) -> None:
        self._redis = redis
        self.window_seconds = window_seconds
        self._local: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()

    async def claim(self, pipeline_id: str, message_ids: Sequence[str | None]) -> Claim:
        """Mark each event's messageId (None: the event has none of the client's) as pending."""
        publish = [True] * len(message_ids)
        duplicates = 0
        keys: list[bytes] = []
        positions: list[int] = []
        seen: set[bytes] = set()
        for index, message_id in enumerate(message_ids):
            if message_id is None:
                continue
            key = mark_key(pipeline_id, message_id)
            if key in seen:  # the same event twice in one request: one is enough
                publish[index] = False
                duplicates += 1
                continue
            seen.add(key)
            keys.append(key)
            positions.append(index)
        if not keys:
            return Claim(publish, duplicates)
        try:
            previous = await self._place(keys)
        except RedisUnavailable:
            metrics.dedup_bypassed(len(keys))
            return Claim(publish, duplicates)  # let them through: a duplicate beats a lost event
        claim = Claim(publish, duplicates)
        for key, index, old in zip(keys, positions, previous, strict=True):
            if old is None:
                claim.keys.append(key)
            else:
                publish[index] = False
                if old == _PENDING:
                    claim.in_flight = True
                else:
                    claim.duplicates += 1
        return claim

    def settle(self, keys: Sequence[bytes], *, delivered: bool) -> None:
        """The request's fate: its marks become delivered ones, or go (without waiting)."""
        if not keys:
            return
        if self._redis is None:
            now = time.monotonic()
            for key in keys:
                if delivered:
                    self._local[key] = (_DELIVERED, now + self.window_seconds)
                else:
                    self._local.pop(key, None)
            return
        if not delivered:
            self._redis.send([("DEL", *keys)])
        elif len(keys) >= SCRIPT_FROM:
            self._redis.send([("EVAL", _DELIVER, len(keys), *keys, self.window_seconds)])
        else:
            self._redis.send([("SET", key, _DELIVERED, "XX", "EX", self.window_seconds) for key in keys])

    async def _place(self, keys: list[bytes]) -> list[bytes | None]:
        if self._redis is None:
            return self._place_locally(keys)
        if len(keys) >= SCRIPT_FROM:
            [replies] = await self._redis.call([("EVAL", _PLACE, len(keys), *keys, PENDING_SECONDS)])
            if isinstance(replies, Exception):
                raise RedisUnavailable(f"redis refused the dedup marks: {replies}")
            return [None if reply is False else reply for reply in replies]
        replies = await self._redis.call([("SET", key, _PENDING, "NX", "GET", "EX", PENDING_SECONDS) for key in keys])
        if any(isinstance(reply, Exception) for reply in replies):
            raise RedisUnavailable(
                f"redis refused a dedup mark: {next(r for r in replies if isinstance(r, Exception))}"
            )
        return replies

    def _place_locally(self, keys: list[bytes]) -> list[bytes | None]:
        now = time.monotonic()
        marks = self._local
        previous: list[bytes | None] = []
        for key in keys:
            found = marks.get(key)
            if found is not None and found[1] > now:
                previous.append(found[0])
                continue
            marks[key] = (_PENDING, now + PENDING_SECONDS)
            marks.move_to_end(key)
            previous.append(None)
        while len(marks) > LOCAL_MAX_MARKS:
            marks.popitem(last=False)
        return previous


_default: Dedup | None = None


def get_dedup() -> Dedup:
    global _default
    if _default is None:
        from django.conf import settings

        from ingestion.redis_pipe import get_redis_pipe

        _default = Dedup(get_redis_pipe(), window_seconds=settings.DEDUP_WINDOW_SECONDS)
    return _default
