"""Deduplication marks and rate-limit leases against the real Redis (ingestion/dedup.py,
ingestion/ratelimit.py, ingestion/redis_pipe.py), in-process; tests/faults/ drives them end to end."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from django.conf import settings

from ingestion.dedup import Dedup
from ingestion.errors import RateLimited
from ingestion.ratelimit import RateLimiter
from ingestion.redis_pipe import RedisPipe, RedisUnavailable
from tests.fixtures.net import TcpProxy


def pipeline_id() -> str:
    return f"pip_{uuid.uuid4().hex[:12]}"


def test_a_messageid_already_delivered_is_a_duplicate_and_one_in_flight_says_retry() -> None:
    async def scenario() -> tuple[list[bool], int, bool, list[bool], bool, list[bool]]:
        dedup = Dedup(RedisPipe(settings.REDIS_URL), window_seconds=60)
        pid = pipeline_id()
        # Given a request that claims two events and delivers them
        first = await dedup.claim(pid, ["m-1", "m-2"])
        dedup.settle(first.keys, delivered=True)
        # When the same events come again, one of them twice in the same request
        again = await dedup.claim(pid, ["m-1", "m-2", "m-2", "m-3"])
        # and while m-3 is still pending, another request carries it
        racing = await dedup.claim(pid, ["m-3"])
        return first.publish, again.duplicates, racing.in_flight, again.publish, first.in_flight, racing.publish

    first, duplicates, in_flight, again, first_in_flight, racing = asyncio.run(scenario())

    # Then the first claim publishes both; the second only m-3; a racing copy of m-3 is told to retry
    assert first == [True, True] and not first_in_flight
    assert again == [False, False, False, True] and duplicates == 3
    assert racing == [False] and in_flight


def test_a_failed_publish_releases_its_marks_so_the_retry_is_accepted() -> None:
    async def scenario() -> list[bool]:
        dedup = Dedup(RedisPipe(settings.REDIS_URL), window_seconds=60)
        pid = pipeline_id()
        # Given a request whose publish failed (503)
        failed = await dedup.claim(pid, ["m-1"])
        dedup.settle(failed.keys, delivered=False)
        # When the client retries
        retry = await dedup.claim(pid, ["m-1"])
        return retry.publish

    # Then the retry is accepted and published
    assert asyncio.run(scenario()) == [True]


def test_events_without_a_client_messageid_are_never_looked_up() -> None:
    async def scenario() -> tuple[list[bool], int]:
        pipe = RedisPipe(settings.REDIS_URL)
        claim = await Dedup(pipe, window_seconds=60).claim(pipeline_id(), [None, None])
        return claim.publish, pipe.commands

    assert asyncio.run(scenario()) == ([True, True], 0)


def test_with_redis_cut_events_pass_undeduplicated_within_the_timeout(tcp_proxy: Callable[[int], TcpProxy]) -> None:
    # Given Redis behind a proxy that stalls (accepts, never answers)
    proxy = tcp_proxy(int(settings.REDIS_URL.rsplit(":", 1)[1].split("/")[0]))
    proxy.stall()
    db = settings.REDIS_URL.rsplit("/", 1)[1]

    async def scenario() -> tuple[list[bool], float, bool]:
        pipe = RedisPipe(f"redis://127.0.0.1:{proxy.port}/{db}", timeout=0.25)
        dedup = Dedup(pipe, window_seconds=60)
        started = time.monotonic()
        claim = await dedup.claim(pipeline_id(), ["m-1"])
        return claim.publish, time.monotonic() - started, pipe.down

    # When a request is deduplicated
    publish, waited, down = asyncio.run(scenario())

    # Then it goes through without waiting more than the bound, and Redis is left alone for a while
    assert publish == [True]
    assert waited < 1.5, waited
    assert down


def test_concurrent_requests_share_round_trips() -> None:
    async def scenario() -> tuple[int, int]:
        pipe = RedisPipe(settings.REDIS_URL)
        await pipe.call([("PING",)])
        before = pipe.round_trips
        await asyncio.gather(*(pipe.call([("PING",)]) for _ in range(50)))
        return pipe.round_trips - before, pipe.commands

    round_trips, _ = asyncio.run(scenario())
    assert round_trips <= 3, round_trips


def test_two_limiters_on_one_pipeline_admit_its_rate_between_them() -> None:
    # Given two gateway processes' limiters on one pipeline of 200 events/s
    rate, seconds = 200, 3.0

    async def scenario() -> int:
        pid = pipeline_id()
        limiters = [RateLimiter(RedisPipe(settings.REDIS_URL)) for _ in range(2)]
        admitted = 0

        async def hammer(limiter: RateLimiter) -> None:
            nonlocal admitted
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    await limiter.admit(pid, rate, 1)
                    admitted += 1
                except RateLimited:
                    await asyncio.sleep(0.001)

        await asyncio.gather(*(hammer(limiter) for limiter in limiters))
        return admitted

    # When both take all they can for three seconds
    admitted = asyncio.run(scenario())

    # Then together they admitted the rate times the time plus one burst, within 15%
    expected = rate * seconds + rate
    assert abs(admitted - expected) <= 0.15 * expected, (admitted, expected)


def test_a_batch_over_the_burst_goes_through_a_full_bucket_and_the_next_is_refused() -> None:
    async def scenario() -> tuple[bool, int | None]:
        pid = pipeline_id()
        limiter = RateLimiter(RedisPipe(settings.REDIS_URL))
        await limiter.admit(pid, 100, 300)  # three seconds' worth, into debt
        try:
            await limiter.admit(pid, 100, 1)
        except RateLimited as exc:
            return True, exc.retry_after
        return False, None

    refused, retry_after = asyncio.run(scenario())
    assert refused and retry_after is not None and retry_after >= 1


def test_without_redis_the_limit_holds_per_process() -> None:
    async def scenario() -> int:
        limiter = RateLimiter(None)
        admitted = 0
        for _ in range(50):
            try:
                await limiter.admit("pip_local", 10, 1)
                admitted += 1
            except RateLimited:
                pass
        return admitted

    assert asyncio.run(scenario()) == 10  # the burst, with no time to refill


@pytest.mark.parametrize("size", [1, 10])
def test_a_stalled_redis_fails_calls_within_the_timeout(tcp_proxy: Callable[[int], TcpProxy], size: int) -> None:
    proxy = tcp_proxy(int(settings.REDIS_URL.rsplit(":", 1)[1].split("/")[0]))
    proxy.stall()

    async def scenario() -> float:
        pipe = RedisPipe(f"redis://127.0.0.1:{proxy.port}/0", timeout=0.2)
        started = time.monotonic()
        with pytest.raises(RedisUnavailable):
            await pipe.call([("PING",)] * size)
        with pytest.raises(RedisUnavailable):  # and at once while it is known down
            await pipe.call([("PING",)])
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 1.5


def test_a_big_batchs_marks_go_in_one_script_with_the_same_answers() -> None:
    async def scenario() -> tuple[list[bool], int, list[bool], bool, int]:
        pipe = RedisPipe(settings.REDIS_URL)
        dedup = Dedup(pipe, window_seconds=60)
        pid = pipeline_id()
        ids = [f"m-{n}" for n in range(100)]
        # Given a batch of 100 events claimed and delivered (one command each way)
        first = await dedup.claim(pid, ids)
        commands = pipe.commands
        dedup.settle(first.keys, delivered=True)
        # When the batch comes again, and a new event of it is still pending elsewhere
        await dedup.claim(pid, ["m-100"])
        again = await dedup.claim(pid, [*ids, "m-100"])
        return first.publish, commands, again.publish, again.in_flight, again.duplicates

    first, commands, again, in_flight, duplicates = asyncio.run(scenario())

    # Then the first claim took one command and published all; the second publishes none, counts the
    # hundred delivered ones as duplicates and the pending one as in flight
    assert first == [True] * 100 and commands == 1
    assert again == [False] * 101 and duplicates == 100 and in_flight
