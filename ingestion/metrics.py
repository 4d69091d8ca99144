"""The gateway's Prometheus metrics: the metric objects, the small functions the request path calls,
and the text a scrape of /metrics returns.

Two modes, fixed when this module is first imported (prometheus_client reads the environment then):

- ``PROMETHEUS_MULTIPROC_DIR`` set, as ``signal_gateway.serve`` does for its workers: each process
  writes its values to its own mmap'd files in that directory, and a scrape of any worker merges
  every file, so one scrape answers for the whole port. Counters and histograms of a worker that
  exited keep their counts (Prometheus sees no reset); every gauge uses a ``live*`` mode, so a worker
  drops out of it once serve.py marks it dead. serve.py empties the directory at start.
- unset (a single daphne process): a plain in-memory registry.

Label values are bounded by construction: ``endpoint`` is a route template (``/v1/pixel/{event_type}``)
or ``other``, never a raw path; ``status`` an HTTP status; ``code`` and ``reason`` the SPEC's error
codes; ``source`` and ``outcome`` the fixed sets below. No pipeline ids, keys or client input.

Cost (``bench/metrics_cost.py``, the project's 2-core machine): with mmap'd values (serve.py) a
counter ``inc`` is ~0.7 us and a histogram ``observe`` ~1.5 us, as each value written takes the
library's one lock and writes the mmap (a plain registry: 0.24 and 0.58 us); ``labels()`` adds
~0.65 us, so each child is looked up once here and cached. Everything a track request calls
(keystore_lookup, kafka_acked, events, request_finished) costs ~6 us with mmap and ~2.3 us plain:
~2% and ~0.8% of its ~0.29 ms of CPU. A scrape merges every worker's files: 0.5-2 ms.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector

from signal_gateway.adapters import prometheus

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# A request that answers in 1 ms up to one that waits out a 2 s Kafka timeout, and a little beyond.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

SOURCES = ("browser", "server", "batch", "pixel", "webhook")
OUTCOMES = ("accepted", "rejected", "dropped", "duplicate", "rate_limited", "spooled")
KEYSTORE_TIERS = ("memory", "redis", "database")
KEYSTORE_RESULTS = ("hit", "miss", "unknown", "error")

# The _created series double every counter's output and mean nothing under multiprocess mode.
disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "gateway_requests_total",
    "HTTP requests answered, by endpoint (route template or 'other') and status.",
    ["endpoint", "status"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "gateway_request_duration_seconds",
    "Time from the request reaching the gateway to its response being sent, by endpoint.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
EVENTS = Counter(
    "gateway_events_total",
    "Events by source kind and outcome (accepted, rejected, dropped, duplicate, rate_limited, spooled).",
    ["source", "outcome"],
    registry=REGISTRY,
)
ERRORS = Counter("gateway_errors_total", "Error responses by code.", ["code"], registry=REGISTRY)
PIXEL_DROPPED = Counter(
    "gateway_pixel_dropped_total",
    "Pixel requests answered with the GIF but not published, by reason.",
    ["reason"],
    registry=REGISTRY,
)
KAFKA_ACK_SECONDS = Histogram(
    "gateway_kafka_ack_seconds",
    "Time a request waited for Kafka to acknowledge its records (acknowledged requests only).",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
KAFKA_QUEUE_DEPTH = Gauge(
    "gateway_kafka_queue_depth",
    "Records and requests waiting in the producers' local queues, summed over live workers (sampled).",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
KEYSTORE_LOOKUPS = Counter(
    "gateway_keystore_lookups_total",
    "Key-store lookups by tier (memory, redis, database) and result (hit, miss, unknown, error).",
    ["tier", "result"],
    registry=REGISTRY,
)
SPOOL_DEPTH = Gauge(
    "gateway_spool_depth_events",
    "Events in the local spool waiting for Kafka, summed over live workers.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
SPOOL_BYTES = Gauge(
    "gateway_spool_bytes",
    "Bytes of the local spool, summed over live workers.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
SPOOL_OLDEST_AGE = Gauge(
    "gateway_spool_oldest_age_seconds",
    "Age of the oldest spooled event, the largest over live workers (0 when the spool is empty).",
    multiprocess_mode="livemax",
    registry=REGISTRY,
)
RATE_LIMITED = Counter("gateway_rate_limited_total", "Events refused by a pipeline's rate limit.", registry=REGISTRY)
DEDUPLICATED = Counter(
    "gateway_deduplicated_total",
    "Events answered 200 but not published again: their messageId was seen in the last 24 hours.",
    registry=REGISTRY,
)
DEDUP_BYPASSED = Counter(
    "gateway_dedup_bypassed_total",
    "Events published without a duplicate check because Redis could not answer.",
    registry=REGISTRY,
)
REJECTED_PUBLISHED = Counter(
    "gateway_rejected_published_total",
    "Refused events published to the rejected-events topic.",
    registry=REGISTRY,
)
REJECTED_DROPPED = Counter(
    "gateway_rejected_dropped_total",
    "Refused events not published to the rejected-events topic (best effort), by reason: backlog, queue_full, undelivered.",
    ["reason"],
    registry=REGISTRY,
)
REJECTED_DROP_REASONS = ("backlog", "queue_full", "undelivered")
for _reason in REJECTED_DROP_REASONS:  # a drop that never happened reads 0, not "no data"
    REJECTED_DROPPED.labels(_reason)
SPOOL_DRAINED = Counter(
    "gateway_spool_drained_total",
    "Spooled events replayed to Kafka and acknowledged.",
    registry=REGISTRY,
)
EVENT_LOOP_LAG = Gauge(
    "gateway_event_loop_lag_seconds",
    "How late the event loop ran a timer, the worst of the last ~10 s, the largest over live workers.",
    multiprocess_mode="livemax",
    registry=REGISTRY,
)
READY = Gauge(
    "gateway_ready",
    "1 when every live worker can take events (its last readiness check passed), else 0.",
    multiprocess_mode="livemin",
    registry=REGISTRY,
)
WORKERS = Gauge(
    "gateway_workers", "Gateway processes serving this port.", multiprocess_mode="livesum", registry=REGISTRY
)
RESIDENT_MEMORY = Gauge(
    "gateway_resident_memory_bytes",
    "Resident memory of the gateway processes, summed over live workers (sampled).",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)

WORKERS.set(1)

# What the event loop counts between flushes: counter children -> how many; histogram children ->
# counts per bucket and their sum (the last slot). flush() adds them to prometheus-client, every
# half second (ingestion.monitor) and before every scrape of this process. Each prometheus-client
# update takes a lock (and, under serve.py, writes an mmap'd file): the six of a track request
# cost ~35k instructions (callgrind, bench/inprocess.py --scenario track); a tally costs ~5k.
_counts: dict[Any, float] = {}
_tallies: dict[Any, list[float]] = {}
_bounds: dict[Any, Sequence[float]] = {}


def _count(child: Any, n: float = 1) -> None:
    _counts[child] = _counts.get(child, 0) + n


def _observe(child: Any, value: float) -> None:
    tally = _tallies.get(child)
    if tally is None:
        tally = _tallies[child] = [0.0] * (len(prometheus.upper_bounds(child)) + 1)
        _bounds[child] = prometheus.upper_bounds(child)
    tally[bisect_left(_bounds[child], value)] += 1
    tally[-1] += value


def flush() -> None:
    """Add what was tallied on the event loop to prometheus-client (on the loop, or at exit)."""
    global _counts, _tallies
    counts, tallies = _counts, _tallies
    _counts, _tallies = {}, {}
    for child, n in counts.items():
        child.inc(n)
    for child, tally in tallies.items():
        prometheus.add_observations(child, tally[:-1], tally[-1])


# labels() costs more than the increment it leads to; the label sets are small and fixed, so each
# child is looked up once per process.
_requests: dict[tuple[str, int], Any] = {}
_durations: dict[str, Any] = {}
_events: dict[tuple[str, str], Any] = {}
_errors: dict[str, Any] = {}
_keystore: dict[tuple[str, str], Any] = {}


def endpoint_from_route(route: str | None) -> str:
    """The ``endpoint`` label for a Django route (``v1/pixel/<event_type>`` -> ``/v1/pixel/{event_type}``);
    ``other`` when no route matched. Called once per route: the handler caches it with the match."""
    if not route:
        return "other"
    parts = []
    for part in route.strip("/").split("/"):
        if part.startswith("<") and part.endswith(">"):
            part = "{" + part[1:-1].rpartition(":")[2] + "}"
        parts.append(part)
    return "/" + "/".join(parts)


def request_finished(endpoint: str, status: int, seconds: float) -> None:
    """One HTTP request answered. ``endpoint`` from ``endpoint_from_route``; ``seconds`` from when
    the request reached the gateway to its response being sent."""
    key = (endpoint, status)
    counter = _requests.get(key)
    if counter is None:
        counter = _requests[key] = REQUESTS.labels(endpoint, str(status))
    _count(counter)
    histogram = _durations.get(endpoint)
    if histogram is None:
        histogram = _durations[endpoint] = REQUEST_SECONDS.labels(endpoint)
    _observe(histogram, seconds)


def events(source: str, outcome: str, n: int = 1) -> None:
    """``n`` events from ``source`` (one of SOURCES) ended as ``outcome`` (one of OUTCOMES).
    ``rate_limited`` and ``duplicate`` also count in gateway_rate_limited_total and
    gateway_deduplicated_total: one call per outcome."""
    if n <= 0:
        return
    key = (source, outcome)
    counter = _events.get(key)
    if counter is None:
        counter = _events[key] = EVENTS.labels(source, outcome)
    _count(counter, n)
    if outcome == "rate_limited":
        _count(RATE_LIMITED, n)
    elif outcome == "duplicate":
        _count(DEDUPLICATED, n)


def error(code: str) -> None:
    """One error response with this SPEC error code."""
    counter = _errors.get(code)
    if counter is None:
        counter = _errors[code] = ERRORS.labels(code)
    counter.inc()


def pixel_dropped(reason: str) -> None:
    """A pixel request answered with the GIF but not published; ``reason`` is the error code."""
    PIXEL_DROPPED.labels(reason).inc()


def kafka_acked(seconds: float) -> None:
    """A request's records were acknowledged ``seconds`` after it started waiting."""
    _observe(KAFKA_ACK_SECONDS, seconds)


