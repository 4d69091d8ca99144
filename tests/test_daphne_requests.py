"""The gateway's daphne request class (signal_gateway.adapters.daphne): Twisted does not parse form bodies,
and a finished request leaves daphne's connection table at once instead of up to a second later
(each one held ~35 objects that every young garbage collection had to walk)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from signal_gateway.devbroker import wait_for_port
from tests.fixtures.http import request
from tests.fixtures.net import free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def probe_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path / "daphne.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-v",
            "0",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "tests.fixtures.daphne_probe:application",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=20)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def test_finished_requests_leave_daphnes_table_at_once(probe_url: str) -> None:
    # Given twenty requests that have been answered
    for n in range(20):
        assert request("POST", probe_url + "/event", body=b'{"n": %d}' % n).status == 200

    # When daphne is asked how many requests it still holds, well inside its one-second reaper
    held = json.loads(request("GET", probe_url + "/connections").body)["held"]

    # Then only the asking request is left
    assert held == 1


def test_a_multipart_body_reaches_the_application_unparsed(probe_url: str) -> None:
    # Given a body Twisted would otherwise parse as a form (and refuse, malformed, with its own 400)
    body = b"--abc\r\nnot a form"

    # When it is posted
    response = request(
        "POST", probe_url + "/upload", body=body, headers={"Content-Type": "multipart/form-data; boundary=xyz"}
    )

    # Then the application gets it whole
    assert response.status == 200
    assert json.loads(response.body) == {"length": len(body)}
