"""The run from the command line: bench/run.py's arguments, the order of a run (servers, smoke
requests, scenarios, the Kafka count, the report) and its exit codes. bench/run.py is its entry point."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.gateway_bench.core import ROOT, BenchError, Processes
from bench.gateway_bench.kafka import count_records
from bench.gateway_bench.report import evaluate, gateway_bare_ratios, print_report, write_results
from bench.gateway_bench.scenarios import (
    SCENARIO_NAMES,
    SCENARIOS,
    WRK_THREADS,
    Measurement,
    Scenario,
    SpoolResult,
    run_scenario,
    run_spool_scenario,
)
from bench.gateway_bench.servers import (
    TOPIC,
    CuttableKafka,
    create_bench_pipeline,
    gateway_counts,
    gateway_env,
    smoke_batch,
    smoke_event,
    smoke_pixel,
    start_daphne,
    start_tansu,
    wait_ready,
)
from bench.gateway_bench.targets import DEFAULT_TARGETS, TARGET_SETS

WARMUP_SECONDS = 2

MAX_DURATION_SECONDS = 300
DEFAULT_CONNECTIONS = [10, 50]


def _on_terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_duration(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*s?\s*", text)
    if not match or not 1 <= int(match.group(1)) <= MAX_DURATION_SECONDS:
        raise argparse.ArgumentTypeError(f"a duration in seconds, 1 to {MAX_DURATION_SECONDS}, like 10s")
    return int(match.group(1))


def parse_connections(text: str) -> tuple[str | None, list[int]]:
    """``10,50`` (every scenario) or ``batch=10,50`` (one scenario)."""
    name, _, counts = text.rpartition("=")
    name = name.strip()
    if "=" in text and name not in SCENARIO_NAMES:
        raise argparse.ArgumentTypeError(f"unknown scenario {name!r}; one of {', '.join(SCENARIO_NAMES)}")
    try:
        values = [int(part) for part in counts.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of connection counts, like 10,50") from None
    if not values or any(not 1 <= v <= 1000 for v in values):
        raise argparse.ArgumentTypeError("connection counts from 1 to 1000")
    return (name or None), values


def parse_scenarios(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if text.strip() == "all":
        return list(SCENARIO_NAMES)
    unknown = [n for n in names if n not in SCENARIO_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"a comma-separated list of {', '.join(SCENARIO_NAMES)} (or all)")
    return [n for n in SCENARIO_NAMES if n in names]  # SCENARIOS' order, each once


def connections_by_scenario(
    specs: Sequence[tuple[str | None, list[int]]], names: Sequence[str]
) -> dict[str, list[int]]:
    """Each scenario's connection counts: its own ``NAME=`` spec, else the last plain one, else the
    scenario's default (spool: 50), else 10,50."""
    plain: list[int] | None = None
    own: dict[str, list[int]] = {}
    for name, values in specs:
        if name is None:
            plain = values
        else:
            own[name] = values
    defaults = {s.name: list(s.default_connections or DEFAULT_CONNECTIONS) for s in SCENARIOS}
    return {name: own.get(name, plain or defaults.get(name, DEFAULT_CONNECTIONS)) for name in names}


