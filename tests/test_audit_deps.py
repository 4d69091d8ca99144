"""bin/audit-deps when no vulnerability service answers: it says so plainly, never passes as audited."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.fixtures.net import free_port

ROOT = Path(__file__).resolve().parent.parent


def audit_deps(*args: str, pypi_url: str, osv_url: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AUDIT_DEPS_PYPI_URL": pypi_url,
        "AUDIT_DEPS_OSV_URL": osv_url,
        "AUDIT_DEPS_PROBE_TIMEOUT": "5",
    }
    env.pop("AUDIT_DEPS_REQUIRE_SERVICE", None)
    return subprocess.run(
        [str(ROOT / "bin" / "audit-deps"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def pypi_without_releases() -> Iterator[str]:
    """An index that serves no per-release JSON: every /pypi/NAME/VERSION/json is a 404, as here."""

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/pypi"
    server.shutdown()
    server.server_close()


def test_with_no_vulnerability_service_reachable_it_says_not_audited_and_why_and_exits_0(
    pypi_without_releases: str,
) -> None:
    # Given a PyPI that answers 404 for every release and an OSV that refuses connections
    osv = f"http://127.0.0.1:{free_port()}/v1/query"

    # When the audit runs
    result = audit_deps(pypi_url=pypi_without_releases, osv_url=osv)

    # Then it does not fail CI for want of a service, but says plainly that nothing was checked
    assert result.returncode == 0, result.stdout + result.stderr
    assert "NOT AUDITED" in result.stdout
    assert "pypi: " in result.stdout and "HTTP 404" in result.stdout
    assert "osv: " in result.stdout and "refused" in result.stdout.lower()
    assert "nothing was checked" in result.stdout


def test_with_a_service_required_and_none_reachable_it_fails_with_exit_3(pypi_without_releases: str) -> None:
    # Given no service reachable
    osv = f"http://127.0.0.1:{free_port()}/v1/query"

    # When the audit runs with a service required
    result = audit_deps("--require-service", pypi_url=pypi_without_releases, osv_url=osv)

    # Then it fails, saying why
    assert result.returncode == 3, result.stdout + result.stderr
    assert "NOT AUDITED" in result.stdout
    assert "a service is required" in result.stdout
