"""The soak's verdict on growth (bench/soak.py): a plateau passes, a leak fails, a late step does not."""

from __future__ import annotations

from collections.abc import Callable

from bench.soak import Sample, judge_growth

DURATION = 600.0
SETTLE_UNTIL = 0.2 * DURATION


def samples(rss_at: Callable[[float], float], every: float = 5.0) -> list[Sample]:
    return [
        Sample(t=t, rss_mib=rss_at(t), fds=80, threads=7, cpu_pct=50.0, healthz_ms=1.0, lag_gauge_ms=None)
        for t in (every * i for i in range(1, int(DURATION / every) + 1))
    ]


def test_memory_that_grows_during_start_up_then_stays_flat_levels_off() -> None:
    # Given RSS that climbs 40 MiB in the first two minutes, then holds with allocator noise
    def rss(t: float) -> float:
        return 100 + min(t, 120) / 3 + (0.3 if int(t) % 10 == 0 else 0.0)

    # When the soak judges it
    growth = judge_growth("rss_mib", samples(rss), SETTLE_UNTIL)

    # Then it levels off
    assert growth is not None
    assert not growth.grows, growth


def test_memory_that_keeps_growing_by_20_kib_per_second_does_not_level_off() -> None:
    # Given RSS that grows steadily by 20 KiB/s (70 MiB an hour) all through the run
    def rss(t: float) -> float:
        return 100 + t * 20 / 1024

    # When the soak judges it
    growth = judge_growth("rss_mib", samples(rss), SETTLE_UNTIL)

    # Then it fails: the last third sets a new high beyond the allowance, and the trend is up
    assert growth is not None
    assert growth.grows, growth
    assert growth.fails


def test_a_late_step_within_the_allowance_is_noise_and_a_large_one_is_not_forgiven() -> None:
    # Given RSS flat except for one step early in the last third, that stays flat afterwards
    def stepped(height: float) -> Callable[[float], float]:
        return lambda t: 100 + (height if t > 0.8 * DURATION else 0.0)

    # When the soak judges a 1.5 MiB step (an allocator arena, a buffer grown once)
    small = judge_growth("rss_mib", samples(stepped(1.5)), SETTLE_UNTIL)

    # Then it is noise; but a 20 MiB one this late cannot be told from a leak starting, and fails
    assert small is not None and not small.grows, small
    large = judge_growth("rss_mib", samples(stepped(20.0)), SETTLE_UNTIL)
    assert large is not None and large.grows, large


def test_a_descriptor_leak_of_one_every_ten_seconds_does_not_level_off() -> None:
    # Given open descriptors that rise by one every ten seconds
    points = [
        Sample(t=t, rss_mib=100.0, fds=80 + int(t // 10), threads=7, cpu_pct=50.0, healthz_ms=1.0, lag_gauge_ms=None)
        for t in range(5, 601, 5)
    ]

    # When the soak judges them
    growth = judge_growth("fds", points, SETTLE_UNTIL)

    # Then it fails
    assert growth is not None
    assert growth.grows, growth


def test_too_short_a_run_is_not_judged() -> None:
    # Given three samples after start-up
    points = samples(lambda t: 100.0)[-3:]

    # When the soak judges them, Then it says it cannot
    assert judge_growth("rss_mib", points, SETTLE_UNTIL) is None
