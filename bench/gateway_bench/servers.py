"""The servers a run starts: Tansu, the gateway (one daphne process, or ``signal_gateway.serve
--workers N``) and the bare ASGI app, each on a free 127.0.0.1 port; a second Tansu behind a TCP
proxy the bench can cut (``CuttableKafka``, for the spool scenario); the throwaway database with
the bench pipeline; and the smoke requests that prove the gateway publishes before wrk is let loose."""

from __future__ import annotations

import base64
import json
import os
import re
import select
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.gateway_bench.core import HOST, ROOT, BenchError, Processes, free_port, http, log_tail
from signal_gateway.devbroker import broker_binary, start_broker, wait_for_port

# Both servers run as bin/docker-entrypoint runs the gateway: no per-request access log.
DAPHNE_FLAGS = ("-v", "0")
TOPIC = "raw-events"
BENCH_RATE_LIMIT = 10_000_000  # events/s for the bench pipeline


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


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"


def gateway_env(
    *, temp_dir: Path, bootstrap: str, redis_url: str | None, var_dir: Path | None = None
) -> dict[str, str]:
    """A gateway's environment: the run's SQLite database in ``temp_dir``; its own state (the spool)
    in ``var_dir``, by default ``temp_dir`` too."""
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED_SETTINGS}
    env.update(
        DJANGO_SETTINGS_MODULE="signal_gateway.settings",
        DATABASE_URL=f"sqlite:///{temp_dir / 'db.sqlite3'}",
        GATEWAY_VAR_DIR=str(var_dir or temp_dir),
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        KAFKA_TOPIC=TOPIC,
        PYTHONUNBUFFERED="1",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def start_tansu(*, log_dir: Path, processes: Processes) -> tuple[subprocess.Popen[bytes], str]:
    """Tansu (memory storage) on a free port; returns the process and its bootstrap address."""
    port = free_port()
    broker = processes.add("tansu", start_broker(port, log_path=str(log_dir / "tansu.log")))
    return broker, f"{HOST}:{port}"


class CuttableKafka:
    """A Tansu of its own, reachable only through a TCP proxy the bench cuts and restores
    (bench/gateway_bench/proxy.py, a process of its own). Tansu advertises the proxy's port, so every
    client, the gateway's producer and the bench's consumers alike, goes through the proxy: one that
    bootstrapped through it would otherwise be sent straight to the broker by its metadata."""

    def __init__(self, *, log_dir: Path, processes: Processes) -> None:
        broker_port, proxy_port = free_port(), free_port()
        self.bootstrap = f"{HOST}:{proxy_port}"
        with open(log_dir / "tansu-cuttable.log", "wb") as log:
            self.broker = processes.add(
                "tansu-cuttable",
                subprocess.Popen(
                    [
                        broker_binary(),
                        "broker",
                        "--listener-url",
                        f"tcp://{HOST}:{broker_port}",
                        "--advertised-listener-url",
                        f"tcp://{HOST}:{proxy_port}",
                        "--storage-engine",
                        "memory://tansu/",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
                    start_new_session=True,
                ),
            )
        try:
            wait_for_port(broker_port)
        except TimeoutError:
            raise BenchError(f"the cuttable Tansu did not start:\n{log_tail(log_dir / 'tansu-cuttable.log')}") from None
        self.proxy = processes.add(
            "kafka-proxy",
            subprocess.Popen(
                [sys.executable, "-m", "bench.gateway_bench.proxy", str(proxy_port), str(broker_port)],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                start_new_session=True,
            ),
        )
        self._expect("ready")
        self.is_cut = False

    def cut(self) -> None:
        """Every connection to Kafka is reset and new ones are refused, until ``restore()``."""
        self._command("cut", "cut")
        self.is_cut = True

    def restore(self) -> None:
        self._command("restore", "restored")
        self.is_cut = False

    def _command(self, command: str, answer: str) -> None:
        assert self.proxy.stdin is not None
        try:
            self.proxy.stdin.write(command.encode() + b"\n")
            self.proxy.stdin.flush()
        except OSError as exc:
            raise BenchError(f"the Kafka proxy is gone ({exc})") from None
        self._expect(answer)

    def _expect(self, answer: str, timeout: float = 10.0) -> None:
        assert self.proxy.stdout is not None
        ready, _, _ = select.select([self.proxy.stdout], [], [], timeout)
        line = self.proxy.stdout.readline().decode().strip() if ready else "(nothing)"
        if line != answer:
            raise BenchError(f"the Kafka proxy answered {line!r}, not {answer!r} (exit code {self.proxy.poll()})")


def manage(env: dict[str, str], *args: str, timeout: float = 120.0) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise BenchError(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def create_bench_pipeline(env: dict[str, str]) -> dict[str, Any]:
    manage(env, "migrate", "--noinput", "-v", "0")
    # A rate limit the bench never reaches: the default (1,000 events/s) would refuse most of a run
    # once limits are enforced; the bench measures the limiter's cost, not its refusals.
    out = manage(env, "create_pipeline", "--name", "Bench", "--rate-limit", str(BENCH_RATE_LIMIT), "--json")
    return json.loads(out.strip().splitlines()[-1])


def start_daphne(
    name: str,
    app: str,
    *,
    env: dict[str, str],
    log_dir: Path,
    processes: Processes,
    workers: int = 1,
    log_name: str | None = None,
) -> Server:
    port = free_port()
    log_path = log_dir / f"{log_name or name}.log"
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


def smoke_batch(server: Server, key: str, *, message_id: str = "bench-smoke-batch-1") -> int:
    """One batch of one event, keyed as Segment's server SDKs do; returns the events accepted (1).
    Each gateway of a run needs its own ``message_id``: they share the pipeline, and so its dedup."""
    batch = {
        "batch": [
            {
                "type": "track",
                "event": "Bench Smoke",
                "userId": "bench-smoke",
                "messageId": message_id,
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
        match = re.match(r"^gateway_events_total\{(.*)\} ([0-9.e+]+)$", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            name = f"{labels.get('source', '?')}/{labels.get('outcome', '?')}"
            counts[name] = counts.get(name, 0) + int(float(match.group(2)))
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
