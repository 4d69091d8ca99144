"""Request ids (ingestion/request_ids.py): believed only from a trusted proxy and only when
well-formed, minted otherwise, and carried by every log record of their own request only."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
from typing import Any

import pytest

from ingestion import request_ids
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import post, request

MINTED = re.compile(r"[0-9a-f]{32}")


def scope(peer: str, request_id: bytes | None) -> dict[str, Any]:
    headers = [(b"host", b"collect.example.com"), (b"content-type", b"application/json")]
    if request_id is not None:
        headers.append((b"x-request-id", request_id))
    return {"type": "http", "client": [peer, 50123], "headers": headers}


def begin(peer: str, request_id: bytes | None) -> str:
    """``request_ids.begin`` as the handler calls it, in a context of its own as daphne's task has."""
    return contextvars.Context().run(request_ids.begin, scope(peer, request_id))


@pytest.fixture
def behind_proxy(settings: Any) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "127.0.0.1/32"]


def test_a_request_id_passed_on_by_a_trusted_proxy_is_kept(behind_proxy: None) -> None:
    # Given a request through the load balancer at 10.1.2.3 carrying its id
    # When the request begins
    context = contextvars.Context()
    request_id = context.run(request_ids.begin, scope("10.1.2.3", b"lb-7f3a9c0e-4b1d.2:trace=abc"))

    # Then the gateway uses the proxy's id, so the two logs can be joined
    assert request_id == "lb-7f3a9c0e-4b1d.2:trace=abc"
    assert context.run(request_ids.current) == request_id


def test_a_request_id_from_a_client_the_gateway_does_not_trust_is_replaced(behind_proxy: None) -> None:
    # Given a client connecting directly and choosing its own id
    # When the request begins
    request_id = begin("203.0.113.9", b"chosen-by-the-client")

    # Then the gateway mints its own
    assert MINTED.fullmatch(request_id)


def test_without_trusted_proxies_every_request_id_is_minted(settings: Any) -> None:
    # Given no TRUSTED_PROXIES (the default)
    settings.TRUSTED_PROXIES = []

    # When a request arrives with an id, even from loopback
    request_id = begin("127.0.0.1", b"from-loopback")

    # Then it is not believed
    assert MINTED.fullmatch(request_id)


@pytest.mark.parametrize(
    "header",
    [b"", b"a" * 129, b"has space", b'quote"d', b"line\nbreak", b"caf\xc3\xa9", b"{json}"],
    ids=["empty", "too long", "space", "quote", "newline", "non-ascii", "braces"],
)
def test_a_malformed_request_id_is_replaced_even_from_a_trusted_proxy(behind_proxy: None, header: bytes) -> None:
    # Given a trusted proxy passing on an id no log line should carry
    # When the request begins
    request_id = begin("10.1.2.3", header)

    # Then the gateway mints its own
    assert MINTED.fullmatch(request_id)


def test_minted_request_ids_do_not_repeat() -> None:
    # When a process mints many ids
    minted = [request_ids.mint() for _ in range(50_000)]

    # Then each is new and looks like nginx's $request_id
    assert len(set(minted)) == len(minted)
    assert all(MINTED.fullmatch(one) for one in minted[:100])


def test_each_log_record_carries_the_id_of_its_own_request_only() -> None:
    # Given the filter on a handler that keeps records
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    handler.addFilter(request_ids.RequestIdFilter())
    log = logging.getLogger("tests.request_ids")
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    async def one_request(peer: str) -> str:
        request_id = request_ids.begin(scope(peer, None))
        await asyncio.sleep(0.01)  # the other request runs meanwhile
        log.info("handled")
        return request_id

    async def two_requests() -> list[str]:
        # daphne runs each request as a task of its own
        return list(await asyncio.gather(one_request("198.51.100.1"), one_request("198.51.100.2")))

    # When two requests interleave on one loop, and something logs outside any request
    try:
        ids = asyncio.run(two_requests())
        log.info("between requests")
    finally:
        log.removeHandler(handler)

    # Then each request's record has its own id, and the other record none
    assert [getattr(r, "request_id", None) for r in records] == [*ids, None]
    assert ids[0] != ids[1]


# -- end to end: a real gateway echoes the id and logs with it ----------------------------------------


def test_the_gateway_echoes_a_trusted_proxys_request_id_and_logs_the_request_with_it(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    # Given a gateway behind a proxy on loopback
    gateway = gateway_factory(TRUSTED_PROXIES="127.0.0.1/32")
    url = f"{gateway.url}/v1/pixel/track?wk=dk_{'x' * 32}&e=Open"

    # When the proxy passes on its id for a pixel the gateway drops (an unknown key)
    response = request("GET", url, headers={"X-Request-ID": "edge-4f1c2a.7"})
    gateway.stop()

    # Then the answer carries the id, and so does the log line about that request
    assert response.status == 200 and response.header("X-Request-ID") == "edge-4f1c2a.7"
    lines = [json.loads(line) for line in gateway.log().splitlines() if line.strip()]
    dropped = [line for line in lines if line["message"].startswith("pixel dropped")]
    assert [line.get("request_id") for line in dropped] == ["edge-4f1c2a.7"]


def test_every_answer_carries_a_minted_request_id_when_no_proxy_is_trusted(gateway: Gateway) -> None:
    # Given the shared gateway (no TRUSTED_PROXIES)
    # When a client sends its own id, to an endpoint, to an unknown path and with a bad key
    answers = [
        request("GET", gateway.url + "/healthz", headers={"X-Request-ID": "client-chosen"}),
        request("GET", gateway.url + "/v1/nowhere", headers={"X-Request-ID": "client-chosen"}),
        post(gateway.url + "/v1/t", {"event": "E"}, key="dk_" + "y" * 32),
    ]

    # Then each answer has an id of the gateway's own, different each time
    ids = [answer.header("X-Request-ID") for answer in answers]
    assert [answer.status for answer in answers] == [200, 404, 401]
    assert all(one is not None and MINTED.fullmatch(one) for one in ids), ids
    assert len(set(ids)) == 3
