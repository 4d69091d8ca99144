"""prometheus-client, adapted: many observations of a histogram added at once.

The gateway tallies what happens on its event loop in plain Python (ingestion.metrics) and adds the
tally to prometheus-client every half second: a counter's public ``inc(n)`` takes a count, but a
histogram's ``observe`` takes one value at a time, each taking a lock (and, under serve.py, writing
an mmap'd file) for its sum and its bucket. ``add_observations`` adds a tally of counts per bucket
and their sum in one go, through the histogram's value objects.

What this relies on, checked by tests/test_adapters.py against the pinned prometheus-client: a
histogram child keeps ``_upper_bounds`` (ascending, +Inf last), one value object per bound in
``_buckets`` counting the observations that fell in that bucket only (not cumulative), and the sum
in ``_sum``; each value object has ``inc(amount)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def upper_bounds(histogram: Any) -> Sequence[float]:
    """A histogram child's bucket bounds, ascending, +Inf last."""
    return histogram._upper_bounds  # type: ignore[no-any-return]


def add_observations(histogram: Any, bucket_counts: Sequence[float], total: float) -> None:
    """What ``observe`` would have recorded for observations that fell ``bucket_counts[i]`` times in
    bucket ``i`` and summed to ``total``."""
    buckets = histogram._buckets
    for index, count in enumerate(bucket_counts):
        if count:
            buckets[index].inc(count)
    histogram._sum.inc(total)