def keystore_lookup(tier: str, result: str) -> None:
    """One key-store lookup answered (or not) by ``tier`` with ``result`` (see KEYSTORE_*)."""
    key = (tier, result)
    counter = _keystore.get(key)
    if counter is None:
        counter = _keystore[key] = KEYSTORE_LOOKUPS.labels(tier, result)
    _count(counter)


def dedup_bypassed(n: int = 1) -> None:
    """``n`` events published without a duplicate check (Redis down)."""
    DEDUP_BYPASSED.inc(n)


def rejected_published() -> None:
    """A refused event was acknowledged on the rejected-events topic."""
    REJECTED_PUBLISHED.inc()


def rejected_dropped(reason: str) -> None:
    """A refused event could not go to the rejected-events topic (``REJECTED_DROP_REASONS``)."""
    REJECTED_DROPPED.labels(reason).inc()


def spool_state(*, depth: int, size_bytes: int, oldest_age_seconds: float) -> None:
    """What this process's spool holds; call when it changes or on a timer."""
    SPOOL_DEPTH.set(depth)
    SPOOL_BYTES.set(size_bytes)
    SPOOL_OLDEST_AGE.set(oldest_age_seconds)


def spool_drained(n: int) -> None:
    """``n`` spooled events are in Kafka now."""
    SPOOL_DRAINED.inc(n)


