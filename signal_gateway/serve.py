"""Several daphne processes on one listening socket: how the gateway uses more than one core.

    python -m signal_gateway.serve --workers 2 --bind 0.0.0.0 --port 8080

Each worker inherits its own listening socket on the same port, opened here with SO_REUSEPORT
(``daphne --fd``): the kernel spreads new connections across them by hash. One shared socket would
leave an idle set to a single worker, as each wake-up goes to whoever waits first. Each worker has its own producer and key store; the key stores share
Redis, so a change reaches all of them. SIGTERM or SIGINT is passed to every worker; when one worker
exits on its own, the others are stopped and the exit code is passed on, for the supervisor
(compose, systemd, Kubernetes) to restart the whole set.

Metrics: the workers share a ``PROMETHEUS_MULTIPROC_DIR`` (ingestion/metrics.py), so a scrape that
reaches any one of them returns the sum over all. It is the operator's directory when that variable
is set, else a new temporary one removed on exit; either way it is emptied at start, so a restart
never brings back the counts of processes that are gone, and each worker that exits is marked dead
(its gauges leave the sums at once; its counters keep counting, as Prometheus expects of a counter).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import FrameType

APPLICATION = "signal_gateway.asgi:application"
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def listen(bind: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((bind, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def metrics_dir() -> tuple[str, bool]:
    """The workers' shared metrics directory, empty, and whether it is ours to remove on exit."""
    given = os.environ.get(METRICS_DIR_VARIABLE, "").strip()
    if not given:
        return tempfile.mkdtemp(prefix="signal-gateway-metrics-"), True
    os.makedirs(given, exist_ok=True)
    for path in glob.glob(os.path.join(given, "*.db")):
        os.remove(path)
    return given, False


def start_worker(sock: socket.socket, access_log: bool, metrics_path: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "daphne",
        "-v",
        "1" if access_log else "0",
        "--fd",
        str(sock.fileno()),
        APPLICATION,
    ]
    env = {**os.environ, METRICS_DIR_VARIABLE: metrics_path}
    return subprocess.Popen(command, pass_fds=(sock.fileno(),), env=env)


def worker_exited(pid: int, metrics_path: str) -> None:
    """A worker is gone: its live gauges (queue depth, readiness, spool) leave the merged values."""
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(pid, metrics_path)


def supervise(procs: list[subprocess.Popen[bytes]], metrics_path: str) -> int:
    stopping = False
    failure: int | None = None
    exited: set[int] = set()

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        codes = [proc.poll() for proc in procs]
        for proc, code in zip(procs, codes, strict=True):
            if code is not None and proc.pid not in exited:
                exited.add(proc.pid)
                worker_exited(proc.pid, metrics_path)
        if all(code is not None for code in codes):
            return failure if failure is not None else 0
        if not stopping and any(code is not None for code in codes):
            # One worker died on its own: stop the set and fail, so the supervisor restarts it whole.
            failure = abs(next(code for code in codes if code is not None)) or 1
            forward(signal.SIGTERM, None)
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "2")))
    parser.add_argument("--bind", default=os.environ.get("BIND", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--access-log", action="store_true", help="one log line per request (off: /metrics counts)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    metrics_path, ours = metrics_dir()
    try:
        sockets = [listen(args.bind, args.port) for _ in range(args.workers)]
        procs = [start_worker(sock, args.access_log, metrics_path) for sock in sockets]
        for sock in sockets:
            sock.close()  # each worker holds its own now
        return supervise(procs, metrics_path)
    finally:
        if ours:
            shutil.rmtree(metrics_path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
