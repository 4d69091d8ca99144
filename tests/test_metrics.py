"""/metrics under ``signal_gateway.serve --workers 2``: one scrape answers for every worker, the
shared metrics directory is emptied at start and cleaned after a dead worker; and the metric text
parses as Prometheus reads it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from ingestion import metrics, monitor
from pipelines.services import PipelineCreated
from tests.fixtures.http import post, request
from tests.fixtures.scrape import scrape
from tests.fixtures.serve import start_serve

EVENTS = 40
# Each worker adds its tally to the shared files every half second (ingestion.metrics.flush, run by
# ingestion.monitor): what another worker counted is in a scrape within this.
FLUSHED = 2 * monitor.INTERVAL_SECONDS + 0.2


def send_events(url: str, key: str, n: int) -> list[int]:
    """``n`` track calls, each on a connection of its own (the kernel spreads connections, not requests)."""
    return [post(url + "/v1/t", {"event": "Counted", "properties": {"i": i}}, key=key).status for i in range(n)]


def test_one_scrape_returns_the_sum_over_both_workers(
    pipeline: PipelineCreated, gateway_env: dict[str, str], tmp_path: Path
) -> None:
    # Given two workers on one port
    serve = start_serve(gateway_env, tmp_path, tmp_path / "metrics", workers=2)
    try:
        # When 40 events arrive spread over both, and Prometheus scrapes the port four times
        statuses = send_events(serve.url, pipeline.pipeline_key, EVENTS)
        time.sleep(FLUSHED)
        per_worker = serve.counts_by_worker("gateway_events_total", source="browser", outcome="accepted")
        scrapes = [scrape(serve.url) for _ in range(4)]
    finally:
        serve.stop()

    # Then each worker took some, and every scrape, whichever worker answers it, says 40
    assert statuses == [200] * EVENTS
    assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()), per_worker
    for result in scrapes:
        assert result.value("gateway_events_total", source="browser", outcome="accepted") == EVENTS
        assert result.value("gateway_workers") == 2


def test_restarting_serve_does_not_bring_back_the_old_counts(
    pipeline: PipelineCreated, gateway_env: dict[str, str], tmp_path: Path
) -> None:
    # Given serve counted some events in its metrics directory, then stopped
    metrics_dir = tmp_path / "metrics"
    first = start_serve(gateway_env, tmp_path, metrics_dir, workers=2)
    try:
        assert send_events(first.url, pipeline.pipeline_key, 5) == [200] * 5
        time.sleep(FLUSHED)
        before = scrape(first.url).value("gateway_events_total", source="browser", outcome="accepted")
        old_pids = first.worker_pids()
    finally:
        first.stop()

    # When serve starts again on the same directory (new pids) and takes two more events
    second = start_serve(gateway_env, tmp_path, metrics_dir, workers=2)
    try:
        assert send_events(second.url, pipeline.pipeline_key, 2) == [200] * 2
        time.sleep(FLUSHED)
        after = scrape(second.url)
        new_pids = second.worker_pids()
        leftover = sorted(p.name for p in metrics_dir.glob("*.db") if int(p.stem.rsplit("_", 1)[1]) in old_pids)
    finally:
        second.stop()

    # Then the scrape counts only the new process set's events; the old files are gone
    assert before == 5
    assert len(old_pids) == 2 and len(new_pids) == 2 and not old_pids & new_pids
    assert after.value("gateway_events_total", source="browser", outcome="accepted") == 2
    assert after.value("gateway_workers") == 2
    assert leftover == []


def test_a_worker_killed_with_sigkill_leaves_the_live_gauges_and_stops_the_set(
    pipeline: PipelineCreated, gateway_env: dict[str, str], tmp_path: Path
) -> None:
    # Given two workers that have each written their gauges
    serve = start_serve(gateway_env, tmp_path, tmp_path / "metrics", workers=2)
    try:
        assert send_events(serve.url, pipeline.pipeline_key, 4) == [200] * 4
        time.sleep(FLUSHED)  # what each worker counted is in its file, as a scrape would find it
        victim, survivor = sorted(serve.worker_pids())

        # When one worker is killed outright (no chance to clean up after itself)
        os.kill(victim, signal.SIGKILL)
        code = serve.process.wait(30)
    finally:
        serve.stop()

    # Then serve stops the set and fails (the supervisor restarts it whole), and it has marked
    # every worker dead: no live gauge file is left, while the counters keep what was counted
    assert code != 0
    assert sorted(p.name for p in serve.metrics_dir.glob("gauge_live*.db")) == []
    counted = serve.counts_by_worker("gateway_events_total", source="browser", outcome="accepted")
    assert set(counted) == {victim, survivor} and sum(counted.values()) == 4


def test_the_metric_text_parses_and_names_every_documented_metric(gateway) -> None:  # type: ignore[no-untyped-def]
    # Given a single daphne gateway (no serve.py: the plain in-process registry)
    # When Prometheus scrapes it
    result = scrape(gateway.url)

    # Then every metric the README lists is declared with its type, and the unlabelled ones have a value
    expected = {
        "gateway_requests": "counter",
        "gateway_request_duration_seconds": "histogram",
        "gateway_events": "counter",
        "gateway_errors": "counter",
        "gateway_pixel_dropped": "counter",
        "gateway_kafka_ack_seconds": "histogram",
        "gateway_kafka_queue_depth": "gauge",
        "gateway_keystore_lookups": "counter",
        "gateway_spool_depth_events": "gauge",
        "gateway_spool_bytes": "gauge",
        "gateway_spool_oldest_age_seconds": "gauge",
        "gateway_rate_limited": "counter",
        "gateway_deduplicated": "counter",
        "gateway_dedup_bypassed": "counter",
        "gateway_rejected_published": "counter",
        "gateway_rejected_dropped": "counter",
        "gateway_event_loop_lag_seconds": "gauge",
        "gateway_ready": "gauge",
        "gateway_workers": "gauge",
        "gateway_resident_memory_bytes": "gauge",
    }
    assert {name: result.types.get(name) for name in expected} == expected
    assert result.value("gateway_workers") == 1
    assert result.value("gateway_kafka_ack_seconds_count") is not None
    assert result.value("gateway_rate_limited_total") is not None


def test_endpoint_labels_are_route_templates_not_paths() -> None:
    # Given Django routes as the handler resolves them, and a path that matched none
    routes = ["v1/t", "v1/pixel/<event_type>", "v1/projects/<str:write_key>/settings", "metrics", None]

    # When each becomes an endpoint label
    labels = [metrics.endpoint_from_route(route) for route in routes]

    # Then they are templates: a pixel type or a key in the path never becomes a label value
    assert labels == ["/v1/t", "/v1/pixel/{event_type}", "/v1/projects/{write_key}/settings", "/metrics", "other"]


def test_the_event_loop_lag_gauge_sees_a_blocked_loop() -> None:
    # Given the monitor sampling every 50 ms on this process's event loop
    async def ready() -> None:
        pass

    async def scenario() -> float | None:
        task = asyncio.get_running_loop().create_task(
            monitor.run(queue_depth=lambda: 0, check_ready=ready, interval=0.05, ready_every=3600)
        )
        await asyncio.sleep(0.2)
        # When something blocks the loop for 300 ms
        time.sleep(0.3)
        await asyncio.sleep(0.2)
        task.cancel()
        return metrics.REGISTRY.get_sample_value("gateway_event_loop_lag_seconds")

    lag = asyncio.run(scenario())

    # Then the gauge reports the delay (the worst of its recent samples)
    assert lag is not None and 0.25 <= lag < 2.0, lag


def test_request_latency_is_a_histogram_per_route_template_summed_over_workers(
    pipeline: PipelineCreated, gateway_env: dict[str, str], tmp_path: Path
) -> None:
    # Given two workers on one port
    serve = start_serve(gateway_env, tmp_path, tmp_path / "metrics", workers=2)
    try:
        # When 12 track calls and 6 pixels of made-up types arrive, and Prometheus scrapes once
        statuses = send_events(serve.url, pipeline.pipeline_key, 12)
        pixels = [request("GET", f"{serve.url}/v1/pixel/type-{i}?wk={pipeline.pipeline_key}").status for i in range(6)]
        time.sleep(FLUSHED)
        result = scrape(serve.url)
    finally:
        serve.stop()

    # Then requests are counted by route template and status, never by raw path
    assert statuses == [200] * 12 and pixels == [200] * 6
    assert result.value("gateway_requests_total", endpoint="/v1/t", status="200") == 12
    assert result.value("gateway_requests_total", endpoint="/v1/pixel/{event_type}", status="200") == 6
    assert not [pairs for name, pairs in result.samples if "type-" in str(pairs)]
    # ...and the latency histogram has cumulative buckets from 1 ms to 5 s, a sum and a count
    buckets = {
        dict(pairs)["le"]: value
        for (name, pairs), value in result.samples.items()
        if name == "gateway_request_duration_seconds_bucket" and dict(pairs)["endpoint"] == "/v1/t"
    }
    assert list(buckets) == [*(str(b) for b in metrics.LATENCY_BUCKETS), "+Inf"]
    assert list(buckets.values()) == sorted(buckets.values()) and buckets["+Inf"] == 12
    assert result.value("gateway_request_duration_seconds_count", endpoint="/v1/t") == 12
    assert 0 < (result.value("gateway_request_duration_seconds_sum", endpoint="/v1/t") or 0) < 12 * 5
    # ...and each published track waited once for Kafka's acknowledgement (the pixels were dropped)
    assert result.value("gateway_kafka_ack_seconds_count") == 12
    assert result.value("gateway_kafka_ack_seconds_bucket", le="+Inf") == 12


def test_key_store_lookups_are_counted_by_tier_and_result(gateway, make_pipeline) -> None:  # type: ignore[no-untyped-def]
    # Given a key this gateway has never looked up, and one that does not exist
    created = make_pipeline()
    unknown = "dk_" + "u" * 32
    before = scrape(gateway.url)

    # When each is used twice
    statuses = [post(gateway.url + "/v1/t", {"event": "K"}, key=k).status for k in (created.pipeline_key,) * 2]
    statuses += [post(gateway.url + "/v1/t", {"event": "K"}, key=k).status for k in (unknown,) * 2]
    after = scrape(gateway.url)

    # Then the key's first use went memory -> Redis -> PostgreSQL and its second stayed in memory;
    # the unknown key was refused from memory both times (the directory of valid tokens)
    def delta(tier: str, result: str) -> float:
        name = "gateway_keystore_lookups_total"
        return after.total(name, tier=tier, result=result) - before.total(name, tier=tier, result=result)

    assert statuses == [200, 200, 401, 401]
    assert {
        (tier, result): delta(tier, result)
        for tier in metrics.KEYSTORE_TIERS
        for result in metrics.KEYSTORE_RESULTS
        if delta(tier, result)
    } == {
        ("memory", "miss"): 1,
        ("redis", "miss"): 1,
        ("database", "hit"): 1,
        ("memory", "hit"): 1,
        ("memory", "unknown"): 2,
    }


def test_the_monitor_reports_readiness_loop_lag_queue_depth_and_memory(gateway) -> None:  # type: ignore[no-untyped-def]
    # Given a gateway that has been up for a moment (its monitor samples every 0.5 s)
    time.sleep(1.5)

    # When Prometheus scrapes it
    result = scrape(gateway.url)

    # Then it is ready, its loop is not lagging, nothing waits in its Kafka queue, and it uses memory
    assert result.value("gateway_ready") == 1
    lag = result.value("gateway_event_loop_lag_seconds")
    assert lag is not None and 0 <= lag < 1.0
    assert result.value("gateway_kafka_queue_depth") == 0
    assert (result.value("gateway_resident_memory_bytes") or 0) > 20 * 1024 * 1024


def test_the_tally_flushed_to_prometheus_client_matches_observing_each_value() -> None:
    from prometheus_client import CollectorRegistry, Histogram

    def buckets(registry: object, name: str) -> dict[str, float]:
        return {
            s.labels["le"]: s.value
            for m in registry.collect()  # type: ignore[attr-defined]
            for s in m.samples
            if s.name == f"{name}_bucket"
        }

    # Given values on, between and beyond the latency buckets' bounds
    values = [0.0, *metrics.LATENCY_BUCKETS, *(b * 1.5 for b in metrics.LATENCY_BUCKETS), 1e6]
    reference_registry = CollectorRegistry()
    reference = Histogram("reference_seconds", "r", buckets=metrics.LATENCY_BUCKETS, registry=reference_registry)
    metrics.flush()
    before = buckets(metrics.REGISTRY, "gateway_kafka_ack_seconds")

    # When the gateway tallies them on its loop and flushes, and the reference observes each one
    for value in values:
        metrics.kafka_acked(value)
        reference.observe(value)
    unflushed = buckets(metrics.REGISTRY, "gateway_kafka_ack_seconds")
    metrics.flush()
    after = buckets(metrics.REGISTRY, "gateway_kafka_ack_seconds")

    # Then nothing reached prometheus-client before the flush, and after it every bucket moved as the
    # reference's did (an observation equal to a bound counts in that bound's bucket)
    assert unflushed == before
    moved = {le: after[le] - before[le] for le in after}
    assert moved == buckets(reference_registry, "reference_seconds")
    assert moved["+Inf"] == len(values)
