"""The soak: the gateway under steady load at about 70% of its measured capacity, watched for growth.

    .venv/bin/python bench/soak.py [--duration 600] [--load 0.7] [--interval 5] [--redis URL]

It starts Tansu, a throwaway SQLite database with one pipeline and the gateway (a real daphne
process, on Redis) as bench/run.py does, then:

1. measures capacity: wrk at 50 connections on ``POST /v1/t`` (bench/post_event.lua), a 2 s warm-up
   then a 5 s burst; capacity is its 2xx requests/s;
2. drives ``POST /v1/t`` at ``--load`` x capacity for ``--duration`` seconds with an open-loop client
   at a fixed rate (bench/gateway_bench/fixed_rate.py, its own process, a fixed pool of 64
   keep-alive connections; why not wrk: see that module);
3. every ``--interval`` seconds samples the gateway's RSS, open file descriptors (/proc/PID/fd),
   threads, CPU, and its event-loop lag: the gauge ``gateway_event_loop_lag_seconds`` from /metrics
   when the gateway has it, and always the latency of ``GET /healthz`` on a fresh connection (the
   median of 3), which measures the lag from outside: loop lag plus a short request's own work;
4. stops the gateway (its producer flushes) and reads the topic back: every request answered 2xx
   must be a record.

It fails (exit 1) on any error, on growth that does not level off, and on a lost event:

- an error is any answer outside 2xx, a connection refused, reset or closed under a request, a
  request unanswered after 10 s, or one the client could not send (its rate not held);
- growth is judged on RSS, open descriptors and threads, over the samples after the first 20% of
  the run (start-up: caches filling, buffers growing to their working size), split by time into
  thirds. A metric grows without levelling off when BOTH its last third's maximum exceeds its middle
  third's maximum by more than an allowance, AND its least-squares slope over the last two thirds
  exceeds a bound. A plateau passes (the last third sets no new high beyond the allowance), a steady
  leak fails both; a step that stays flat afterwards passes unless it is both large and late, which
  a run of this length cannot tell from a leak that has just begun, and fails. Allowances and
  bounds (``GROWTH_RULES``): RSS 2 MiB + 1% and 16 KiB/s (58 MiB/h); descriptors 4 and 0.05/s;
  threads 2 and 0.02/s. The smallest leak it catches is about allowance / (run length x 0.27): in
  60 s ~130 KiB/s of RSS, in 600 s ~13 KiB/s. The loop lag is judged the same way (30 ms + 50%,
  1 ms/s) but only reported: on a shared 2-core machine it follows the neighbours' load.

It prints one line per sample, then a summary table, and writes bench/results/soak-latest.json.
Exit codes: 0 passed, 1 failed, 2 the run itself failed, 130 interrupted. Every process it started
is stopped on the way out.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gateway_bench.core import (  # noqa: E402
    RESULTS_DIR,
    BenchError,
    Processes,
    code_version,
    cpu_seconds,
    http,
    log_tail,
)
from bench.gateway_bench.kafka import count_records  # noqa: E402
from bench.gateway_bench.scenarios import measure  # noqa: E402
from bench.gateway_bench.servers import (  # noqa: E402
    TOPIC,
    Server,
    create_bench_pipeline,
    gateway_env,
    smoke_event,
    start_daphne,
    start_tansu,
    wait_ready,
)

CAPACITY_CONNECTIONS = 50
CAPACITY_WARMUP_S = 2
CAPACITY_S = 5
CLIENT_CONNECTIONS = 64
CLIENT_TIMEOUT_S = 10.0
SETTLE_SHARE = 0.2  # the first 20% of the run is start-up, not judged
HEALTHZ_PROBES = 3
LAG_GAUGE = "gateway_event_loop_lag_seconds"


@dataclass(frozen=True)
class GrowthRule:
    allowance: float  # how far the last third's max may pass the middle third's
    allowance_share: float  # plus this share of the middle third's max
    slope_bound: float  # per second, over the last two thirds
    fails: bool  # False: reported only


GROWTH_RULES = {
    "rss_mib": GrowthRule(allowance=2.0, allowance_share=0.01, slope_bound=16 / 1024, fails=True),
    "fds": GrowthRule(allowance=4, allowance_share=0.0, slope_bound=0.05, fails=True),
    "threads": GrowthRule(allowance=2, allowance_share=0.0, slope_bound=0.02, fails=True),
    "lag_ms": GrowthRule(allowance=30.0, allowance_share=0.5, slope_bound=1.0, fails=False),
}
UNITS = {"rss_mib": "MiB", "fds": "", "threads": "", "lag_ms": "ms"}


@dataclass
class Sample:
    t: float  # seconds since the load started
    rss_mib: float
    fds: int
    threads: int
    cpu_pct: float  # the gateway's, over the interval
    healthz_ms: float
    lag_gauge_ms: float | None  # the gateway's own gauge, when it has one
    client: dict[str, Any] = field(default_factory=dict)  # the client's report for the interval

    @property
    def lag_ms(self) -> float:
        return self.lag_gauge_ms if self.lag_gauge_ms is not None else self.healthz_ms


@dataclass
class Growth:
    metric: str
    judged_samples: int
    first: float
    middle_max: float
    last_max: float
    slope_per_s: float
    limit: float  # middle_max + allowance
    slope_bound: float
    grows: bool
    fails: bool


@dataclass
class Check:
    name: str
    passed: bool | None
    detail: str
    informational: bool = False


# -- sampling -------------------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (the workers of signal_gateway.serve --workers N)."""
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pids
    for child in children:
        pids.extend(process_tree(int(child)))
    return pids


