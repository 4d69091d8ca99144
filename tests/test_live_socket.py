"""The live view's WebSocket (issue 10), driven with channels' communicator against the real broker:
staff only, and a socket hears only the pipeline it asked for."""

from __future__ import annotations

import asyncio
import socket as socket_module
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import pytest
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from confluent_kafka import Producer
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.db import connections
from django.test import Client

from ingestion import livefeed, rejected
from ingestion.consumers import websocket_urlpatterns
from ingestion.livefeed import LiveFeed
from ingestion.publisher import Publisher
from pipelines.services import PipelineCreated
from tests.fixtures.gateway import Gateway

T = TypeVar("T")
HOST = "admin.gateway.test"
# What signal_gateway.asgi routes WebSockets to (importing it would start this process's producer).
application = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    async def then_close_connections() -> T:
        try:
            return await coroutine
        finally:
            # The consumer's ORM calls ran in asgiref's one sync thread; its connection must not
            # outlive the test (the test database could not be dropped at the end).
            await database_sync_to_async(connections.close_all)()

    return asyncio.run(then_close_connections())


@pytest.fixture
def feed(kafka_bootstrap: str) -> Iterator[LiveFeed]:
    """This process's live feed on the session broker, with both topics present."""
    publisher = Publisher(bootstrap=kafka_bootstrap, topic=settings.KAFKA_TOPIC, ack_timeout=2.0)
    for topic in (settings.KAFKA_TOPIC, settings.KAFKA_REJECTED_TOPIC):
        assert publisher.ensure_topic(partitions=settings.KAFKA_TOPIC_PARTITIONS, topic=topic)
    publisher.close(timeout=1.0)
    saved = livefeed._default
    livefeed._default = LiveFeed(
        bootstrap=kafka_bootstrap,
        accepted_topic=settings.KAFKA_TOPIC,
        rejected_topic=settings.KAFKA_REJECTED_TOPIC,
    )
    yield livefeed._default
    livefeed._default = saved


def session_cookie(user: User) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


@pytest.fixture
def staff_cookie(transactional_db: None) -> bytes:
    return session_cookie(User.objects.create_superuser("ops", "ops@example.com", "correct horse battery"))


def socket(
    pipeline_id: str, cookie: bytes | None = None, origin: str | None = f"https://{HOST}"
) -> WebsocketCommunicator:
    headers = [(b"host", HOST.encode())]
    if cookie:
        headers.append((b"cookie", cookie))
    if origin:
        headers.append((b"origin", origin.encode()))
    return WebsocketCommunicator(application, f"/ws/pipelines/{pipeline_id}/live", headers=headers)


async def connect(communicator: WebsocketCommunicator) -> tuple[bool, Any]:
    # The first socket waits for the reader to find both topics' ends: generous on a loaded machine.
    return await communicator.connect(timeout=15)


def produce_events(bootstrap: str, pipeline_id: str, event: str) -> None:
    """One accepted event on raw-events and one refusal on rejected-events, as the gateway writes them."""
    producer = Producer({"bootstrap.servers": bootstrap})
    envelope = {"messageId": str(uuid.uuid4()), "type": "track", "event": event, "pipelineId": pipeline_id}
    producer.produce(
        settings.KAFKA_TOPIC,
        orjson.dumps(envelope),
        f"{pipeline_id}:visitor".encode(),
        headers=[("pipeline_id", pipeline_id.encode()), ("source_kind", b"browser")],
    )
    refusal = rejected.to_record(
        pipeline_id=pipeline_id,
        source_kind="server",
        source_id=None,
        code="INVALID_SIGNATURE",
        message=f"bad signature for {event}",
        received_at=datetime.now(UTC),
        payload=orjson.dumps({"event": event}),
    )
    producer.produce(settings.KAFKA_REJECTED_TOPIC, refusal.value, refusal.key, headers=refusal.headers)
    assert producer.flush(10) == 0


def test_an_anonymous_visitor_is_refused_with_4403(feed: LiveFeed, pipeline: PipelineCreated) -> None:
    async def scenario() -> tuple[bool, Any]:
        # Given no session at all
        communicator = socket(pipeline.pipeline.id)
        # When it opens the live socket
        try:
            return await connect(communicator)
        finally:
            await communicator.disconnect()

    # Then the handshake is refused with 4403 and no Kafka reader was started for it
    assert run(scenario()) == (False, 4403)
    assert not feed.reading


@pytest.mark.parametrize("who", ["a logged-in user who is not staff", "staff without the right to view pipelines"])
def test_a_user_without_the_right_to_view_pipelines_is_refused_with_4403(
    feed: LiveFeed, pipeline: PipelineCreated, who: str
) -> None:
    # Given a session of a user who may not see pipelines in the admin
    user = User.objects.create_user("someone", "someone@example.com", "correct horse battery")
    if who.startswith("staff"):
        user.is_staff = True
        user.save()
        user.user_permissions.add(Permission.objects.get(codename="view_source"))
    cookie = session_cookie(user)

    async def scenario() -> tuple[bool, Any]:
        communicator = socket(pipeline.pipeline.id, cookie)
        try:
            return await connect(communicator)
        finally:
            await communicator.disconnect()

    # When they open the live socket, then it is refused with 4403
    assert run(scenario()) == (False, 4403)


