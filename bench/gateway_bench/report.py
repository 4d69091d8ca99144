"""The report: the checks against the targets, the table, and bench/results/latest.json."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.gateway_bench.core import RESULTS_DIR, code_version
from bench.gateway_bench.scenarios import Measurement, Scenario, SpoolResult, describe_drain
from bench.gateway_bench.targets import P99_AT_CONNECTIONS, THROUGHPUT_AT_CONNECTIONS, TargetSet


@dataclass
class Check:
    name: str
    passed: bool | None  # None: not measured in this run
    detail: str
    informational: bool = False  # reported, but never fails the run


def find(measurements: list[Measurement], scenario: str, target: str, connections: int) -> Measurement | None:
    for m in measurements:
        if (m.scenario, m.target, m.connections) == (scenario, target, connections):
            return m
    return None


def gateway_bare_ratios(
    measurements: list[Measurement], scenarios: Sequence[Scenario], connections: dict[str, list[int]]
) -> dict[str, float]:
    """Gateway req/s over the bare app's, per scenario and connection count measured for both."""
    ratios: dict[str, float] = {}
    for scenario in scenarios:
        for count in connections[scenario.name]:
            g = find(measurements, scenario.name, "gateway", count)
            b = find(measurements, scenario.name, "bare", count)
            if g and b and b.requests_per_s:
                ratios[f"{scenario.name} gateway/bare req/s at {count} connections"] = (
                    g.requests_per_s / b.requests_per_s
                )
    return ratios


def evaluate(
    scenarios: Sequence[Scenario],
    measurements: list[Measurement],
    kafka: dict[str, int],
    answered_2xx: int,
    in_flight_bound: int,
    partial: int = 0,
    *,
    targets: TargetSet,
    spool: SpoolResult | None = None,
) -> list[Check]:
    checks: list[Check] = []
    at = THROUGHPUT_AT_CONNECTIONS
    for scenario in scenarios:
        target = targets.of(scenario.name)
        gateway = find(measurements, scenario.name, "gateway", at)
        if target.min_events_per_s is not None:
            name = f"{scenario.name}: gateway events/s >= {target.min_events_per_s:,.0f} at {at} connections"
            if scenario.cuts_kafka:
                name = (
                    f"{scenario.name}: gateway events/s answered 2xx with Kafka cut >= "
                    f"{target.min_events_per_s:,.0f} at {at} connections"
                )
            if gateway:
                detail = (
                    f"{gateway.events_per_s:,.0f} events/s ({gateway.requests_per_s:.1f} req/s x "
                    f"{scenario.records_per_request}, {gateway.non2xx} non-2xx, {gateway.partial} partial)"
                )
                if scenario.cuts_kafka:
                    detail += f", statuses {gateway.statuses}"
                passed = gateway.events_per_s >= target.min_events_per_s and not gateway.partial
                checks.append(Check(name, passed, detail))
            else:
                checks.append(Check(name, None, "not measured"))
        if target.min_ratio is not None:
            bare = find(measurements, scenario.name, "bare", at)
            name = f"{scenario.name}: gateway req/s >= {target.min_ratio:.0%} of bare at {at} connections"
            informational = target.ratio_informational
            if gateway and bare and bare.requests_per_s:
                ratio = gateway.requests_per_s / bare.requests_per_s
                detail = f"{gateway.requests_per_s:.0f} / {bare.requests_per_s:.0f} = {ratio:.1%}"
                checks.append(Check(name, ratio >= target.min_ratio, detail, informational))
            else:
                checks.append(Check(name, None, "not measured", informational))
        if target.max_p99_ms is not None:
            gateway = find(measurements, scenario.name, "gateway", P99_AT_CONNECTIONS)
            name = f"{scenario.name}: gateway p99 < {target.max_p99_ms:g} ms at {P99_AT_CONNECTIONS} connections"
            if gateway:
                checks.append(Check(name, gateway.p99_ms < target.max_p99_ms, f"p99 {gateway.p99_ms:.2f} ms"))
            else:
                checks.append(Check(name, None, "not measured"))
    # wrk abandons the requests in flight when its time is up (or a connection fails); the gateway may
    # still have published those, so Kafka may hold up to that many extra records, never fewer.
    # answered_2xx counts events: a 2xx batch answer is records_per_request of them.
    extra = kafka["for_pipeline"] - answered_2xx
    checks.append(
        Check(
            "every 2xx from the gateway is a record in Kafka",
            0 <= extra <= in_flight_bound and kafka["distinct_message_ids"] == kafka["for_pipeline"],
            f"events answered 2xx {answered_2xx}, records {kafka['for_pipeline']} "
            f"(watermarks say {kafka['by_watermarks']}), extra {extra} (in-flight bound {in_flight_bound}), "
            f"distinct message ids {kafka['distinct_message_ids']}"
            + (f", partial batches {partial}" if partial else ""),
        )
    )
    if spool is not None:
        checks.extend(spool_checks(spool))
    return checks