def proc_status(pid: int) -> tuple[int, int]:
    """(RSS in kB, threads) from /proc/PID/status."""
    rss = threads = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    except OSError:
        pass
    return rss, threads


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def healthz_ms(server: Server) -> float:
    """The median latency of a few ``GET /healthz``, each on a fresh connection."""
    times = []
    for _ in range(HEALTHZ_PROBES):
        started = time.monotonic()
        try:
            status, _ = http("GET", server.base_url + "/healthz")
        except OSError:
            status = 0
        elapsed = 1000 * (time.monotonic() - started)
        times.append(elapsed if status == 200 else float("inf"))
    return statistics.median(times)


def lag_gauge_ms(server: Server) -> float | None:
    """The gateway's own event-loop lag gauge from /metrics (the largest series), if it has one."""
    try:
        status, body = http("GET", server.base_url + "/metrics")
    except OSError:
        return None
    if status != 200:
        return None
    values = [
        float(match.group(1))
        for match in re.finditer(rf"^{LAG_GAUGE}(?:\{{[^}}]*\}})? ([0-9.eE+-]+)$", body.decode(), re.M)
    ]
    return 1000 * max(values) if values else None


class ClientLines:
    """The fixed-rate client's JSON lines, read by a thread so the sampler never blocks on them."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.process = process
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            try:
                self.lines.put(json.loads(raw))
            except ValueError:
                print(f"client: {raw.decode(errors='replace').rstrip()}", file=sys.stderr)

    def take(self, timeout: float = 0.0) -> dict[str, Any] | None:
        try:
            return self.lines.get(timeout=timeout) if timeout else self.lines.get_nowait()
        except queue.Empty:
            return None


# -- judging --------------------------------------------------------------------------------------


def slope(points: Sequence[tuple[float, float]]) -> float:
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var if var else 0.0


def judge_growth(metric: str, samples: Sequence[Sample], settle_until: float) -> Growth | None:
    """See the module's docstring; None when too few samples are left to judge."""
    rule = GROWTH_RULES[metric]
    points = [(s.t, float(getattr(s, metric))) for s in samples if s.t >= settle_until]
    points = [(t, v) for t, v in points if v != float("inf")]
    if len(points) < 6:
        return None
    start, end = points[0][0], points[-1][0]
    first_edge, second_edge = start + (end - start) / 3, start + 2 * (end - start) / 3
    middle = [v for t, v in points if first_edge <= t < second_edge]
    last = [v for t, v in points if t >= second_edge]
    if not middle or not last:
        return None
    middle_max, last_max = max(middle), max(last)
    limit = middle_max + rule.allowance + rule.allowance_share * middle_max
    trend = slope([(t, v) for t, v in points if t >= first_edge])
    return Growth(
        metric=metric,
        judged_samples=len(points),
        first=points[0][1],
        middle_max=middle_max,
        last_max=last_max,
        slope_per_s=trend,
        limit=limit,
        slope_bound=rule.slope_bound,
        grows=last_max > limit and trend > rule.slope_bound,
        fails=rule.fails,
    )


