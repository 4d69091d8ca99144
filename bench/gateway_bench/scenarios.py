"""The scenarios: one endpoint each with its wrk Lua script (``SCENARIOS``), and driving wrk:
the warm-up and the measurement, wrk's output read into a ``Measurement``, the CPU each process
spent meanwhile, and py-spy when profiling. The spool scenario measures with the gateway's Kafka
cut, then restores it and times the drain (``run_spool_scenario``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.gateway_bench.core import (
    BENCH_DIR,
    RESULTS_DIR,
    BenchError,
    Processes,
    children_cpu_seconds,
    cpu_seconds,
)
from bench.gateway_bench.kafka import Drain, watch_drain
from bench.gateway_bench.servers import TOPIC, CuttableKafka, Server

WRK = shutil.which("wrk") or "/usr/bin/wrk"
WRK_THREADS = 1


@dataclass(frozen=True)
class Scenario:
    """One endpoint and its wrk script (its targets are in ``targets.TARGET_SETS``)."""

    name: str
    path: str  # the URL's path given to wrk; the script may add a query string
    lua_script: Path
    records_per_request: int = 1  # Kafka records one 2xx answer stands for (a batch carries many)
    against_bare: bool = True  # measured against the bare app too (the ratio)
    cuts_kafka: bool = False  # measured while the gateway's Kafka is cut, then drained
    default_connections: tuple[int, ...] | None = None  # when --connections does not say


SCENARIOS = [
    Scenario("track", "/v1/t", BENCH_DIR / "post_event.lua"),
    Scenario("batch", "/v1/batch", BENCH_DIR / "post_batch.lua", records_per_request=100),
    Scenario("pixel", "/v1/pixel/track", BENCH_DIR / "get_pixel.lua"),
    # Batches while the gateway's only way to Kafka is cut: what the spool takes in, then how fast it
    # drains once Kafka is back. Its own gateway and Tansu (behind the proxy); no bare app to compare.
    Scenario(
        "spool",
        "/v1/batch",
        BENCH_DIR / "post_batch.lua",
        records_per_request=100,
        against_bare=False,
        cuts_kafka=True,
        default_connections=(50,),
    ),
]
SCENARIO_NAMES = [s.name for s in SCENARIOS]


@dataclass
class Measurement:
    scenario: str
    target: str
    connections: int
    seconds: float
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    statuses: dict[str, int] = field(default_factory=dict)
    socket_errors: dict[str, int] = field(default_factory=dict)
    server_cpu_pct: float = 0.0
    broker_cpu_pct: float = 0.0
    wrk_cpu_pct: float = 0.0
    records_per_request: int = 1
    partial: int = 0  # 2xx batch answers that rejected some of their events

    @property
    def ok(self) -> int:
        return self.requests - self.non2xx

    @property
    def events_per_s(self) -> float:
        """2xx answers per second times the events each carries (for the bare app: what it could take in)."""
        ok_share = self.ok / self.requests if self.requests else 0.0
        return self.requests_per_s * ok_share * self.records_per_request

    @property
    def server_cpu_ms_per_request(self) -> float:
        """The server's CPU per answered request: what it costs, however busy the rest of the machine is."""
        return 10 * self.server_cpu_pct / self.requests_per_s if self.requests_per_s else 0.0


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_wrk(output: str) -> dict[str, Any]:
    """requests/s, p50 and p99 from wrk's --latency text; exact counts from the Lua done() line."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
    total = re.search(r"^\s+(\d+) requests in ([\d.]+)(us|ms|s|m|h)", output, re.M)
    lua = re.search(r"^BENCH_RESULT (\{.*\})\s*$", output, re.M)
    if not (rps and p50 and p99 and total and lua):
        raise BenchError(f"cannot read wrk's output:\n{output}")
    counts = json.loads(lua.group(1))
    # wrk's own line counts only statuses >= 400; the Lua hook counts every status outside 2xx.
    non2xx_line = re.search(r"^\s+Non-2xx or 3xx responses: (\d+)", output, re.M)
    non2xx = max(int(counts["non2xx"]), int(non2xx_line.group(1)) if non2xx_line else 0)
    return {
        "requests_per_s": float(rps.group(1)),
        "p50_ms": _ms(*p50.groups()),
        "p99_ms": _ms(*p99.groups()),
        "requests": int(total.group(1)),
        "seconds": _ms(total.group(2), total.group(3)) / 1000,
        "non2xx": non2xx,
        "partial": int(counts.get("partial", 0)),
        "statuses": counts["statuses"],
        "socket_errors": {k: v for k, v in counts["errors"].items() if k != "status"},
    }


def measure(
    url: str,
    connections: int,
    duration: int,
    lua_script: Path,
    *,
    lua_args: Sequence[str] = (),
    server_pid: int | None = None,
    broker_pid: int | None = None,
) -> dict[str, Any]:
    """One wrk run: ``wrk -t1 -cN -dDs --latency -s script URL -- args``; parsed figures and CPU shares."""
    command = [
        WRK,
        f"-t{WRK_THREADS}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(lua_script),
        url,
        "--",
        *lua_args,
    ]
    server_before = cpu_seconds(server_pid) if server_pid else 0.0
    broker_before = cpu_seconds(broker_pid) if broker_pid else 0.0
    wrk_before = children_cpu_seconds()
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=duration + 30)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise BenchError(f"wrk failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    figures = parse_wrk(result.stdout)
    figures["server_cpu_pct"] = 100 * (cpu_seconds(server_pid) - server_before) / elapsed if server_pid else 0.0
    figures["broker_cpu_pct"] = 100 * (cpu_seconds(broker_pid) - broker_before) / elapsed if broker_pid else 0.0
    figures["wrk_cpu_pct"] = 100 * (children_cpu_seconds() - wrk_before) / elapsed
    return figures


def start_profiler(pid: int, duration: int, output: Path, processes: Processes) -> subprocess.Popen[bytes]:
    """py-spy, sampling every thread of ``pid`` without pausing it, for ``duration`` seconds."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not py_spy:
        raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
    return processes.add(
        "py-spy",
        subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(duration),
                "--rate",
                "250",
                "--nonblocking",
                "--threads",
                "--format",
                "raw",
                "--output",
                str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    )