def test_a_page_on_another_origin_is_refused_even_with_a_staff_session(
    feed: LiveFeed, pipeline: PipelineCreated, staff_cookie: bytes
) -> None:
    async def scenario() -> tuple[bool, Any]:
        # Given a page elsewhere that the staff member's browser opens, cookie included
        communicator = socket(pipeline.pipeline.id, staff_cookie, origin="https://evil.example")
        try:
            return await connect(communicator)
        finally:
            await communicator.disconnect()

    # Then it is refused with 4403
    assert run(scenario()) == (False, 4403)


def test_an_unknown_pipeline_is_refused_with_4404(feed: LiveFeed, staff_cookie: bytes) -> None:
    async def scenario() -> tuple[bool, Any]:
        communicator = socket("pip_doesnotexist", staff_cookie)
        try:
            return await connect(communicator)
        finally:
            await communicator.disconnect()

    assert run(scenario()) == (False, 4404)


def test_a_staff_socket_receives_its_pipelines_accepted_and_rejected_events_and_no_other(
    feed: LiveFeed,
    make_pipeline: Callable[..., PipelineCreated],
    staff_cookie: bytes,
    kafka_bootstrap: str,
) -> None:
    watched, other = make_pipeline().pipeline.id, make_pipeline().pipeline.id

    async def scenario() -> tuple[tuple[bool, Any], list[dict[str, Any]], bool]:
        # Given a staff member watching one pipeline
        communicator = socket(watched, staff_cookie)
        connected = await connect(communicator)
        try:
            # When both pipelines get an accepted and a refused event
            await asyncio.to_thread(produce_events, kafka_bootstrap, other, "Other Pipeline")
            await asyncio.to_thread(produce_events, kafka_bootstrap, watched, "Watched Pipeline")
            received = [orjson.loads(await communicator.receive_from(timeout=10)) for _ in range(2)]
            quiet = await communicator.receive_nothing(timeout=1.5)
        finally:
            await communicator.disconnect()
        return connected, received, quiet

    connected, received, quiet = run(scenario())

    # Then the socket was let in, and heard the watched pipeline's two events only
    assert connected == (True, None)
    by_status = {message["status"]: message for message in received}
    assert by_status.keys() == {"accepted", "rejected"}, received
    assert by_status["accepted"]["envelope"]["event"] == "Watched Pipeline"
    assert by_status["accepted"]["envelope"]["pipelineId"] == watched
    assert by_status["rejected"]["reason"] == "INVALID_SIGNATURE"
    assert by_status["rejected"]["message"] == "bad signature for Watched Pipeline"
    assert orjson.loads(by_status["rejected"]["payload"]) == {"event": "Watched Pipeline"}
    assert by_status["rejected"]["source"] == {"kind": "server", "id": None}
    assert quiet, "an event of another pipeline reached the socket"


def test_closing_the_last_socket_stops_the_kafka_reader(
    feed: LiveFeed, pipeline: PipelineCreated, staff_cookie: bytes
) -> None:
    async def scenario() -> bool:
        # Given two staff sockets on the pipeline
        first, second = socket(pipeline.pipeline.id, staff_cookie), socket(pipeline.pipeline.id, staff_cookie)
        assert (await connect(first))[0] and (await connect(second))[0]
        # When one closes, the reader keeps serving the other
        await first.disconnect()
        await asyncio.sleep(0.5)
        still_reading = feed.reading
        # When the last one closes
        await second.disconnect()
        return still_reading

    assert run(scenario()) is True
    # Then the reader thread and its consumer stop within a poll or two
    deadline = time.monotonic() + 5
    while feed.reading and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not feed.reading


def websocket_handshake_status(gateway: Gateway, path: str) -> str:
    """The status line a real gateway answers a WebSocket handshake with."""
    with socket_module.create_connection(("127.0.0.1", gateway.port), timeout=10) as conn:
        conn.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        return conn.recv(4096).split(b"\r\n", 1)[0].decode()


def test_the_running_gateway_refuses_an_anonymous_handshake_with_http_403(
    gateway: Gateway, pipeline: PipelineCreated
) -> None:
    # Given the gateway as deployed (daphne, signal_gateway.asgi)
    # When a client without a session opens a pipeline's live socket
    status = websocket_handshake_status(gateway, f"/ws/pipelines/{pipeline.pipeline.id}/live")

    # Then the handshake is answered 403, not switched to a WebSocket
    assert status.startswith("HTTP/1.1 403 "), status
