"""The benchmark's own tools: the Kafka proxy the spool scenario cuts, and the choice of targets."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.gateway_bench.cli import parse_args
from tests.fixtures.net import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A TCP echo server on 127.0.0.1: what the proxy forwards to."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield port
    listener.close()


class ProxyProcess:
    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.gateway_bench.proxy", str(self.port), str(target_port)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.answer() == "ready"

    def command(self, line: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.answer()

    def answer(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()


@pytest.fixture
def proxy(echo_port: int) -> Iterator[ProxyProcess]:
    running = ProxyProcess(echo_port)
    yield running
    running.process.kill()
    running.process.wait(10)


def round_trip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_the_kafka_proxy_forwards_bytes_both_ways_until_cut_and_again_once_restored(proxy: ProxyProcess) -> None:
    # Given a proxy in front of an echo server, and a connection open through it
    payload = bytes(range(256)) * 4096  # 1 MiB: more than one read of the proxy's
    assert round_trip(proxy.port, payload) == payload
    open_conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    open_conn.sendall(b"ping")
    assert open_conn.recv(4) == b"ping"

    # When the bench cuts it
    assert proxy.command("cut") == "cut"

    # Then the open connection is dropped and a new one is refused, as from a broker that went away
    with open_conn:
        try:
            dropped = open_conn.recv(4) == b""
        except ConnectionResetError:
            dropped = True
    assert dropped
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5)

    # And once restored, bytes go through again on the same port
    assert proxy.command("restore") == "restored"
    assert round_trip(proxy.port, b"after the outage") == b"after the outage"


def test_the_kafka_proxy_exits_when_the_bench_that_started_it_is_gone(proxy: ProxyProcess) -> None:
    # Given a running proxy
    assert proxy.process.poll() is None

    # When its stdin closes (the bench died without stopping it)
    assert proxy.process.stdin is not None
    proxy.process.stdin.close()

    # Then it exits by itself, leaving nothing listening
    assert proxy.process.wait(10) == 0


def test_the_issue9_targets_are_refused_without_redis_and_issue8_runs_its_three_scenarios(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the default targets (issue 9's), which measure dedup and rate limits through Redis
    # When the bench is started without --redis
    with pytest.raises(SystemExit) as exit_info:
        parse_args([])

    # Then it stops at once with a usage error that says what to give
    assert exit_info.value.code == 2
    assert "--redis URL" in capsys.readouterr().err

    # And with Redis it runs issue 9's scenarios, spool included; with issue 8's targets, issue 8's
    assert parse_args(["--redis", "redis://127.0.0.1:6379/0"]).scenarios == ["track", "batch", "pixel", "spool"]
    assert parse_args(["--targets", "issue8"]).scenarios == ["track", "batch", "pixel"]