def run_scenario(
    scenario: Scenario,
    server: Server,
    connections: int,
    *,
    duration: int,
    warmup: int,
    key: str,
    broker_pid: int | None,
    processes: Processes,
    profile: bool = False,
) -> tuple[Measurement, int, int]:
    """Warm up, then measure. Returns the measurement, the 2xx answers of both runs, and how many
    requests both runs may have left unanswered (for the Kafka reconciliation)."""
    url = server.base_url + scenario.path
    # Part of every message id the script sends: unique per scenario, server, connection count and run.
    tag = f"{scenario.name}-{server.name[0]}{connections}"
    common = {"server_pid": server.process.pid, "broker_pid": broker_pid}
    warm = measure(url, connections, warmup, scenario.lua_script, lua_args=[key, tag + "w"], **common)
    profiler = None
    if profile:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        output = RESULTS_DIR / f"profile-{scenario.name}-{server.name}-c{connections}.txt"
        profiler = start_profiler(server.process.pid, duration, output, processes)
    figures = measure(url, connections, duration, scenario.lua_script, lua_args=[key, tag], **common)
    if profiler is not None:
        try:
            profiler.wait(30)
        except subprocess.TimeoutExpired:
            processes.stop(profiler)
    measurement = Measurement(
        scenario=scenario.name,
        target=server.name,
        connections=connections,
        records_per_request=scenario.records_per_request,
        **figures,
    )
    ok = (warm["requests"] - warm["non2xx"]) + measurement.ok
    # Requests the server may have taken without wrk seeing the answer: one per connection when time is
    # up, plus one per connection wrk dropped on an error.
    unanswered = sum(connections + sum(run["socket_errors"].values()) for run in (warm, figures))
    events = f"  {measurement.events_per_s:.0f} events/s" if scenario.records_per_request > 1 else ""
    partial = f"  partial {measurement.partial}" if measurement.partial else ""
    print(
        f"  {scenario.name:<6} {server.name:<8} c={connections:<3} {measurement.requests_per_s:>9.1f} req/s{events}  "
        f"p50 {measurement.p50_ms:.2f} ms  p99 {measurement.p99_ms:.2f} ms  non-2xx {measurement.non2xx}{partial}",
        file=sys.stderr,
        flush=True,
    )
    return measurement, ok, unanswered


# How long the topic may take to hold every event answered during the cut, after the restore.
DRAIN_TIMEOUT_S = 300.0


@dataclass
class SpoolRun:
    """One spool measurement: a warm-up with Kafka up, wrk with it cut, then the drain."""

    connections: int
    cut_seconds: float  # from the cut to the restore
    measurement: Measurement  # wrk while Kafka was cut
    drain: Drain
    ok_events: int  # events answered 2xx, warm-up included (for the reconciliation)
    unanswered_events: int  # events of requests wrk may have left unanswered (warm-up included)

    @property
    def non2xx_events(self) -> int:
        return self.measurement.non2xx * self.measurement.records_per_request