def spool_checks(spool: SpoolResult) -> list[Check]:
    """The spool's drain (printed) and its own reconciliation: every event its gateway answered 2xx,
    before, during and after the cut, must be in its topic once Kafka is back."""
    checks: list[Check] = []
    for run in spool.runs:
        checks.append(
            Check(
                f"spool: drain once Kafka is back, at {run.connections} connections (printed)",
                None if run.drain.expected == 0 else run.drain.complete,
                f"Kafka cut for {run.cut_seconds:.1f} s; {describe_drain(run.drain)}",
                informational=True,
            )
        )
    kafka = spool.kafka
    distinct = kafka["distinct_message_ids"]
    missing = spool.answered_2xx - distinct
    detail = (
        f"events answered 2xx {spool.answered_2xx} "
        f"(while Kafka was cut {sum(run.drain.expected for run in spool.runs)}), "
        f"records {kafka['for_pipeline']}, distinct message ids {distinct}, "
        + (
            f"missing {missing}"
            if missing > 0
            else f"beyond the answered {-missing} (in flight when wrk stopped, bound {spool.in_flight_bound}; "
            f"or answered non-2xx and published all the same, of {spool.non2xx_events} events answered non-2xx)"
        )
    )
    if any(run.measurement.ok and run.measurement.non2xx for run in spool.runs):
        # wrk cannot say which batch got which answer: with both kinds during a cut, a record of a
        # request answered 503 could stand in for a lost one answered 200.
        detail += "; some requests during the cut were answered 2xx and some not: a count, not a per-id match"
    checks.append(Check("spool: every 2xx from its gateway is a record in Kafka after the drain", missing <= 0, detail))
    duplicates = kafka["for_pipeline"] - distinct
    checks.append(
        Check(
            "spool: no message id twice in the topic",
            duplicates == 0,
            f"{duplicates} duplicate records",
            informational=True,
        )
    )
    return checks


def print_report(
    measurements: list[Measurement],
    checks: list[Check],
    ratios: dict[str, float],
    scenarios: Sequence[Scenario],
    *,
    targets: TargetSet,
) -> None:
    header = (
        f"{'scenario':<9}{'target':<9}{'conns':>6}{'req/s':>11}{'events/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'non-2xx':>9}{'srv cpu':>9}{'cpu ms/req':>11}{'kafka cpu':>10}{'wrk cpu':>9}"
    )
    print()
    print(header)
    print("-" * len(header))
    for m in measurements:
        print(
            f"{m.scenario:<9}{m.target:<9}{m.connections:>6}{m.requests_per_s:>11.1f}{m.events_per_s:>11.0f}"
            f"{m.p50_ms:>9.2f}{m.p99_ms:>9.2f}{m.non2xx:>9}{m.server_cpu_pct:>8.0f}%{m.server_cpu_ms_per_request:>11.2f}"
            f"{m.broker_cpu_pct:>9.0f}%{m.wrk_cpu_pct:>8.0f}%"
        )
    print("(events/s: 2xx req/s x events per request; for bare, what it could take in)")
    print()
    by_name = {s.name: s for s in scenarios}
    for name, ratio in ratios.items():
        scenario = by_name.get(name.split(" ", 1)[0])
        target = targets.of(scenario.name) if scenario else None
        note = ""
        if target and target.min_ratio is None:
            note = "  (printed only; the bare app just reads the body)"
        elif target and target.ratio_informational:
            note = "  (informational)"
        print(f"{name}: {ratio:.1%}{note}")
    print()
    print(f"targets: {targets.name} ({targets.source})")
    for check in checks:
        verdict = {True: "PASS", False: "FAIL", None: "N/A "}[check.passed]
        note = " (informational)" if check.informational else ""
        print(f"[{verdict}] {check.name}{note}: {check.detail}")


def write_results(
    *,
    started_at: datetime,
    loadavg_before: tuple[float, float, float],
    options: dict[str, Any],
    measurements: list[Measurement],
    ratios: dict[str, float],
    kafka: dict[str, Any],
    checks: list[Check],
    spool: SpoolResult | None = None,
) -> Path:
    """bench/results/latest.json: the run's options, every measurement, the Kafka count and the checks."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / "latest.json"
    out.write_text(
        json.dumps(
            {
                "started_at": started_at.isoformat(),
                "command": " ".join([Path(sys.executable).name, *sys.argv]),
                "code": code_version(),
                "machine": {"cpus": os.cpu_count(), "loadavg_before": loadavg_before, "loadavg_after": os.getloadavg()},
                "options": options,
                "measurements": [
                    {
                        **asdict(m),
                        "ok": m.ok,
                        "events_per_s": round(m.events_per_s, 1),
                        "server_cpu_ms_per_request": round(m.server_cpu_ms_per_request, 3),
                    }
                    for m in measurements
                ],
                "ratios": ratios,
                "kafka": kafka,
                **({"spool": spool_json(spool)} if spool is not None else {}),
                "checks": [asdict(c) for c in checks],
            },
            indent=2,
        )
        + "\n"
    )
    return out


def spool_json(spool: SpoolResult) -> dict[str, Any]:
    return {
        "runs": [
            {
                "connections": run.connections,
                "cut_seconds": round(run.cut_seconds, 2),
                "intake_events_per_s": round(run.measurement.events_per_s, 1),
                "statuses": run.measurement.statuses,
                "drain": {**asdict(run.drain), "events_per_s": run.drain.events_per_s},
            }
            for run in spool.runs
        ],
        "kafka": {
            **spool.kafka,
            "answered_2xx": spool.answered_2xx,
            "in_flight_bound": spool.in_flight_bound,
            "gateway_events_total": spool.gateway_events_total,
        },
    }
