from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.fixtures.gateway import Gateway


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_healthz_answers_while_the_process_lives(gateway: Gateway) -> None:
    status, body = get(gateway.url + "/healthz")

    assert (status, body) == (200, {"status": "ok"})


def test_readyz_reports_each_dependency_ok(gateway: Gateway) -> None:
    status, body = get(gateway.url + "/readyz")

    assert status == 200, body
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "redis": "ok",
        "kafka": "ok",
        "spool": "ok",
    }
    assert body["checks"]["spool"]["mode"] == "direct"
