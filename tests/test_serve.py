"""Several gateway processes on one socket (signal_gateway.serve), as a deployment runs them."""

from __future__ import annotations

import time
from pathlib import Path

from pipelines.services import PipelineCreated
from tests.fixtures.http import post
from tests.fixtures.serve import start_serve
from tests.test_metrics import FLUSHED


def test_two_workers_share_one_port_and_stop_together_on_sigterm(
    pipeline: PipelineCreated, gateway_env: dict[str, str], tmp_path: Path
) -> None:
    # Given serve running two workers on one port
    serve = start_serve(gateway_env, tmp_path, tmp_path / "metrics", workers=2)
    try:
        pids = serve.worker_pids()

        # When 40 clients each send an event on a connection of their own, then SIGTERM arrives
        statuses = [post(serve.url + "/v1/t", {"event": "Spread"}, key=pipeline.pipeline_key).status for _ in range(40)]
        time.sleep(FLUSHED)  # each worker adds its tally to its metrics file every half second
        handled = serve.counts_by_worker("gateway_events_total", source="browser", outcome="accepted")
        code = serve.stop()
    finally:
        serve.stop()

    # Then every event was taken, the kernel gave both workers some, and both stopped cleanly
    assert statuses == [200] * 40
    assert len(pids) == 2
    assert set(handled) == pids and all(n > 0 for n in handled.values()), handled
    assert code == 0, serve.log()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