def evaluate(
    samples: Sequence[Sample],
    done: dict[str, Any],
    growths: dict[str, Growth | None],
    kafka: dict[str, int],
    rate: float,
    duration: float,
) -> list[Check]:
    checks: list[Check] = []
    errors = sum(done["total_statuses"].values()) + sum(done["total_errors"].values())
    checks.append(
        Check(
            "no errors: every request answered 2xx",
            errors == 0,
            f"{done['total_ok']:,} of {done['total_scheduled']:,} requests 2xx; non-2xx {done['total_statuses']}, "
            f"errors {done['total_errors']}, connections replaced {done.get('total_reconnects', 0)}",
        )
    )
    held = done["total_sent"] / done["total_scheduled"] if done["total_scheduled"] else 0.0
    checks.append(
        Check(
            f"the load held its rate ({rate:,.0f} req/s for {duration:g} s)",
            done["total_scheduled"] >= int(rate * duration) and done["total_sent"] == done["total_scheduled"],
            f"{done['total_sent']:,} sent of {done['total_scheduled']:,} scheduled ({held:.2%})",
        )
    )
    for metric, growth in growths.items():
        rule = GROWTH_RULES[metric]
        unit = UNITS[metric]
        name = f"{metric}: levels off"
        if metric == "lag_ms":
            source = "the gateway's gauge" if any(s.lag_gauge_ms is not None for s in samples) else "/healthz latency"
            name = f"{metric} ({source}): levels off"
        if growth is None:
            checks.append(Check(name, None, "too few samples after start-up to judge", not rule.fails))
            continue
        checks.append(
            Check(
                name,
                not growth.grows,
                f"first {growth.first:.1f}{unit}, middle third max {growth.middle_max:.1f}{unit}, last third max "
                f"{growth.last_max:.1f}{unit} (limit {growth.limit:.1f}{unit}), slope {growth.slope_per_s * 60:+.2f}"
                f"{unit}/min (bound {growth.slope_bound * 60:.2f}{unit}/min)",
                not rule.fails,
            )
        )
    answered = done["total_ok"]
    found = kafka.get("with_prefix", 0)
    checks.append(
        Check(
            "every 2xx is a record in Kafka",
            found >= answered,
            f"answered 2xx {answered:,}, records with the soak's ids {found:,}"
            + (f", beyond the answered {found - answered:,} (answered non-2xx)" if found > answered else ""),
        )
    )
    return checks


# -- output ---------------------------------------------------------------------------------------


def sample_line(sample: Sample) -> str:
    c = sample.client
    errors = sum(c.get("statuses", {}).values()) + sum(c.get("errors", {}).values())
    gauge = f"{sample.lag_gauge_ms:7.2f}" if sample.lag_gauge_ms is not None else "      -"
    return (
        f"{sample.t:7.1f}{c.get('sent', 0):>8}{c.get('ok', 0):>8}{errors:>7}{c.get('p50_ms', 0.0):>9.2f}"
        f"{c.get('p99_ms', 0.0):>9.2f}{sample.rss_mib:>9.1f}{sample.fds:>6}{sample.threads:>5}"
        f"{sample.cpu_pct:>6.0f}%{sample.healthz_ms:>9.2f} {gauge}"
    )


SAMPLE_HEADER = (
    f"{'t s':>7}{'sent':>8}{'2xx':>8}{'errors':>7}{'p50 ms':>9}{'p99 ms':>9}{'rss MiB':>9}{'fds':>6}{'thr':>5}"
    f"{'cpu':>7}{'healthz':>9} {'lag ms':>7}"
)


