"""Fixtures: real PostgreSQL (pytest-django), real Redis, Tansu over TCP, daphne in a subprocess."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from pipelines import services
from signal_gateway.devbroker import broker_binary, start_broker, wait_for_port
from tests.fixtures.gateway import Gateway, start_gateway
from tests.fixtures.net import TcpProxy, free_port

# The Chromium fixture (open_chromium) for every browser test module.
pytest_plugins = ["tests.fixtures.chromium"]


def pytest_configure(config: pytest.Config) -> None:
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise pytest.UsageError("the tests run against PostgreSQL: set DATABASE_URL (see README)")
    if not settings.REDIS_URL:
        raise pytest.UsageError("the tests run against Redis: set REDIS_URL (see README)")


_NEEDS_SHARED_DB = {"gateway", "gateway_factory", "database_url", "gateway_env"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A gateway subprocess only sees committed rows: such tests run in transactional mode, which
    # also tells pytest-django to create the test database before the gateway starts.
    for item in items:
        if _NEEDS_SHARED_DB & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("django_db"):
            item.add_marker(pytest.mark.django_db(transaction=True))


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def kafka_bootstrap(log_dir: Path) -> Iterator[str]:
    """A Tansu broker on a free 127.0.0.1 port for the whole session."""
    port = free_port()
    proc = start_broker(port, log_path=str(log_dir / "tansu.log"))
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def kafka_topic() -> str:
    return settings.KAFKA_TOPIC


@pytest.fixture(scope="session", autouse=True)
def clean_redis() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter("sg:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="session")
def database_url(django_db_setup: None) -> str:
    """The test database, for gateway subprocesses to share with the tests."""
    db = connection.settings_dict
    assert db["NAME"].startswith("test_"), db["NAME"]
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@pytest.fixture(scope="session")
def gateway_env(database_url: str, kafka_bootstrap: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.REDIS_URL,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC": settings.KAFKA_TOPIC,
        "SECRET_KEY": settings.SECRET_KEY,
        "ENCRYPTION_KEY": settings.ENCRYPTION_KEY,
    }


@pytest.fixture(scope="session")
def gateway(gateway_env: dict[str, str], log_dir: Path) -> Iterator[Gateway]:
    """One daphne gateway process shared by the session (tests use their own pipelines)."""
    running = start_gateway(gateway_env, log_dir)
    yield running
    running.stop()


@pytest.fixture
def gateway_factory(gateway_env: dict[str, str], log_dir: Path) -> Iterator[Callable[..., Gateway]]:
    """Extra gateway processes with their own environment, stopped when the test ends."""
    started: list[Gateway] = []

    def start(**env: str) -> Gateway:
        running = start_gateway({**gateway_env, **env}, log_dir)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[int], TcpProxy]]:
    proxies: list[TcpProxy] = []

    def make(target_port: int) -> TcpProxy:
        proxy = TcpProxy(target_port)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


@dataclass
class KafkaBehindProxy:
    proxy: TcpProxy
    bootstrap: str


@pytest.fixture
def kafka_behind_proxy(tcp_proxy: Callable[[int], TcpProxy], log_dir: Path) -> Iterator[KafkaBehindProxy]:
    """A broker of its own that advertises the proxy's port, so every client (a gateway's producer
    and the tests' consumer) reaches it through the proxy. The session broker advertises its own
    port: a gateway bootstrapped through a proxy would go around it straight to the broker."""
    port = free_port()
    proxy = tcp_proxy(port)
    listener, advertised = f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{proxy.port}"
    with open(log_dir / f"tansu-behind-proxy-{port}.log", "ab") as log:
        broker = subprocess.Popen(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port)
        yield KafkaBehindProxy(proxy=proxy, bootstrap=f"127.0.0.1:{proxy.port}")
    finally:
        proxy.restore()
        broker.terminate()
        broker.wait(10)


@pytest.fixture
def make_pipeline(transactional_db: None) -> Callable[..., services.PipelineCreated]:
    """Committed pipelines, visible to gateway subprocesses."""
    counter = iter(range(1, 1_000_000))

    def make(**kwargs: object) -> services.PipelineCreated:
        kwargs.setdefault("name", f"Test pipeline {next(counter)} {os.getpid()}")
        return services.pipeline_create(**kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def pipeline(make_pipeline: Callable[..., services.PipelineCreated]) -> services.PipelineCreated:
    return make_pipeline()
