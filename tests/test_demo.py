"""The README's first command, run as a newcomer runs it: bin/demo serves and prints a working key."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from tests.fixtures.http import post, request
from tests.fixtures.net import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_bin_demo_serves_healthz_and_prints_a_key_that_works(tmp_path: Path) -> None:
    port, broker_port = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {"DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "SECRET_KEY", "ENCRYPTION_KEY", "SPOOL_DIR"}
    }
    env.update(PORT=str(port), DEMO_KAFKA_PORT=str(broker_port), GATEWAY_VAR_DIR=str(tmp_path))
    log = tmp_path / "demo.log"
    demo = subprocess.Popen(
        ["bin/demo"],
        cwd=ROOT,
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,  # noqa: SIM115
        start_new_session=True,
    )
    try:
        key, healthy = None, False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not healthy:
            assert demo.poll() is None, log.read_text()
            found = re.search(r"Demo pipeline key: (dk_\S+)", log.read_text())
            key = found.group(1) if found else None
            if key:
                try:
                    healthy = request("GET", f"http://127.0.0.1:{port}/healthz").status == 200
                except OSError:
                    pass
            time.sleep(0.5)

        response = post(f"http://127.0.0.1:{port}/v1/t", {"event": "Signed Up", "properties": {"plan": "pro"}}, key=key)
        unknown = post(f"http://127.0.0.1:{port}/v1/t", {"event": "Signed Up"}, key="dk_" + "u" * 32)

        assert healthy, log.read_text()
        assert (response.status, response.json()) == (200, {"success": True})
        assert unknown.status == 401
        # On SQLite too, the key store loads its directory of valid tokens (it refused the unknown key)
        assert "could not load the key directory" not in log.read_text()
        assert f"curl -s -X POST http://127.0.0.1:{port}/v1/t -H 'Authorization: Bearer {key}'" in log.read_text()
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(30)