def print_summary(
    samples: Sequence[Sample], checks: Sequence[Check], *, capacity: float, rate: float, settle_until: float
) -> None:
    judged = [s for s in samples if s.t >= settle_until] or list(samples)
    print()
    print(f"capacity {capacity:,.0f} req/s (wrk, {CAPACITY_CONNECTIONS} connections); load {rate:,.0f} req/s")
    header = f"{'metric':<22}{'min':>10}{'median':>10}{'max':>10}"
    print(header)
    print("-" * len(header))
    rows: list[tuple[str, list[float]]] = [
        ("rss MiB", [s.rss_mib for s in judged]),
        ("open fds", [float(s.fds) for s in judged]),
        ("threads", [float(s.threads) for s in judged]),
        ("gateway cpu %", [s.cpu_pct for s in judged]),
        ("healthz ms", [s.healthz_ms for s in judged if s.healthz_ms != float("inf")]),
        ("lag gauge ms", [s.lag_gauge_ms for s in judged if s.lag_gauge_ms is not None]),
        ("client p50 ms", [s.client.get("p50_ms", 0.0) for s in judged if s.client]),
        ("client p99 ms", [s.client.get("p99_ms", 0.0) for s in judged if s.client]),
    ]
    for name, values in rows:
        if values:
            print(f"{name:<22}{min(values):>10.2f}{statistics.median(values):>10.2f}{max(values):>10.2f}")
        else:
            print(f"{name:<22}{'-':>10}{'-':>10}{'-':>10}")
    print(f"(over the {len(judged)} samples after the first {settle_until:.0f} s)")
    print()
    for check in checks:
        verdict = {True: "PASS", False: "FAIL", None: "N/A "}[check.passed]
        note = " (informational)" if check.informational else ""
        print(f"[{verdict}] {check.name}{note}: {check.detail}")


