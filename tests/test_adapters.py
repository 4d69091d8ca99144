"""The gateway's adaptations of its dependencies' internals (signal_gateway.adapters), each checked
against the pinned versions: when an upgrade changes what one relies on, a test here fails loudly."""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from ninja import Status
from ninja.testing import TestAsyncClient
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from signal_gateway.adapters import ninja as ninja_adapter
from signal_gateway.adapters.daphne import Refusal, WireAnswer, tune_requests
from signal_gateway.adapters.django import DeferredResponse
from signal_gateway.devbroker import wait_for_port
from tests.fixtures.http import request
from tests.fixtures.net import free_port

ROOT = Path(__file__).resolve().parents[1]


# -- django-ninja: the per-request response is built on first use -------------------------------


class CountingAPI(ninja_adapter.DeferredResponseAPI):
    made = 0

    def create_temporal_response(self, request: HttpRequest) -> HttpResponse:
        CountingAPI.made += 1
        return super().create_temporal_response(request)


def probe_api() -> CountingAPI:
    """Views of every kind ninja supports, each leaving a mark of its own request on the response."""
    api = CountingAPI(urls_namespace=f"adapter-probe-{time.monotonic_ns()}")

    @api.get("/dict")
    async def returns_a_dict(request: HttpRequest, n: int) -> dict[str, int]:
        await asyncio.sleep(0.01 * (3 - n))  # the first request finishes last
        return {"n": n}

    @api.get("/headers")
    async def sets_headers_and_a_cookie(request: HttpRequest, response: HttpResponse, n: int) -> dict[str, int]:
        response["X-N"] = str(n)
        await asyncio.sleep(0.01 * (3 - n))
        response.set_cookie("n", str(n))
        return {"n": n}

    @api.get("/status", response={201: dict, 202: dict, 203: dict})
    async def returns_a_status(request: HttpRequest, n: int) -> Status:
        return Status(201 + n, {"n": n})

    @api.get("/own")
    async def returns_its_own_response(request: HttpRequest) -> HttpResponse:
        return HttpResponse(b"own", status=202)

    return api


def test_every_kind_of_ninja_view_gets_a_response_of_its_own_even_when_requests_overlap() -> None:
    # Given views that return dicts, set headers and cookies on ninja's response, or return a status
    client = TestAsyncClient(probe_api())

    async def overlapping() -> list[list[HttpResponse]]:
        kinds = ["/dict", "/headers", "/status"]
        return [await asyncio.gather(*(client.get(f"{kind}?n={n}") for n in range(3))) for kind in kinds]

    # When three requests to each are in flight at once
    dicts, headers, statuses = asyncio.run(overlapping())

    # Then every answer is its own request's
    assert [(r.status_code, r.json()) for r in dicts] == [(200, {"n": n}) for n in range(3)]
    assert [(r["X-N"], r.cookies["n"].value, r.json()) for r in headers] == [
        (str(n), str(n), {"n": n}) for n in range(3)
    ]
    assert [(r.status_code, r.json()) for r in statuses] == [(201 + n, {"n": n}) for n in range(3)]


def test_ninja_builds_one_per_request_response_and_passes_a_views_own_response_through() -> None:
    # Given a view that returns its own response (as every ingestion view does)
    client = TestAsyncClient(probe_api())
    CountingAPI.made = 0

    # When it is called twice
    answers = [asyncio.run(client.get("/own")) for _ in range(2)]

    # Then ninja asked for its per-request response once per request (the adaptation applies) and
    # handed the view's own response back untouched
    assert CountingAPI.made == 2
    assert [(r.status_code, r.content) for r in answers] == [(202, b"own")] * 2


# -- Django: a response built on first use -----------------------------------------------------


def test_a_deferred_response_becomes_a_whole_django_response_on_first_use() -> None:
    # Given a deferred response whose status is then changed, as ninja does before using it
    response = DeferredResponse(b'{"a":1}', status=200, content_type="application/json; charset=utf-8")
    assert response.deferred_parts() == (b'{"a":1}', "application/json; charset=utf-8")
    response.status_code = 418

    # When something first uses it as a Django response
    response["X-Probe"] = "1"
    response.set_cookie("c", "v")

    # Then it is a whole response with that status, body and content type, and no longer deferred
    assert (response.status_code, response["Content-Type"], response["X-Probe"]) == (
        418,
        "application/json; charset=utf-8",
        "1",
    )
    assert response.content == b'{"a":1}'
    assert response.cookies["c"].value == "v"
    assert response.reason_phrase == "I'm a Teapot"
    assert response.deferred_parts() is None
    with pytest.raises(AttributeError):
        response.no_such_attribute  # noqa: B018


def test_every_attribute_django_gives_a_response_is_set_by_its_init() -> None:
    # Given what HttpResponse.__init__ sets, and a deferred response read attribute by attribute
    whole = HttpResponse(b"x", content_type="text/plain")
    names = [name for name in vars(whole) if name != "status_code"]

    for name in names:
        # When one of them is read first
        response = DeferredResponse(b"x", content_type="text/plain")
        value = getattr(response, name)

        # Then the response was built whole, as Django builds it
        assert response.deferred_parts() is None, name
        assert type(value) is type(getattr(whole, name)), name