def ready(is_ready: bool) -> None:
    """This process's last readiness verdict."""
    READY.set(1 if is_ready else 0)


def loop_sample(*, lag_seconds: float, queue_depth: int, resident_bytes: int) -> None:
    """What ingestion.monitor samples on the event loop."""
    EVENT_LOOP_LAG.set(lag_seconds)
    KAFKA_QUEUE_DEPTH.set(queue_depth)
    RESIDENT_MEMORY.set(resident_bytes)


_BY_NAME: dict[str, Counter] = {
    "gateway_events_total": EVENTS,
    "gateway_errors_total": ERRORS,
    "gateway_pixel_dropped_total": PIXEL_DROPPED,
}


def inc(name: str, amount: int = 1, **labels: str) -> None:
    """The old call sites' form (``inc("gateway_events_total", source=…, outcome=…)``), kept until
    the intake calls the functions above."""
    if name == "gateway_events_total":
        events(labels["source"], labels["outcome"], amount)
    elif name == "gateway_errors_total" and amount == 1:
        error(labels["code"])
    else:
        _BY_NAME[name].labels(**labels).inc(amount)


def render() -> bytes:
    """The Prometheus text for a scrape: every worker's values merged in multiprocess mode (each
    worker's tally at most half a second old; this one's exact)."""
    flush()
    if MULTIPROCESS_DIR:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=MULTIPROCESS_DIR)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
