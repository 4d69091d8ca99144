"""What the request path's metric calls cost, per call, in both of ingestion.metrics' modes.

    .venv/bin/python bench/metrics_cost.py

Runs itself twice: once with a throwaway PROMETHEUS_MULTIPROC_DIR (mmap'd values, as under
signal_gateway.serve) and once without (a plain registry, one daphne). Each line is the best of five
timeit runs of 200,000 calls. No Django needed: ingestion.metrics does not import it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CALLS = 200_000


def measure() -> None:
    sys.path.insert(0, str(ROOT))
    from ingestion import metrics

    counter = metrics.EVENTS.labels("browser", "accepted")
    histogram = metrics.REQUEST_SECONDS.labels("/v1/t")
    lookups = metrics.KEYSTORE_LOOKUPS.labels("memory", "hit")
    requests = metrics.REQUESTS.labels("/v1/t", "200")
    cases = {
        "counter child inc()": counter.inc,
        "histogram child observe()": lambda: histogram.observe(0.003),
        "labels() lookup": lambda: metrics.EVENTS.labels("browser", "accepted"),
        "metrics.events('browser', 'accepted')": lambda: metrics.events("browser", "accepted"),
        "metrics.request_finished('/v1/t', 200, s)": lambda: metrics.request_finished("/v1/t", 200, 0.003),
        "metrics.error(code)": lambda: metrics.error("INVALID_PIPELINE_KEY"),
        "metrics.inc(...) (old call sites)": lambda: metrics.inc(
            "gateway_events_total", source="browser", outcome="accepted"
        ),
        "a track request: every call it makes": lambda: (
            metrics.keystore_lookup("memory", "hit"),
            metrics.kafka_acked(0.002),
            metrics.events("browser", "accepted"),
            metrics.request_finished("/v1/t", 200, 0.003),
        ),
        # What the same calls cost before the tally: each one straight into prometheus-client.
        "the same, straight into prometheus-client": lambda: (
            lookups.inc(),
            metrics.KAFKA_ACK_SECONDS.observe(0.002),
            counter.inc(),
            requests.inc(),
            histogram.observe(0.003),
        ),
    }
    mode = "multiprocess (mmap)" if metrics.MULTIPROCESS_DIR else "plain registry"
    for name, call in cases.items():
        seconds = min(timeit.repeat(call, number=CALLS, repeat=5)) / CALLS
        print(f"{mode:20} {name:45} {seconds * 1e6:6.2f} us")
    metrics.flush()
    cases["a track request: every call it makes"]()
    flushes = min(
        timeit.repeat(metrics.flush, setup=cases["a track request: every call it makes"], number=1, repeat=1000)
    )
    label = "flush() of a tally (every 0.5 s)"
    print(f"{mode:20} {label:45} {flushes * 1e6:6.2f} us")
    started = timeit.default_timer()
    for _ in range(20):
        metrics.render()
    print(f"{mode:20} {'render() (one scrape)':45} {(timeit.default_timer() - started) / 20 * 1e3:6.2f} ms")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        measure()
        return
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    subprocess.run([sys.executable, __file__, "--child"], env=env, check=True)
    with tempfile.TemporaryDirectory(prefix="metrics-cost-") as directory:
        subprocess.run(
            [sys.executable, __file__, "--child"], env={**env, "PROMETHEUS_MULTIPROC_DIR": directory}, check=True
        )


if __name__ == "__main__":
    main()