def parse_args(argv: Sequence[str] | None = None, *, description: str | None = None) -> argparse.Namespace:
    """bench/run.py's arguments; ``description`` is its docstring, shown by ``--help``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=parse_duration, default=10, help="seconds per measurement (default 10s)")
    parser.add_argument("--warmup", type=parse_duration, default=WARMUP_SECONDS, help="seconds of warm-up before each")
    parser.add_argument(
        "--scenarios",
        type=parse_scenarios,
        help=f"comma-separated, of {','.join(SCENARIO_NAMES)}, or all (default: the target set's)",
    )
    parser.add_argument(
        "--targets",
        choices=sorted(TARGET_SETS),
        default=DEFAULT_TARGETS,
        help=f"the targets the run is judged by (default {DEFAULT_TARGETS}; see bench/gateway_bench/targets.py)",
    )
    parser.add_argument(
        "--connections",
        type=parse_connections,
        action="append",
        default=[],
        metavar="[NAME=]N,N",
        help='connection counts, for every scenario ("10,50", the default) or for one ("batch=10,50"); repeatable',
    )
    parser.add_argument(
        "--redis", metavar="URL", help="use this Redis for the cache and key store (default: in-process)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample each server with py-spy during each measurement (figures are perturbed); "
        "writes bench/results/profile-*.txt (collapsed stacks) for bench/profile_summary.py",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gateway processes on the port (signal_gateway.serve); the targets are for one (default 1)",
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir (database, server logs)")
    args = parser.parse_args(argv)
    targets = TARGET_SETS[args.targets]
    if args.scenarios is None:
        args.scenarios = [n for n in SCENARIO_NAMES if n in targets.default_scenarios]
    if targets.needs_redis and not args.redis:
        parser.error(
            f"--targets {targets.name} is judged with the gateway on Redis (dedup and rate limits across "
            "processes): give --redis URL (e.g. redis://127.0.0.1:6379/10), or --targets issue8"
        )
    return args


@contextmanager
def temp_dir(keep: bool) -> Iterator[Path]:
    """The run's database and server logs; kept when asked, or when the run failed (to read the logs)."""
    path = Path(tempfile.mkdtemp(prefix="sg-bench-"))
    try:
        yield path
    except BenchError:
        keep = True
        raise
    finally:
        if keep:
            print(f"temp dir kept: {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def run(args: argparse.Namespace, work: Path, processes: Processes) -> int:
    targets = TARGET_SETS[args.targets]
    scenarios = [s for s in SCENARIOS if s.name in args.scenarios]
    connections = connections_by_scenario(args.connections, [s.name for s in scenarios])
    loadavg_before = os.getloadavg()
    started_at = datetime.now(UTC)
    broker, bootstrap = start_tansu(log_dir=work, processes=processes)
    env = gateway_env(temp_dir=work, bootstrap=bootstrap, redis_url=args.redis)
    pipeline = create_bench_pipeline(env)
    key = pipeline["pipeline_key"]

    gateway = start_daphne(
        "gateway", "signal_gateway.asgi:application", env=env, log_dir=work, processes=processes, workers=args.workers
    )
    bare = start_daphne("bare", "bench.bare_asgi:application", env=env, log_dir=work, processes=processes)
    wait_ready(gateway)
    smoke_event(gateway, key)
    answered_2xx = 1  # the smoke events, one record each
    if "batch" in args.scenarios:
        answered_2xx += smoke_batch(gateway, key)
    if "pixel" in args.scenarios:
        answered_2xx += smoke_pixel(gateway, key)
    in_flight_bound = 0
    print(
        f"broker {bootstrap}, gateway {gateway.base_url} (pid {gateway.process.pid}), "
        f"bare {bare.base_url} (pid {bare.process.pid}), cache {'redis' if args.redis else 'in-process'}",
        file=sys.stderr,
        flush=True,
    )

    measurements: list[Measurement] = []
    spool: SpoolResult | None = None
    for scenario in scenarios:
        if scenario.cuts_kafka:
            spool = measure_spool(
                scenario,
                connections[scenario.name],
                args=args,
                work=work,
                processes=processes,
                key=key,
                pipeline_id=pipeline["pipeline_id"],
            )
            measurements.extend(run.measurement for run in spool.runs)
            continue
        for count in connections[scenario.name]:
            for server in (bare, gateway):
                measurement, ok, unanswered = run_scenario(
                    scenario,
                    server,
                    count,
                    duration=args.duration,
                    warmup=args.warmup,
                    key=key,
                    broker_pid=broker.pid,
                    processes=processes,
                    profile=args.profile,
                )
                measurements.append(measurement)
                if server is gateway:
                    answered_2xx += ok * scenario.records_per_request
                    in_flight_bound += unanswered * scenario.records_per_request

    # The gateway's own count of what it accepted, rejected and dropped, per input (before it stops).
    events_by_outcome = gateway_counts(gateway)
    # Stopping the gateway flushes its producer, so what the count sees is final.
    processes.stop(gateway.process)
    kafka = count_records(bootstrap, TOPIC, pipeline_id=pipeline["pipeline_id"])
    print(
        f"kafka: {answered_2xx} events answered 2xx by the gateway, {kafka['for_pipeline']} records for the bench "
        f"pipeline read back ({kafka['read']} read from {TOPIC}; its watermarks say {kafka['by_watermarks']}); "
        f"the gateway counted {events_by_outcome}",
        file=sys.stderr,
    )

    ratios = gateway_bare_ratios(measurements, scenarios, connections)
    cut = {s.name for s in scenarios if s.cuts_kafka}  # reconciled on their own
    partial = sum(m.partial for m in measurements if m.target == "gateway" and m.scenario not in cut)
    checks = evaluate(
        scenarios, measurements, kafka, answered_2xx, in_flight_bound, partial, targets=targets, spool=spool
    )
    print_report(measurements, checks, ratios, scenarios, targets=targets)

    out = write_results(
        started_at=started_at,
        loadavg_before=loadavg_before,
        options={
            "scenarios": [s.name for s in scenarios],
            "targets": {
                "name": targets.name,
                "source": targets.source,
                **{k: asdict(v) for k, v in targets.scenarios.items()},
            },
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": connections,
            "cache": "redis" if args.redis else "in-process",
            "gateway_workers": args.workers,
            "wrk_threads": WRK_THREADS,
            "profiled": args.profile,
        },
        measurements=measurements,
        ratios=ratios,
        kafka={
            **kafka,
            "answered_2xx": answered_2xx,
            "in_flight_bound": in_flight_bound,
            "partial_batches": partial,
            "gateway_events_total": events_by_outcome,
        },
        checks=checks,
        spool=spool,
    )
    print(f"\nresults: {out.relative_to(ROOT)}")
    return 0 if all(c.passed is not False or c.informational for c in checks) else 1


def measure_spool(
    scenario: Scenario,
    counts: Sequence[int],
    *,
    args: argparse.Namespace,
    work: Path,
    processes: Processes,
    key: str,
    pipeline_id: str,
) -> SpoolResult:
    """The spool scenario on its own gateway (same database and pipeline, its own var dir and so its
    own spool) whose only way to its own Tansu is a proxy the bench cuts: each connection count is a
    cut, a measurement, a restore and a drain. Then that gateway stops (flushing its producer) and
    its topic is counted against what it answered 2xx."""
    kafka = CuttableKafka(log_dir=work, processes=processes)
    var_dir = work / "spool-gateway"
    var_dir.mkdir()
    env = gateway_env(temp_dir=work, bootstrap=kafka.bootstrap, redis_url=args.redis, var_dir=var_dir)
    gateway = start_daphne(
        "gateway",
        "signal_gateway.asgi:application",
        env=env,
        log_dir=work,
        processes=processes,
        workers=args.workers,
        log_name="gateway-spool",
    )
    wait_ready(gateway)
    answered_2xx = smoke_batch(gateway, key, message_id="bench-smoke-spool-1")
    print(
        f"spool: gateway {gateway.base_url} (pid {gateway.process.pid}), Kafka through a proxy at {kafka.bootstrap}",
        file=sys.stderr,
        flush=True,
    )
    runs = []
    for count in counts:
        run = run_spool_scenario(
            scenario,
            gateway,
            count,
            duration=args.duration,
            warmup=args.warmup,
            key=key,
            pipeline_id=pipeline_id,
            kafka=kafka,
            broker_pid=kafka.broker.pid,
        )
        runs.append(run)
        answered_2xx += run.ok_events
    events_by_outcome = gateway_counts(gateway)
    processes.stop(gateway.process)
    records = count_records(kafka.bootstrap, TOPIC, pipeline_id=pipeline_id)
    print(
        f"spool kafka: {answered_2xx} events answered 2xx by the spool's gateway, {records['for_pipeline']} records "
        f"read back; the gateway counted {events_by_outcome}",
        file=sys.stderr,
    )
    return SpoolResult(
        runs=runs,
        answered_2xx=answered_2xx,
        in_flight_bound=sum(run.unanswered_events for run in runs),
        kafka=records,
        gateway_events_total=events_by_outcome,
    )


def main(argv: Sequence[str] | None = None, *, description: str | None = None) -> int:
    """The whole run; the exit code: 0 every target met, 1 a target or the Kafka check failed, 2 the
    run itself failed, 130 interrupted."""
    args = parse_args(argv, description=description)
    # Ctrl-C must reach the cleanup even when started from a shell that ignores SIGINT (e.g. with &).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_terminate)
    signal.signal(signal.SIGHUP, _on_terminate)
    processes = Processes()
    try:
        with temp_dir(args.keep_temp) as work:
            try:
                return run(args, work, processes)
            finally:
                processes.stop_all()
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; every process this run started is stopped", file=sys.stderr)
        return 130
