"""Configuration changes and outages as the running gateway processes see them, over HTTP."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from pipelines import services
from pipelines.models import PipelineKey
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import Response, post
from tests.fixtures.net import TcpProxy

EVENT = {"event": "Checked"}


def track(gateway: Gateway, key: str) -> Response:
    return post(gateway.url + "/v1/t", EVENT, key=key)


def seconds_until_refused(gateways: list[Gateway], key: str, limit: float = 10.0) -> float:
    started = time.monotonic()
    waiting = list(gateways)
    while waiting and time.monotonic() - started < limit:
        waiting = [g for g in waiting if track(g, key).status != 401]
        if waiting:
            time.sleep(0.05)
    assert not waiting, "still accepted after the limit"
    return time.monotonic() - started


def test_revoking_a_key_in_one_process_is_seen_by_two_gateways_within_five_seconds(
    pipeline: services.PipelineCreated, gateway: Gateway, gateway_factory: Callable[..., Gateway]
) -> None:
    second = gateway_factory()
    assert track(gateway, pipeline.pipeline_key).status == 200
    assert track(second, pipeline.pipeline_key).status == 200

    services.key_revoke(key=pipeline.pipeline_key)
    elapsed = seconds_until_refused([gateway, second], pipeline.pipeline_key)

    assert elapsed < 5
    body = track(gateway, pipeline.pipeline_key).json()
    assert body["error"]["code"] == "INVALID_PIPELINE_KEY"


def test_revoking_from_the_admin_reaches_the_gateway_within_five_seconds(
    pipeline: services.PipelineCreated, gateway: Gateway
) -> None:
    assert track(gateway, pipeline.pipeline_key).status == 200
    User.objects.create_superuser("admin", "admin@example.com", "correct horse battery staple")
    client = Client()
    client.force_login(User.objects.get(username="admin"))
    key = PipelineKey.objects.get(key=pipeline.pipeline_key)

    response = client.post("/admin/pipelines/pipelinekey/", {"action": "revoke", "_selected_action": [key.pk]})
    elapsed = seconds_until_refused([gateway], pipeline.pipeline_key)

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.status == "revoked"
    assert elapsed < 5


def test_a_rotated_key_works_beside_the_old_one_until_it_is_revoked(
    pipeline: services.PipelineCreated, gateway: Gateway
) -> None:
    new = services.key_rotate(key=pipeline.pipeline_key)

    assert track(gateway, new.key).status == 200
    assert track(gateway, pipeline.pipeline_key).status == 200
    services.key_revoke(key=pipeline.pipeline_key)
    seconds_until_refused([gateway], pipeline.pipeline_key)
    assert track(gateway, new.key).status == 200


def test_with_redis_unreachable_known_and_never_seen_valid_keys_work_and_unknown_keys_get_401(
    make_pipeline: Callable[..., services.PipelineCreated],
    gateway_factory: Callable[..., Gateway],
    tcp_proxy: Callable[[int], TcpProxy],
) -> None:
    redis_port = int(settings.REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    proxy = tcp_proxy(redis_port)
    db = settings.REDIS_URL.rsplit("/", 1)[1]
    cut_off = gateway_factory(REDIS_URL=f"redis://127.0.0.1:{proxy.port}/{db}")
    known_key, never_seen_key = make_pipeline().pipeline_key, make_pipeline().pipeline_key
    assert track(cut_off, known_key).status == 200

    proxy.cut()
    known = [track(cut_off, known_key) for _ in range(3)]
    never_seen = track(cut_off, never_seen_key)
    unknown = track(cut_off, "dk_" + secrets.token_urlsafe(24))

    assert [r.status for r in known] == [200, 200, 200]
    assert never_seen.status == 200  # PostgreSQL, the source of truth, still answers
    assert unknown.status == 401  # refused from the directory of valid tokens, without Redis
    assert unknown.json()["error"]["code"] == "INVALID_PIPELINE_KEY"


def test_with_the_database_unreachable_known_keys_work_never_seen_ones_get_503_and_unknown_ones_401(
    make_pipeline: Callable[..., services.PipelineCreated],
    gateway_factory: Callable[..., Gateway],
    tcp_proxy: Callable[[int], TcpProxy],
    database_url: str,
) -> None:
    proxy = tcp_proxy(5432)
    cut_off = gateway_factory(
        DATABASE_URL=database_url.replace(":5432/", f":{proxy.port}/"),
        KEYSTORE_FRESH_SECONDS="0.5",  # make it revalidate against the dead database, and survive that
    )
    known_key, never_seen_key = make_pipeline().pipeline_key, make_pipeline().pipeline_key
    assert track(cut_off, known_key).status == 200

    proxy.cut()
    time.sleep(1.0)
    known = [track(cut_off, known_key) for _ in range(3)]
    never_seen = track(cut_off, never_seen_key)  # valid, but neither in memory nor in Redis
    unknown = track(cut_off, "dk_" + secrets.token_urlsafe(24))

    assert [r.status for r in known] == [200, 200, 200]
    assert never_seen.status == 503
    assert never_seen.json()["error"]["code"] == "UNAVAILABLE"
    assert never_seen.header("Retry-After")
    assert unknown.status == 401  # the directory, loaded a moment ago, still says no
