"""The logs: one JSON object per line, and never a key, a secret or a payload.

A real gateway process and the management commands, run as an operator runs them, go through a
full set of requests and configuration changes; then every key, secret and payload marker the run
created or sent is looked for in what they logged. Webhook source ids (``wh_…``) are identifiers
that sit in vendors' dashboards, not credentials, and may be logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.fixtures.gateway import Gateway
from tests.fixtures.http import Response, basic, options, post, request
from tests.fixtures.payloads import signature_headers

ROOT = Path(__file__).resolve().parents[1]
ORIGIN = "https://shop.example.com"


@dataclass
class Operator:
    """Runs management commands in their own processes and keeps what each wrote to stderr (their logs)."""

    env: dict[str, str]
    stderr: list[str] = field(default_factory=list)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "manage.py", *args, "--json"],
            cwd=ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.stderr.append(result.stderr)
        return result

    def json(self, *args: str) -> dict[str, Any]:
        result = self.run(*args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def fails(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode != 0, result.stdout
        return result.stderr


def hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def stripe_headers(secret: str, body: bytes) -> dict[str, str]:
    t = int(time.time())
    return {"Stripe-Signature": f"t={t},v1={hex_hmac(secret, f'{t}.'.encode() + body)}"}


def until_refused(url: str, key: str) -> Response:
    """Revocations reach the gateway within seconds: poll until the key is refused (or give up)."""
    deadline = time.monotonic() + 10
    while True:
        response = post(url + "/v1/t", {"event": "After revoke"}, key=key)
        if response.status == 401 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_a_full_run_logs_no_key_secret_or_payload(gateway_factory, gateway_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    # Given a gateway of its own that logs everything it can (DEBUG, daphne's access log on), and an
    # operator whose commands log at DEBUG too
    gateway: Gateway = gateway_factory(LOG_LEVEL="DEBUG")
    operator = Operator(env={**gateway_env, "LOG_LEVEL": "DEBUG"})
    marker = "payload-marker-" + secrets.token_hex(8)
    stripe_secret = "whsec_" + secrets.token_urlsafe(24)
    shared_secret = "shared-" + secrets.token_urlsafe(24)
    hmac_secret = "hmac-" + secrets.token_urlsafe(24)
    unknown_key = "dk_" + secrets.token_urlsafe(24)

    # When the operator creates pipelines, keys, secrets and webhook sources
    shop = operator.json("create_pipeline", "--name", "Logged shop", "--origin", ORIGIN)
    other = operator.json("create_pipeline", "--name", "Logged other")
    key, first_secret = shop["pipeline_key"], shop["signing_secret"]
    rotated_key = operator.json("rotate_key", key)["pipeline_key"]
    second_secret = operator.json("rotate_secret", "--pipeline-key", key)["signing_secret"]
    stripe = operator.json(
        "create_webhook_source",
        "--pipeline-key",
        key,
        "--scheme",
        "stripe",
        "--secret",
        stripe_secret,
        "--mapping",
        json.dumps({"event": "type", "userId": "data.object.customer"}),
    )["source_id"]
    shared = operator.json(
        "create_webhook_source", "--pipeline-key", key, "--scheme", "shared-secret", "--secret", shared_secret
    )["source_id"]
    misconfigured = operator.json(
        "create_webhook_source",
        "--pipeline-key",
        key,
        "--scheme",
        "generic-hmac",
        "--secret",
        hmac_secret,
        "--options",
        json.dumps({"algorithm": "md5"}),
    )["source_id"]
    operator.json("list_pipelines")
    operator.json("reencrypt_secrets")

    # ...and clients send every input, with good and bad credentials
    url = gateway.url
    event = {"event": "Logged", "userId": marker, "properties": {"email": f"{marker}@example.com"}}
    body = json.dumps(event).encode()
    answers = {
        "bearer": post(url + "/v1/t", event, key=key).status,
        "basic": post(url + "/v1/p", event, headers={"Authorization": basic(rotated_key)}).status,
        "writeKey": post(url + "/v1/i", {**event, "writeKey": key}, content_type="text/plain").status,
        "unknown key": post(url + "/v1/t", event, key=unknown_key).status,
        "bad JSON": post(url + "/v1/t", b'{"event": "' + marker.encode() + b'", ', key=key).status,
        "bad time": post(url + "/v1/t", {**event, "timestamp": marker}, key=key).status,
        "foreign origin": post(url + "/v1/t", event, key=key, headers={"Origin": "https://evil.example"}).status,
        "preflight": options(url + "/v1/t", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}).status,
        "signed": post(url + "/v1/events", body, key=key, headers=signature_headers(second_secret, body)).status,
        "older secret": post(url + "/v1/events", body, key=key, headers=signature_headers(first_secret, body)).status,
        "bad signature": post(url + "/v1/events", body, key=key, headers=signature_headers(marker, body)).status,
        "stale": post(
            url + "/v1/events", body, key=key, headers=signature_headers(second_secret, body, timestamp=1)
        ).status,
    }
    batch = json.dumps({"batch": [event, {**event, "timestamp": marker}], "writeKey": key}).encode()
    answers["batch"] = post(url + "/v1/batch", batch, key=key, headers=signature_headers(second_secret, batch)).status
    pixel_query = {"wk": key, "e": "Open", "uid": marker, "p.email": f"{marker}@example.com"}
    answers["pixel"] = request("GET", f"{url}/v1/pixel/track?{urlencode(pixel_query)}").status
    answers["pixel unknown key"] = request(
        "GET", f"{url}/v1/pixel/track?{urlencode({**pixel_query, 'wk': unknown_key})}"
    ).status
    answers["pixel bad ts"] = request("GET", f"{url}/v1/pixel/track?{urlencode({**pixel_query, 'ts': marker})}").status
    hook = json.dumps({"type": "invoice.paid", "data": {"object": {"customer": marker}}}).encode()
    hook_url = f"{url}/v1/webhook?source="
    answers["stripe"] = post(hook_url + stripe, hook, headers=stripe_headers(stripe_secret, hook)).status
    answers["stripe forged"] = post(hook_url + stripe, hook, headers=stripe_headers(marker, hook)).status
    answers["shared"] = post(hook_url + shared, hook, headers={"X-Webhook-Secret": shared_secret}).status
    answers["shared wrong"] = post(hook_url + shared, hook, headers={"X-Webhook-Secret": marker}).status
    signature = base64.b16encode(hmac.new(hmac_secret.encode(), hook, "md5").digest()).decode()
    answers["misconfigured"] = post(hook_url + misconfigured, hook, headers={"X-Signature": signature}).status
    answers["metrics"] = request("GET", url + "/metrics").status
    answers["readyz"] = request("GET", url + "/readyz").status

    # ...and the operator revokes a key while the gateway runs, and makes mistakes with keys
    operator.json("revoke_key", rotated_key)
    answers["revoked"] = until_refused(url, rotated_key).status
    refused_twice = operator.fails("revoke_key", rotated_key)
    refused_rotation = operator.fails("rotate_key", rotated_key)
    operator.fails("revoke_key", unknown_key)
    operator.json("rotate_key", other["pipeline_key"])
    gateway.stop()
    log = gateway.log()

    # Then every request was answered as the SPEC says (so each path really ran)
    assert answers == {
        "bearer": 200,
        "basic": 200,
        "writeKey": 200,
        "unknown key": 401,
        "bad JSON": 400,
        "bad time": 400,
        "foreign origin": 403,
        "preflight": 204,
        "signed": 200,
        "older secret": 200,
        "bad signature": 401,
        "stale": 401,
        "batch": 200,
        "pixel": 200,
        "pixel unknown key": 200,
        "pixel bad ts": 200,
        "stripe": 200,
        "stripe forged": 401,
        "shared": 200,
        "shared wrong": 401,
        "misconfigured": 401,
        "metrics": 200,
        "readyz": 200,
        "revoked": 401,
    }
    # ...the operator was told which key, without the key
    assert "is already revoked" in refused_twice and "is revoked" in refused_rotation

    # ...no key, secret or payload is in the gateway's log or in any command's
    never_logged = {
        "pipeline key": key,
        "rotated key": rotated_key,
        "other pipeline's key": other["pipeline_key"],
        "unknown key a client sent": unknown_key,
        "first signing secret": first_secret,
        "second signing secret": second_secret,
        "other pipeline's signing secret": other["signing_secret"],
        "stripe secret": stripe_secret,
        "shared secret": shared_secret,
        "generic-hmac secret": hmac_secret,
        "payload": marker,
    }
    commands_log = "\n".join(operator.stderr)
    found = {name for name, value in never_logged.items() if value in log or value in commands_log}
    assert found == set()

    # ...and every line of the gateway's log is one JSON object, the access lines and errors included
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert all({"level", "logger", "message", "time"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "daphne.access"]
    assert {"/v1/t", "/v1/pixel/track", "/v1/webhook", "/v1/events", "/v1/batch"} <= {a["path"] for a in access}
    assert any("cannot verify signatures" in line["message"] for line in lines)
    assert any(line["message"].startswith("pixel dropped") for line in lines)