# -- daphne: the connection and request classes --------------------------------------------------


class ProbeWire:
    """Limits of our own, so the test pins what the adapter does, not what ingestion decides."""

    def body_limit(self, path: str) -> int:
        return 100 if path == "/small" else 10_000

    def refusal(self, reason: Refusal, path: str, *, limit: int, timeout: float) -> WireAnswer:
        return WireAnswer(418, [(b"X-Path", path.encode())], f"{reason.name} {limit} {timeout:g}".encode())


class ProbeServer:
    """What daphne's WebRequest asks of its server before the application is involved."""

    proxy_forwarded_address_header = None
    root_path = ""

    def __init__(self) -> None:
        self.connections: dict[Any, dict[str, Any]] = {}
        self.scopes: list[dict[str, Any]] = []

    def protocol_connected(self, protocol: Any) -> None:
        self.connections[protocol] = {}

    def protocol_disconnected(self, protocol: Any) -> None:
        self.connections.pop(protocol, None)

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> None:
        self.scopes.append(scope)  # and no application: the request goes no further
        return None


@pytest.fixture
def wire_connection() -> Iterator[Callable[[], tuple[Any, StringTransport, Clock]]]:
    tune_requests(wire=ProbeWire(), headers_timeout=1.0, body_timeout=2.0)
    from daphne import http_protocol

    def connect() -> tuple[Any, StringTransport, Clock]:
        clock = Clock()
        protocol = http_protocol.HTTPFactory(server=ProbeServer()).buildProtocol(("127.0.0.1", 1))
        protocol.callLater = clock.callLater
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport, clock

    yield connect
    tune_requests()


def test_daphne_builds_each_connection_and_request_with_the_gateways_classes() -> None:
    # Given the adaptation applied
    tune_requests()
    from daphne import http_protocol
    from twisted.web import http

    # When daphne's factory builds the protocol for a new connection
    protocol = http_protocol.HTTPFactory(server=None).buildProtocol(("127.0.0.1", 1))

    # Then its requests are ours: a Twisted Request that does not parse forms, on our HTTPChannel
    assert protocol.requestFactory is http_protocol.WebRequest
    assert getattr(protocol.requestFactory, "parses_forms", True) is False
    assert issubclass(protocol.requestFactory, http.Request)
    assert hasattr(http_protocol.WebRequest, "finish")
    assert isinstance(protocol._channel, http.HTTPChannel)
    assert hasattr(protocol._channel, "refuse")
    for name in ("length", "_receivedHeaderSize", "_receivedHeaderCount", "_handlingRequest"):
        assert hasattr(protocol._channel, name), name
    assert (http.HTTPChannel.totalHeadersSize, http.HTTPChannel.maxHeaders, http.HTTPChannel.MAX_LENGTH) == (
        16384,
        500,
        16384,
    )  # the figures the refusals quote (ingestion.handler.WireLimits)


def test_a_content_length_over_the_paths_limit_is_answered_from_the_headers(wire_connection: Any) -> None:
    # Given a connection, and a path whose bodies may weigh 100 bytes
    protocol, transport, _ = wire_connection()

    # When a request announces 101, expecting "100 Continue"
    protocol.dataReceived(b"POST /small?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\nExpect: 100-continue\r\n\r\n")

    # Then the wire's answer is written at once, with no "100 Continue", and the connection ends
    written = transport.value()
    assert written.startswith(b"HTTP/1.1 418 "), written
    assert b"X-Path: /small\r\n" in written and b"Connection: close\r\n" in written
    assert written.endswith(b"\r\n\r\nBODY_TOO_LARGE 100 1")
    assert b"100 Continue" not in written
    assert transport.disconnecting