@dataclass
class SpoolResult:
    """The spool scenario's runs and its own gateway's reconciliation with its own topic."""

    runs: list[SpoolRun]
    answered_2xx: int  # events, the smoke batch included
    in_flight_bound: int
    kafka: dict[str, int]  # count_records of its topic, after its gateway stopped
    gateway_events_total: dict[str, int]

    @property
    def non2xx_events(self) -> int:
        return sum(run.non2xx_events for run in self.runs)


def run_spool_scenario(
    scenario: Scenario,
    server: Server,
    connections: int,
    *,
    duration: int,
    warmup: int,
    key: str,
    pipeline_id: str,
    kafka: CuttableKafka,
    broker_pid: int | None,
) -> SpoolRun:
    """Warm up with Kafka reachable, cut it, measure ``duration`` seconds, restore it, and watch the
    topic until it holds every event answered 2xx during the cut (the drain)."""
    url = server.base_url + scenario.path
    tag = f"{scenario.name}-{server.name[0]}{connections}"  # as run_scenario's: unique per measurement
    common: dict[str, Any] = {"server_pid": server.process.pid, "broker_pid": broker_pid}
    warm = measure(url, connections, warmup, scenario.lua_script, lua_args=[key, tag + "w"], **common)
    kafka.cut()
    cut_at = time.monotonic()
    figures = measure(url, connections, duration, scenario.lua_script, lua_args=[key, tag], **common)
    measurement = Measurement(
        scenario=scenario.name,
        target=server.name,
        connections=connections,
        records_per_request=scenario.records_per_request,
        **figures,
    )
    kafka.restore()
    restored_at = time.monotonic()
    cut_seconds = restored_at - cut_at
    expected = measurement.ok * scenario.records_per_request
    print(
        f"  {scenario.name:<6} {server.name:<8} c={connections:<3} {measurement.requests_per_s:>9.1f} req/s  "
        f"{measurement.events_per_s:.0f} events/s answered 2xx with Kafka cut for {cut_seconds:.1f} s  "
        f"p50 {measurement.p50_ms:.2f} ms  p99 {measurement.p99_ms:.2f} ms  non-2xx {measurement.non2xx} "
        f"{measurement.statuses}; Kafka restored, draining",
        file=sys.stderr,
        flush=True,
    )
    cpu_before = cpu_seconds(server.process.pid)
    drain = watch_drain(
        kafka.bootstrap,
        TOPIC,
        pipeline_id=pipeline_id,
        message_id_prefix=f"py-{tag}-".encode(),  # bench/post_batch.lua's ids: py-<tag>-<thread>-...
        expected=expected,
        restored_at=restored_at,
        timeout=DRAIN_TIMEOUT_S,
    )
    watched = time.monotonic() - restored_at
    drain.server_cpu_pct = 100 * (cpu_seconds(server.process.pid) - cpu_before) / watched if watched else 0.0
    print(f"  {scenario.name:<6} drain: {describe_drain(drain)}", file=sys.stderr, flush=True)
    ok = (warm["requests"] - warm["non2xx"]) + measurement.ok
    unanswered = sum(connections + sum(run["socket_errors"].values()) for run in (warm, figures))
    return SpoolRun(
        connections=connections,
        cut_seconds=cut_seconds,
        measurement=measurement,
        drain=drain,
        ok_events=ok * scenario.records_per_request,
        unanswered_events=unanswered * scenario.records_per_request,
    )


def describe_drain(drain: Drain) -> str:
    if drain.expected == 0:
        text = "nothing was answered 2xx while Kafka was cut, so nothing to drain"
        if drain.arrived:
            text += (
                f"; {drain.arrived} events of requests answered otherwise reached the topic after the restore, "
                f"the last {drain.seconds_to_last:.1f} s after it"
            )
        return text
    if drain.events_per_s is not None and drain.seconds_to_all is not None:
        return (
            f"the topic held all {drain.expected} events answered 2xx {drain.seconds_to_all:.1f} s after Kafka "
            f"came back: {drain.events_per_s:,.0f} events/s (gateway CPU {drain.server_cpu_pct:.0f}%; "
            f"{drain.arrived} events of the cut read in all)"
        )
    return (
        f"only {drain.arrived} of the {drain.expected} events answered 2xx reached the topic "
        f"within {DRAIN_TIMEOUT_S:g} s of the restore"
    )
