"""The gateway's adaptations of its dependencies' internals (signal_gateway.adapters), each checked
against the pinned versions: when an upgrade changes what one relies on, a test here fails loudly."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.http import HttpRequest, HttpResponse
from ninja import Status
from ninja.testing import TestAsyncClient

from signal_gateway.adapters import ninja as ninja_adapter
from signal_gateway.adapters.daphne import tune_requests
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


# -- daphne: the request class ----------------------------------------------------------------


def test_daphne_builds_each_request_with_the_gateways_request_class() -> None:
    # Given the adaptation applied
    tune_requests()
    from daphne import http_protocol
    from twisted.web import http

    # When daphne's factory builds the protocol for a new connection
    protocol = http_protocol.HTTPFactory(server=None).buildProtocol(("127.0.0.1", 1))

    # Then its requests are ours: a Twisted Request that does not parse forms
    assert protocol.requestFactory is http_protocol.WebRequest
    assert getattr(protocol.requestFactory, "parses_forms", True) is False
    assert issubclass(protocol.requestFactory, http.Request)
    assert hasattr(http_protocol.WebRequest, "finish")


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