def test_a_chunked_body_is_refused_where_it_passes_the_limit_and_the_rest_is_discarded(wire_connection: Any) -> None:
    # Given a chunked request to a path whose bodies may weigh 100 bytes
    protocol, transport, _ = wire_connection()
    protocol.dataReceived(b"POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert transport.value() == b""

    # When 60 bytes arrive, then 60 more and the end of the body
    protocol.dataReceived(b"3c\r\n" + b"x" * 60 + b"\r\n")
    before = transport.value()
    protocol.dataReceived(b"3c\r\n" + b"x" * 60 + b"\r\n0\r\n\r\n")

    # Then nothing was answered while it was within the limit, the refusal came with the 120th byte,
    # and the request never went on to the application
    assert before == b""
    assert transport.value().startswith(b"HTTP/1.1 418 ")
    assert transport.value().endswith(b"BODY_TOO_LARGE 100 1")
    assert not protocol._channel._handlingRequest


def test_a_body_within_the_limit_is_kept_in_memory_not_in_a_temporary_file(wire_connection: Any) -> None:
    # Given a request whose Content-Length (9,000) Twisted would spool to a file past 100,000 bytes
    # and a limit of 10,000 on its path
    protocol, _, _ = wire_connection()
    protocol.dataReceived(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 9000\r\n\r\n" + b"x" * 10)

    # When we look where its body goes
    request = protocol._channel.requests[-1]

    # Then it is memory
    assert isinstance(request.content, io.BytesIO)


def test_the_headers_deadline_runs_from_the_first_byte_whatever_the_client_trickles(wire_connection: Any) -> None:
    # Given a connection whose headers must arrive within 1 s
    protocol, transport, clock = wire_connection()

    # When a byte comes every 0.125 s (each one resets Twisted's idle timer)
    for byte in b"POST /small HTTP/1.1\r\nHost: x\r\n":
        protocol.dataReceived(bytes([byte]))
        clock.advance(0.125)
        if transport.value():
            break

    # Then the deadline answered after 1 s
    assert transport.value().endswith(b"HEADERS_TIMEOUT 0 1"), transport.value()
    assert clock.seconds() == pytest.approx(1.0)


def test_a_request_that_arrives_in_one_read_sets_no_timer(wire_connection: Any) -> None:
    # Given a connection whose timers are counted
    protocol, transport, clock = wire_connection()
    timers: list[float] = []

    def counted(seconds: float, *args: Any) -> Any:
        timers.append(seconds)
        return clock.callLater(seconds, *args)

    protocol.callLater = counted

    # When a whole request, headers and body, arrives in one read (as nearly all do)
    protocol.dataReceived(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")

    # Then it went on to the application without a deadline ever being set (each costs the loop a
    # timer to add and cancel)
    assert protocol._channel.factory.server.scopes[0]["path"] == "/big"
    assert timers == []
    assert transport.value() == b""


def test_the_body_deadline_runs_from_the_end_of_the_headers(wire_connection: Any) -> None:
    # Given a request whose body must arrive within 2 s of its headers
    protocol, transport, clock = wire_connection()
    protocol.dataReceived(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n")

    # When its body trickles
    for _ in range(30):
        protocol.dataReceived(b"x")
        clock.advance(0.1)

    # Then it is refused at 2 s
    assert transport.value().endswith(b"BODY_TIMEOUT 10000 2"), transport.value()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (
            b"POST /small HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(501)) + b"\r\n",
            b"HEADERS_TOO_LARGE",
        ),
        (b"POST /small HTTP/1.1\r\nX-Big: " + b"v" * 17_000 + b"\r\n", b"HEADERS_TOO_LARGE"),
        (b"GET /" + b"a" * 17_000 + b" HTTP/1.1\r\n", b"REQUEST_LINE_TOO_LONG"),
        (b"POST /small HTTP/1.1\r\nContent-Length: x\r\n\r\n", b"MALFORMED"),
    ],
    ids=["501 headers", "a 17 KB header line", "a 17 KB request line", "a bad Content-Length"],
)
def test_what_twisted_refuses_is_answered_in_the_wires_words(wire_connection: Any, raw: bytes, reason: bytes) -> None:
    # Given a connection
    protocol, transport, _ = wire_connection()

    # When Twisted's parser gives up on what it was sent
    protocol.dataReceived(raw)

    # Then the answer is the wire's, not a bare 400 or a closed connection
    assert transport.value().startswith(b"HTTP/1.1 418 "), transport.value()[:100]
    assert reason in transport.value()


# -- Twisted: the SIGTERM handler --------------------------------------------------------------


def test_sigterm_reaches_the_gateways_handler_not_twisteds(tmp_path: Path) -> None:
    # Given a daphne process whose application put its SIGTERM handler in Twisted's place
    port = free_port()
    log_path = tmp_path / "daphne.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port),
             "tests.fixtures.sigterm_probe:application"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for_port(port, timeout=20)
        assert request("GET", f"http://127.0.0.1:{port}/").status == 200  # the reactor is running

        # When it receives SIGTERM
        server.send_signal(signal.SIGTERM)
        code = server.wait(15)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    # Then the gateway's handler ran (Twisted's would stop without a word) and the process exited cleanly
    assert "sigterm handled by the gateway" in log_path.read_text()
    assert code == 0


# -- prometheus-client: many observations of a histogram at once --------------------------------


def test_a_tally_added_to_a_histogram_exports_what_observing_each_value_would() -> None:
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from signal_gateway.adapters import prometheus

    # Given two identical histograms, and observations that land in several buckets, +Inf included
    values = [0.0005, 0.001, 0.003, 0.003, 0.2, 7.0, 42.0]
    registries = [CollectorRegistry(), CollectorRegistry()]
    one_by_one, tallied = (
        Histogram("probe_seconds", "probe", ["endpoint"], buckets=(0.001, 0.01, 1.0, 10.0), registry=r).labels("/x")
        for r in registries
    )

    # When one observes each value and the other gets them as a tally
    for value in values:
        one_by_one.observe(value)
    bounds = prometheus.upper_bounds(tallied)
    counts = [0.0] * len(bounds)
    for value in values:
        counts[next(i for i, bound in enumerate(bounds) if value <= bound)] += 1
    prometheus.add_observations(tallied, counts, sum(values))

    # Then both export the same samples
    assert list(bounds) == [0.001, 0.01, 1.0, 10.0, float("inf")]
    assert generate_latest(registries[0]) == generate_latest(registries[1])
