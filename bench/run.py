"""The ingestion benchmark: the gateway against a bare ASGI app under the same daphne, in one run.

    .venv/bin/python bench/run.py [--scenarios track,batch,pixel] [--duration 10s]
                                  [--connections 10,50] [--connections batch=10,50] [--redis URL]

It starts a Tansu broker, a throwaway SQLite database with one pipeline, the gateway and the bare
app (bench/bare_asgi.py) on free 127.0.0.1 ports, drives each scenario with wrk at each connection
count (a short warm-up before every measurement), then checks that every event the gateway
answered 2xx is a record in Kafka (a batch answer stands for its 100 events). It prints a table and
pass/fail against the targets, writes bench/results/latest.json, and exits 1 when a target or the
Kafka check fails (2 when the run itself fails, 130 on Ctrl-C). Informational checks are printed but
never fail the run. Every process it starts is stopped on the way out, Ctrl-C included.

A scenario is one endpoint with its wrk Lua script, in ``SCENARIOS``:

    track  POST /v1/t                one analytics.js track event (bench/post_event.lua)
    batch  POST /v1/batch            100 analytics-python events per request (bench/post_batch.lua)
    pixel  GET  /v1/pixel/track?...  an email open (bench/get_pixel.lua)

``--connections`` sets every scenario's connection counts; ``--connections NAME=10,50`` one
scenario's (it may be given several times).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"
sys.path.insert(0, str(ROOT))

from signal_gateway.devbroker import start_broker, wait_for_port  # noqa: E402

HOST = "127.0.0.1"
# Both servers run as bin/docker-entrypoint runs the gateway: no per-request access log.
DAPHNE_FLAGS = ("-v", "0")
TOPIC = "raw-events"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
WRK_THREADS = 1
WARMUP_SECONDS = 2
MAX_DURATION_SECONDS = 300

# The targets: the gateway keeps at least half the bare app's throughput, and stays fast when lightly loaded;
# a batch of server-side events goes through at 40,000 events/s or more on one process.
MIN_THROUGHPUT_RATIO = 0.5
THROUGHPUT_AT_CONNECTIONS = 50
MAX_P99_MS = 25.0
P99_AT_CONNECTIONS = 10
MIN_BATCH_EVENTS_PER_S = 40_000
DEFAULT_CONNECTIONS = [10, 50]

# Variables of the caller's shell that would point the gateway at something other than this run's services.
_INHERITED_SETTINGS = (
    "DATABASE_URL",
    "REDIS_URL",
    "GATEWAY_VAR_DIR",
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_TOPIC",
    "DEBUG",
    "DJANGO_SETTINGS_MODULE",
)


@dataclass(frozen=True)
class Scenario:
    """One endpoint, its wrk script and its targets (each at THROUGHPUT_AT_CONNECTIONS or P99_AT_CONNECTIONS)."""

    name: str
    path: str  # the URL's path given to wrk; the script may add a query string
    lua_script: Path
    records_per_request: int = 1  # Kafka records one 2xx answer stands for (a batch carries many)
    min_ratio: float | None = MIN_THROUGHPUT_RATIO  # gateway/bare req/s; None: the ratio is printed only
    ratio_informational: bool = False  # the ratio check is reported but never fails the run
    max_p99_ms: float | None = MAX_P99_MS
    min_events_per_s: float | None = None  # gateway events/s (2xx req/s x records_per_request)


SCENARIOS = [
    Scenario("track", "/v1/t", BENCH_DIR / "post_event.lua"),
    # A 60 kB batch is not held to a per-request latency or to the bare app's rate (which only reads
    # the body): its target is events through to Kafka per second.
    Scenario(
        "batch",
        "/v1/batch",
        BENCH_DIR / "post_batch.lua",
        records_per_request=100,
        min_ratio=None,
        max_p99_ms=None,
        min_events_per_s=MIN_BATCH_EVENTS_PER_S,
    ),
    Scenario("pixel", "/v1/pixel/track", BENCH_DIR / "get_pixel.lua", ratio_informational=True, max_p99_ms=None),
]
SCENARIO_NAMES = [s.name for s in SCENARIOS]


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"


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


@dataclass
class Check:
    name: str
    passed: bool | None  # None: not measured in this run
    detail: str
    informational: bool = False  # reported, but never fails the run


class BenchError(Exception):
    pass


# -- processes ------------------------------------------------------------------------------------


class Processes:
    """Every process this run started; stopped newest first, however the run ends."""

    def __init__(self) -> None:
        self._started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def add(self, name: str, process: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self._started.append((name, process))
        return process

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self) -> None:
        while self._started:
            name, process = self._started.pop()
            try:
                self.stop(process)
            except BaseException as exc:  # a second Ctrl-C must not leave the rest running
                process.kill()
                print(f"stopping {name} (pid {process.pid}): {exc!r}", file=sys.stderr)


def _on_terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads and live child processes included (the
    workers of ``--workers N``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(int(child)) for child in children)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def code_version() -> dict[str, Any]:
    """The commit measured, and whether tracked files differed from it (read-only git calls)."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", "--no-optional-locks", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        return result.stdout.strip() if result.returncode == 0 else ""

    try:
        return {
            "commit": git("rev-parse", "HEAD"),
            "modified": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": "", "modified": None}


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- setup ----------------------------------------------------------------------------------------


def gateway_env(*, temp_dir: Path, bootstrap: str, redis_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED_SETTINGS}
    env.update(
        DJANGO_SETTINGS_MODULE="signal_gateway.settings",
        DATABASE_URL=f"sqlite:///{temp_dir / 'db.sqlite3'}",
        GATEWAY_VAR_DIR=str(temp_dir),
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        KAFKA_TOPIC=TOPIC,
        PYTHONUNBUFFERED="1",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 120.0) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise BenchError(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def create_bench_pipeline(env: dict[str, str]) -> dict[str, Any]:
    manage(env, "migrate", "--noinput", "-v", "0")
    out = manage(env, "create_pipeline", "--name", "Bench", "--json")
    return json.loads(out.strip().splitlines()[-1])


def start_daphne(
    name: str, app: str, *, env: dict[str, str], log_dir: Path, processes: Processes, workers: int = 1
) -> Server:
    port = free_port()
    log_path = log_dir / f"{name}.log"
    command = [sys.executable, "-m", "daphne", *DAPHNE_FLAGS, "-b", HOST, "-p", str(port), app]
    if workers > 1:  # several daphne processes on the port, as signal_gateway.serve runs them
        command = [
            sys.executable,
            "-m",
            "signal_gateway.serve",
            "--workers",
            str(workers),
            "--bind",
            HOST,
            "--port",
            str(port),
        ]
    with open(log_path, "wb") as log:
        # Its own session: Ctrl-C reaches only this script, which then stops the servers in order.
        process = processes.add(
            name,
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            ),
        )
    try:
        wait_for_port(port, timeout=30)
    except TimeoutError:
        raise BenchError(f"{name} did not start:\n{log_tail(log_path)}") from None
    return Server(name=name, port=port, process=process, log_path=log_path)


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never goes via a proxy


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _opener.open(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(server: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    status, body = 0, b""
    while time.monotonic() < deadline:
        try:
            status, body = http("GET", server.base_url + "/readyz")
        except OSError as exc:
            status, body = 0, str(exc).encode()
        if status == 200:
            return
        time.sleep(0.2)
    raise BenchError(
        f"{server.name} not ready after {timeout:g}s: {status} {body[:300]!r}\n{log_tail(server.log_path)}"
    )


def smoke_event(server: Server, key: str) -> None:
    """One event by hand, so a wrong key or a broken endpoint fails here and not as 10 s of 401s."""
    event = {"type": "track", "event": "Bench Smoke", "anonymousId": "bench-smoke", "messageId": "bench-smoke-1"}
    status, body = http(
        "POST",
        server.base_url + "/v1/t",
        json.dumps(event).encode(),
        {"Authorization": f"Bearer {key}", "Content-Type": "text/plain"},
    )
    if status != 200:
        raise BenchError(f"smoke event answered {status}: {body[:300]!r}\n{log_tail(server.log_path)}")


def smoke_batch(server: Server, key: str) -> int:
    """One batch of one event, keyed as Segment's server SDKs do; returns the events accepted (1)."""
    batch = {
        "batch": [
            {
                "type": "track",
                "event": "Bench Smoke",
                "userId": "bench-smoke",
                "messageId": "bench-smoke-batch-1",
                "timestamp": "2024-05-01T12:00:00.000000+00:00",
                "context": {"library": {"name": "analytics-python", "version": "2.3.2"}},
            }
        ],
        "sentAt": "2024-05-01T12:00:00.500000+00:00",
    }
    basic = base64.b64encode(f"{key}:".encode()).decode()
    status, body = http(
        "POST",
        server.base_url + "/v1/batch",
        json.dumps(batch).encode(),
        {"Authorization": f"Basic {basic}", "Content-Type": "application/json"},
    )
    answer = json.loads(body) if status == 200 else {}
    if status != 200 or answer.get("accepted") != 1:
        raise BenchError(f"smoke batch answered {status}: {body[:300]!r}\n{log_tail(server.log_path)}")
    return 1


def gateway_counts(server: Server) -> dict[str, int]:
    """``gateway_events_total`` from the gateway's /metrics, as ``source/outcome``: how many events
    each input accepted, rejected or dropped (the pixel answers its GIF even when it drops one)."""
    status, body = http("GET", server.base_url + "/metrics")
    if status != 200:
        raise BenchError(f"/metrics answered {status}: {body[:300]!r}")
    counts: dict[str, int] = {}
    for line in body.decode().splitlines():
        match = re.match(r"^gateway_events_total\{(.*)\} (\d+)$", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            name = f"{labels.get('source', '?')}/{labels.get('outcome', '?')}"
            counts[name] = counts.get(name, 0) + int(match.group(2))
    return counts


def smoke_pixel(server: Server, key: str) -> int:
    """One pixel, then /metrics to see it was published: the GIF alone says nothing (it is answered
    for a bad key too). Returns the events published (1)."""
    before = gateway_counts(server).get("pixel/accepted", 0)
    query = urllib.parse.urlencode({"wk": key, "e": "Bench Smoke", "uid": "bench-smoke", "mid": "bench-smoke-pixel-1"})
    status, body = http("GET", f"{server.base_url}/v1/pixel/track?{query}")
    after = gateway_counts(server)
    if status != 200 or not body.startswith(b"GIF") or after.get("pixel/accepted", 0) != before + 1:
        raise BenchError(
            f"smoke pixel answered {status} {body[:16]!r}; gateway counts {after}\n{log_tail(server.log_path)}"
        )
    return 1


# -- measuring ------------------------------------------------------------------------------------

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


# -- Kafka ----------------------------------------------------------------------------------------


def count_records(
    bootstrap: str, topic: str, *, pipeline_id: str, timeout: float = 120.0, idle: float = 2.0
) -> dict[str, int]:
    """The bench pipeline's records in the topic, read back by assignment from the beginning (a group
    join takes ~20 s on Tansu), and how many distinct message ids they carry.

    The watermarks are reported too, but not trusted: Tansu 0.6 (memory storage) answers a high
    watermark short of the records it serves, so reading stops only after every partition reached its
    end and ``idle`` seconds passed with nothing new (the gateway is stopped by then)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-unused",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions) if topic in metadata.topics else []
        if not partitions:
            raise BenchError(f"topic {topic} has no partitions")
        by_watermarks = 0
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            by_watermarks += high - low
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        read = for_pipeline = 0
        message_ids: set[bytes] = set()
        deadline = time.monotonic() + timeout
        last_record = time.monotonic()
        while True:
            now = time.monotonic()
            if len(at_end) == len(partitions) and now - last_record >= idle:
                break
            if now >= deadline:
                raise BenchError(f"could not read {topic} to its end within {timeout:g}s")
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                    continue
                last_record = time.monotonic()
                at_end.discard(msg.partition())
                read += 1
                headers = dict(msg.headers() or [])
                if headers.get("pipeline_id", b"").decode() == pipeline_id:
                    for_pipeline += 1
                    message_ids.add(headers.get("message_id", b""))
        return {
            "read": read,
            "for_pipeline": for_pipeline,
            "distinct_message_ids": len(message_ids),
            "by_watermarks": by_watermarks,
        }
    finally:
        consumer.close()


# -- verdicts and output --------------------------------------------------------------------------


def find(measurements: list[Measurement], scenario: str, target: str, connections: int) -> Measurement | None:
    for m in measurements:
        if (m.scenario, m.target, m.connections) == (scenario, target, connections):
            return m
    return None


def evaluate(
    scenarios: Sequence[Scenario],
    measurements: list[Measurement],
    kafka: dict[str, int],
    answered_2xx: int,
    in_flight_bound: int,
    partial: int = 0,
) -> list[Check]:
    checks: list[Check] = []
    at = THROUGHPUT_AT_CONNECTIONS
    for scenario in scenarios:
        gateway = find(measurements, scenario.name, "gateway", at)
        if scenario.min_events_per_s is not None:
            name = f"{scenario.name}: gateway events/s >= {scenario.min_events_per_s:,.0f} at {at} connections"
            if gateway:
                detail = (
                    f"{gateway.events_per_s:,.0f} events/s ({gateway.requests_per_s:.1f} req/s x "
                    f"{scenario.records_per_request}, {gateway.non2xx} non-2xx, {gateway.partial} partial)"
                )
                passed = gateway.events_per_s >= scenario.min_events_per_s and not gateway.partial
                checks.append(Check(name, passed, detail))
            else:
                checks.append(Check(name, None, "not measured"))
        if scenario.min_ratio is not None:
            bare = find(measurements, scenario.name, "bare", at)
            name = f"{scenario.name}: gateway req/s >= {scenario.min_ratio:.0%} of bare at {at} connections"
            informational = scenario.ratio_informational
            if gateway and bare and bare.requests_per_s:
                ratio = gateway.requests_per_s / bare.requests_per_s
                detail = f"{gateway.requests_per_s:.0f} / {bare.requests_per_s:.0f} = {ratio:.1%}"
                checks.append(Check(name, ratio >= scenario.min_ratio, detail, informational))
            else:
                checks.append(Check(name, None, "not measured", informational))
        if scenario.max_p99_ms is not None:
            gateway = find(measurements, scenario.name, "gateway", P99_AT_CONNECTIONS)
            name = f"{scenario.name}: gateway p99 < {scenario.max_p99_ms:g} ms at {P99_AT_CONNECTIONS} connections"
            if gateway:
                checks.append(Check(name, gateway.p99_ms < scenario.max_p99_ms, f"p99 {gateway.p99_ms:.2f} ms"))
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
    return checks


def print_report(
    measurements: list[Measurement], checks: list[Check], ratios: dict[str, float], scenarios: Sequence[Scenario]
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
        note = ""
        if scenario and scenario.min_ratio is None:
            note = "  (printed only; the bare app just reads the body)"
        elif scenario and scenario.ratio_informational:
            note = "  (informational)"
        print(f"{name}: {ratio:.1%}{note}")
    print()
    for check in checks:
        verdict = {True: "PASS", False: "FAIL", None: "N/A "}[check.passed]
        note = " (informational)" if check.informational else ""
        print(f"[{verdict}] {check.name}{note}: {check.detail}")


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
    """Each scenario's connection counts: its own ``NAME=`` spec, else the last plain one, else 10,50."""
    default = DEFAULT_CONNECTIONS
    own: dict[str, list[int]] = {}
    for name, values in specs:
        if name is None:
            default = values
        else:
            own[name] = values
    return {name: own.get(name, default) for name in names}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=parse_duration, default=10, help="seconds per measurement (default 10s)")
    parser.add_argument("--warmup", type=parse_duration, default=WARMUP_SECONDS, help="seconds of warm-up before each")
    parser.add_argument(
        "--scenarios",
        type=parse_scenarios,
        default=list(SCENARIO_NAMES),
        help=f"comma-separated, of {','.join(SCENARIO_NAMES)} (default: all)",
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
    return parser.parse_args(argv)


# -- the run --------------------------------------------------------------------------------------


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
    scenarios = [s for s in SCENARIOS if s.name in args.scenarios]
    connections = connections_by_scenario(args.connections, [s.name for s in scenarios])
    loadavg_before = os.getloadavg()
    started_at = datetime.now(UTC)
    broker_port = free_port()
    bootstrap = f"{HOST}:{broker_port}"
    broker = processes.add("tansu", start_broker(broker_port, log_path=str(work / "tansu.log")))
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
    for scenario in scenarios:
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

    ratios: dict[str, float] = {}
    for scenario in scenarios:
        for count in connections[scenario.name]:
            g = find(measurements, scenario.name, "gateway", count)
            b = find(measurements, scenario.name, "bare", count)
            if g and b and b.requests_per_s:
                ratios[f"{scenario.name} gateway/bare req/s at {count} connections"] = (
                    g.requests_per_s / b.requests_per_s
                )
    partial = sum(m.partial for m in measurements if m.target == "gateway")
    checks = evaluate(scenarios, measurements, kafka, answered_2xx, in_flight_bound, partial)
    print_report(measurements, checks, ratios, scenarios)

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / "latest.json"
    out.write_text(
        json.dumps(
            {
                "started_at": started_at.isoformat(),
                "command": " ".join([Path(sys.executable).name, *sys.argv]),
                "code": code_version(),
                "machine": {"cpus": os.cpu_count(), "loadavg_before": loadavg_before, "loadavg_after": os.getloadavg()},
                "options": {
                    "scenarios": [s.name for s in scenarios],
                    "duration_s": args.duration,
                    "warmup_s": args.warmup,
                    "connections": connections,
                    "cache": "redis" if args.redis else "in-process",
                    "gateway_workers": args.workers,
                    "wrk_threads": WRK_THREADS,
                    "profiled": args.profile,
                },
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
                "kafka": {
                    **kafka,
                    "answered_2xx": answered_2xx,
                    "in_flight_bound": in_flight_bound,
                    "partial_batches": partial,
                    "gateway_events_total": events_by_outcome,
                },
                "checks": [asdict(c) for c in checks],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nresults: {out.relative_to(ROOT)}")
    return 0 if all(c.passed is not False or c.informational for c in checks) else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
