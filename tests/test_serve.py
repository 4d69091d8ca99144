"""Several gateway processes on one socket (signal_gateway.serve), as a deployment runs them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from signal_gateway.devbroker import wait_for_port
from tests.fixtures.http import post, request
from tests.fixtures.net import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_two_workers_share_one_port_and_stop_together_on_sigterm(
    pipeline,
    gateway_env: dict[str, str],
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "signal_gateway.serve", "--workers", "2", "--bind", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, **gateway_env},
        stdout=open(tmp_path / "serve.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=30)
        url = f"http://127.0.0.1:{port}"

        statuses = [post(url + "/v1/t", {"event": "Spread"}, key=pipeline.pipeline_key).status for _ in range(20)]
        pids = set()
        for _ in range(60):
            pids.update(re.findall(r'pid="(\d+)"', request("GET", url + "/metrics").body.decode()))
            if len(pids) == 2:
                break
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(30)

        assert statuses == [200] * 20
        assert len(pids) == 2, (tmp_path / "serve.log").read_text()
        assert code == 0
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    finally:
        if serve.poll() is None:
            serve.kill()
