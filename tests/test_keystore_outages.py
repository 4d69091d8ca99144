"""The key store when PostgreSQL or Redis misbehaves, as a real gateway process answers over HTTP.

A stalled peer accepts TCP and never answers (``TcpProxy.stall()``): the failure the OS does not
report, so only the gateway's own deadlines can bound it (issue 11, found items 2 and 3).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from pipelines import services
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import bearer
from tests.fixtures.net import TcpProxy

ROOT = Path(__file__).resolve().parents[1]
PROMISE_SECONDS = 5.0
# Long enough to tell "answered late" from "never answered" on a loaded machine.
CLIENT_WAIT_SECONDS = 12.0


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no answer within CLIENT_WAIT_SECONDS
    code: str | None
    seconds: float


def track(gateway: Gateway, key: str) -> Answer:
    """POST /v1/t as an SDK would, timing how long the gateway takes to answer."""
    req = urllib.request.Request(
        gateway.url + "/v1/t",
        data=b'{"event": "Checked"}',
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": bearer(key)},
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=CLIENT_WAIT_SECONDS) as resp:
            resp.read()
            return Answer(resp.status, None, time.monotonic() - started)
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read()
        code = body.split(b'"code":', 1)[1].split(b'"')[1].decode() if b'"code":' in body else None
        return Answer(exc.code, code, time.monotonic() - started)
    except TimeoutError:
        return Answer(None, None, time.monotonic() - started)


def track_all_at_once(gateway: Gateway, keys: list[str]) -> list[Answer]:
    with ThreadPoolExecutor(len(keys)) as pool:
        return list(pool.map(lambda key: track(gateway, key), keys))


def redis_port_and_db() -> tuple[int, str]:
    port = int(settings.REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    return port, settings.REDIS_URL.rsplit("/", 1)[1]


def test_with_the_database_stalled_never_seen_keys_get_503_within_five_seconds_all_at_once(
    make_pipeline: Callable[..., services.PipelineCreated],
    gateway_factory: Callable[..., Gateway],
    tcp_proxy: Callable[[int], TcpProxy],
    database_url: str,
) -> None:
    # Given a gateway that reaches PostgreSQL through a proxy, has served one key, and has never
    # seen three other valid keys (nobody has asked for them, so Redis does not hold them either)
    proxy = tcp_proxy(5432)
    gateway = gateway_factory(
        DATABASE_URL=database_url.replace(":5432/", f":{proxy.port}/"),
        KEYSTORE_FRESH_SECONDS="0.5",  # the known key's revalidation also meets the stalled database
    )
    known = make_pipeline().pipeline_key
    unseen = [make_pipeline().pipeline_key for _ in range(3)]
    assert track(gateway, known).status == 200

    # When PostgreSQL stalls and the three never-seen keys arrive at the same moment
    proxy.stall()
    time.sleep(0.6)
    answers = track_all_at_once(gateway, unseen)
    known_answers = [track(gateway, known) for _ in range(3)]

    # Then each is told 503 UNAVAILABLE within five seconds of asking, none queued behind another,
    # and the key the gateway already knows keeps working from memory
    assert [(a.status, a.code) for a in answers] == [(503, "UNAVAILABLE")] * 3, answers
    assert max(a.seconds for a in answers) < PROMISE_SECONDS, answers
    assert [a.status for a in known_answers] == [200, 200, 200]
    assert max(a.seconds for a in known_answers) < 1.0, known_answers

    # And once PostgreSQL answers again, the never-seen keys are accepted
    proxy.restore()
    deadline = time.monotonic() + 10
    while track(gateway, unseen[0]).status != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [track(gateway, key).status for key in unseen] == [200, 200, 200]


@pytest.mark.parametrize("failure", ["stall", "cut"])
def test_a_gateway_started_with_the_database_down_answers_never_seen_keys_503_within_five_seconds(
    pipeline: services.PipelineCreated,
    gateway_factory: Callable[..., Gateway],
    tcp_proxy: Callable[[int], TcpProxy],
    database_url: str,
    failure: str,
) -> None:
    # Given PostgreSQL that never answers (stall) or refuses connections (cut), before the gateway
    # starts: the gateway cannot load its directory of valid tokens
    proxy = tcp_proxy(5432)
    getattr(proxy, failure)()
    gateway = gateway_factory(DATABASE_URL=database_url.replace(":5432/", f":{proxy.port}/"))

    # When a valid key and an unknown one arrive together, and again a moment later
    first = track_all_at_once(gateway, [pipeline.pipeline_key, "dk_" + secrets.token_urlsafe(24)])
    again = track_all_at_once(gateway, [pipeline.pipeline_key, "dk_" + secrets.token_urlsafe(24)])

    # Then the gateway cannot tell, says so with 503 UNAVAILABLE, and says it within five seconds
    for answer in first + again:
        assert (answer.status, answer.code) == (503, "UNAVAILABLE"), answer
        assert answer.seconds < PROMISE_SECONDS, answer


def test_with_redis_stalled_never_seen_keys_are_answered_from_the_database_within_five_seconds(
    make_pipeline: Callable[..., services.PipelineCreated],
    gateway_factory: Callable[..., Gateway],
    tcp_proxy: Callable[[int], TcpProxy],
) -> None:
    # Given a gateway that reaches Redis through a proxy and has served one key
    port, db = redis_port_and_db()
    proxy = tcp_proxy(port)
    gateway = gateway_factory(REDIS_URL=f"redis://127.0.0.1:{proxy.port}/{db}")
    known = make_pipeline().pipeline_key
    unseen = [make_pipeline().pipeline_key for _ in range(3)]
    assert track(gateway, known).status == 200

    # When Redis stalls and three valid keys it has never seen arrive at once
    proxy.stall()
    answers = track_all_at_once(gateway, unseen)

    # Then PostgreSQL, the source of truth, answers for them within five seconds; the known key works
    assert [a.status for a in answers] == [200, 200, 200], answers
    assert max(a.seconds for a in answers) < PROMISE_SECONDS, answers
    assert track(gateway, known).status == 200


def test_with_both_stalled_a_never_seen_key_gets_503_within_five_seconds(
    make_pipeline: Callable[..., services.PipelineCreated],
    gateway_factory: Callable[..., Gateway],
    tcp_proxy: Callable[[int], TcpProxy],
    database_url: str,
) -> None:
    # Given a gateway that reaches both PostgreSQL and Redis through proxies, and has served a key
    port, db = redis_port_and_db()
    redis_proxy, db_proxy = tcp_proxy(port), tcp_proxy(5432)
    gateway = gateway_factory(
        REDIS_URL=f"redis://127.0.0.1:{redis_proxy.port}/{db}",
        DATABASE_URL=database_url.replace(":5432/", f":{db_proxy.port}/"),
    )
    known = make_pipeline().pipeline_key
    unseen = [make_pipeline().pipeline_key for _ in range(2)]
    assert track(gateway, known).status == 200

    # When both stall
    redis_proxy.stall()
    db_proxy.stall()
    answers = track_all_at_once(gateway, unseen)

    # Then never-seen keys get 503 within five seconds and the known key still works
    assert [(a.status, a.code) for a in answers] == [(503, "UNAVAILABLE")] * 2, answers
    assert max(a.seconds for a in answers) < PROMISE_SECONDS, answers
    assert track(gateway, known).status == 200


def test_a_key_revoked_while_redis_was_down_is_refused_within_the_freshness_window(
    pipeline: services.PipelineCreated,
    gateway_factory: Callable[..., Gateway],
    tcp_proxy: Callable[[int], TcpProxy],
    database_url: str,
) -> None:
    # Given a gateway that has served a key (so Redis holds its record for an hour) and revalidates
    # what it caches every 3 s
    fresh = 3.0
    gateway = gateway_factory(KEYSTORE_FRESH_SECONDS=str(fresh))
    assert track(gateway, pipeline.pipeline_key).status == 200
    port, db = redis_port_and_db()
    proxy = tcp_proxy(port)

    # When an operator revokes the key while Redis cannot be reached, and Redis then comes back
    proxy.cut()
    revoked = subprocess.run(
        [sys.executable, "manage.py", "revoke_key", pipeline.pipeline_key],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/{db}",
            "KEYSTORE_FRESH_SECONDS": str(fresh),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    proxy.restore()
    restored = time.monotonic()

    # Then the command succeeds (the revocation is committed) and says in one line, without a
    # traceback, that the gateways could not be told at once and when they will know
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked_key: " + pipeline.pipeline_key in revoked.stdout
    warnings = revoked.stderr.strip().splitlines()
    assert len(warnings) == 1, revoked.stderr
    assert "WARNING" in warnings[0] and "within 3 s" in warnings[0], warnings[0]
    assert "Traceback" not in revoked.stderr

    # And the gateway refuses the key within the freshness window of Redis returning
    answer = track(gateway, pipeline.pipeline_key)
    while answer.status == 200 and time.monotonic() - restored < fresh + 10:
        time.sleep(0.2)
        answer = track(gateway, pipeline.pipeline_key)
    assert (answer.status, answer.code) == (401, "INVALID_PIPELINE_KEY")
    assert time.monotonic() - restored < fresh + 3