# -- the run --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600; CI runs 60)")
    parser.add_argument("--load", type=float, default=0.7, help="share of the measured capacity (default 0.7)")
    parser.add_argument("--interval", type=float, help="seconds between samples (default: duration/30, from 2 to 5)")
    parser.add_argument(
        "--redis", default="redis://127.0.0.1:6379/0", metavar="URL", help="the gateway's Redis (default db 0)"
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir (database, server logs)")
    args = parser.parse_args(argv)
    if not 10 <= args.duration <= 24 * 3600:
        parser.error("--duration: 10 s to a day")
    if not 0.05 <= args.load <= 1.0:
        parser.error("--load: a share of capacity, 0.05 to 1")
    if args.interval is None:
        args.interval = min(5.0, max(2.0, args.duration / 30))
    return args


@contextmanager
def temp_dir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sg-soak-"))
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


def take_sample(server: Server, t: float, cpu_before: float, cpu_window: float) -> tuple[Sample, float]:
    pids = process_tree(server.process.pid)
    statuses = [proc_status(pid) for pid in pids]
    cpu_now = cpu_seconds(server.process.pid)  # its worker processes included
    sample = Sample(
        t=t,
        rss_mib=sum(rss for rss, _ in statuses) / 1024,
        fds=sum(open_fds(pid) for pid in pids),
        threads=sum(threads for _, threads in statuses),
        cpu_pct=100 * (cpu_now - cpu_before) / cpu_window if cpu_window > 0 else 0.0,
        healthz_ms=healthz_ms(server),
        lag_gauge_ms=lag_gauge_ms(server),
    )
    return sample, cpu_now


def run(args: argparse.Namespace, work: Path, processes: Processes) -> int:
    started_at = datetime.now(UTC)
    loadavg_before = os.getloadavg()
    broker, bootstrap = start_tansu(log_dir=work, processes=processes)
    env = gateway_env(temp_dir=work, bootstrap=bootstrap, redis_url=args.redis)
    pipeline = create_bench_pipeline(env)
    key = pipeline["pipeline_key"]
    gateway = start_daphne("gateway", "signal_gateway.asgi:application", env=env, log_dir=work, processes=processes)
    wait_ready(gateway)
    smoke_event(gateway, key)
    print(
        f"broker {bootstrap}, gateway {gateway.base_url} (pid {gateway.process.pid}), redis {args.redis}",
        file=sys.stderr,
    )

    # 1. Capacity: what wrk gets through at 50 connections, after a warm-up.
    url = gateway.base_url + "/v1/t"
    lua = ROOT / "bench" / "post_event.lua"
    measure(url, CAPACITY_CONNECTIONS, CAPACITY_WARMUP_S, lua, lua_args=[key, "capw"])
    burst = measure(url, CAPACITY_CONNECTIONS, CAPACITY_S, lua, lua_args=[key, "cap"], server_pid=gateway.process.pid)
    if burst["non2xx"] or any(burst["socket_errors"].values()):
        raise BenchError(f"the capacity burst had errors: {burst['statuses']} {burst['socket_errors']}")
    capacity = burst["requests_per_s"]
    rate = round(args.load * capacity, 1)
    print(
        f"capacity {capacity:,.0f} req/s (p99 {burst['p99_ms']:.1f} ms, gateway CPU {burst['server_cpu_pct']:.0f}%); "
        f"soak at {rate:,.0f} req/s ({args.load:.0%}) for {args.duration:g} s, a sample every {args.interval:g} s",
        file=sys.stderr,
        flush=True,
    )

    # 2. The load, and 3. the samples.
    tag = "soak"
    client = processes.add(
        "fixed-rate client",
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.gateway_bench.fixed_rate",
                "--url",
                url,
                "--key",
                key,
                "--rate",
                str(rate),
                "--duration",
                str(args.duration),
                "--interval",
                str(args.interval),
                "--connections",
                str(CLIENT_CONNECTIONS),
                "--timeout",
                str(CLIENT_TIMEOUT_S),
                "--tag",
                tag,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            start_new_session=True,
        ),
    )
    lines = ClientLines(client)
    samples: list[Sample] = []
    done: dict[str, Any] | None = None
    print(SAMPLE_HEADER, file=sys.stderr)
    cpu_before = cpu_seconds(gateway.process.pid)
    last_at = time.monotonic()
    started = last_at
    while done is None:
        line = lines.take(timeout=args.interval + CLIENT_TIMEOUT_S + 5)
        if line is None:
            if client.poll() is not None:
                raise BenchError(f"the fixed-rate client exited ({client.returncode}) without its final line")
            raise BenchError("the fixed-rate client went silent")
        now = time.monotonic()
        sample, cpu_before = take_sample(gateway, now - started, cpu_before, now - last_at)
        last_at = now
        sample.client = line
        if line.get("done"):
            done = line
        else:
            samples.append(sample)
            print(sample_line(sample), file=sys.stderr, flush=True)
        if gateway.process.poll() is not None:
            raise BenchError(f"the gateway exited ({gateway.process.returncode}):\n{log_tail(gateway.log_path)}")
    client.wait(30)

    # 4. Nothing answered is lost.
    processes.stop(gateway.process)
    kafka = count_records(
        bootstrap, TOPIC, pipeline_id=pipeline["pipeline_id"], message_id_prefix=f"ajs-{tag}-".encode()
    )

    settle_until = SETTLE_SHARE * args.duration
    growths = {metric: judge_growth(metric, samples, settle_until) for metric in GROWTH_RULES}
    checks = evaluate(samples, done, growths, kafka, rate, args.duration)
    print_summary(samples, checks, capacity=capacity, rate=rate, settle_until=settle_until)

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / "soak-latest.json"
    out.write_text(
        json.dumps(
            {
                "started_at": started_at.isoformat(),
                "command": " ".join([Path(sys.executable).name, *sys.argv]),
                "code": code_version(),
                "machine": {"cpus": os.cpu_count(), "loadavg_before": loadavg_before, "loadavg_after": os.getloadavg()},
                "options": {"duration_s": args.duration, "load": args.load, "interval_s": args.interval},
                "capacity": {"requests_per_s": capacity, "connections": CAPACITY_CONNECTIONS, **burst},
                "rate": rate,
                "client": done,
                "samples": [{**asdict(s), "healthz_ms": _finite(s.healthz_ms)} for s in samples],
                "growth": {metric: asdict(g) if g else None for metric, g in growths.items()},
                "kafka": kafka,
                "checks": [asdict(c) for c in checks],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nresults: {out.relative_to(ROOT)}")
    return 0 if all(c.passed is not False or c.informational for c in checks) else 1


def _finite(value: float) -> float | None:
    return None if value == float("inf") else round(value, 3)


def _on_terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
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
        print(f"soak failed to run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; every process this run started is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
