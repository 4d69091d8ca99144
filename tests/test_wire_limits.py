"""What the gateway does on the wire, before a request reaches the application
(signal_gateway.adapters.daphne with ingestion.handler.WireLimits): a body over its path's limit is
refused from its headers, or as soon as a chunked body passes it, and never buffered; headers and
bodies have deadlines; too many headers get an answer in the error shape."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable

import pytest

from pipelines.services import PipelineCreated
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import assert_error, post
from tests.fixtures.wire import RawAnswer, RawConnection, chunk, request_head, rss_mb, temp_files


def assert_wire_error(answer: RawAnswer, status: int, code: str) -> None:
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/json", answer
    body = answer.json()
    assert list(body) == ["error"] and body["error"]["code"] == code, body
    assert body["error"]["message"], body


# -- bodies over the limit ----------------------------------------------------------------------


def test_a_content_length_of_a_terabyte_is_answered_413_at_once(gateway: Gateway) -> None:
    # Given a client announcing a body of 10^12 bytes to a browser path
    connection = RawConnection(gateway.port)

    # When it has sent only the headers
    connection.send(request_head("/v1/t", headers={"Content-Length": str(10**12), "Content-Type": "text/plain"}))
    answer = connection.answer()

    # Then it is refused at once, in the error shape, and the connection is closed
    assert_wire_error(answer, 413, "PAYLOAD_TOO_LARGE")
    assert answer.seconds < 2, answer.seconds
    assert answer.closed
    assert answer.headers["connection"] == "close"


def test_a_batch_announced_over_5_mb_is_refused_at_once_as_batch_too_large(gateway: Gateway) -> None:
    # Given a batch announced at 6 MB
    connection = RawConnection(gateway.port)

    # When only its headers are sent
    connection.send(request_head("/v1/batch", headers={"Content-Length": str(6 * 1024 * 1024)}))

    # Then it is refused whole, as a batch over 5 MB always was, without waiting for the body
    answer = connection.answer()
    assert_wire_error(answer, 400, "BATCH_TOO_LARGE")
    assert answer.seconds < 2, answer.seconds


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(gateway: Gateway) -> None:
    # Given a chunked upload to a browser path (limit 64 KB)
    connection = RawConnection(gateway.port)
    connection.send(request_head("/v1/t", headers={"Transfer-Encoding": "chunked", "Content-Type": "text/plain"}))

    # When 80 KB have been sent and the body is not over yet
    connection.send(chunk(b"x" * 40_000) + chunk(b"x" * 40_000))

    # Then the answer comes without waiting for the end of the body
    answer = connection.answer()
    assert_wire_error(answer, 413, "PAYLOAD_TOO_LARGE")
    assert answer.closed


def test_a_client_that_sends_its_whole_oversized_body_before_reading_still_reads_the_413(gateway: Gateway) -> None:
    # Given a client that writes its whole body before it reads anything (urllib does)
    body = json.dumps({"event": "Big", "properties": {"blob": "x" * 2_000_000}}).encode()

    # When it posts 2 MB to a browser path
    response = post(gateway.url + "/v1/t", body, key="dk_whatever")

    # Then it reads the refusal, not a reset connection
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_a_body_within_the_limit_announced_by_its_length_is_still_accepted(
    gateway: Gateway, pipeline: PipelineCreated
) -> None:
    # Given a batch of 400 KB, sent with its Content-Length (once Twisted would spool it to a file)
    batch = {
        "batch": [
            {"type": "track", "event": "E", "userId": f"u{i}", "properties": {"p": "x" * 2000}} for i in range(200)
        ]
    }

    # When it is posted
    response = post(gateway.url + "/v1/batch", batch, key=pipeline.pipeline_key)

    # Then every event is accepted
    assert response.status == 200, response.body
    assert response.json()["accepted"] == 200


def test_a_chunked_gzip_body_within_the_limit_is_still_accepted(gateway: Gateway, pipeline: PipelineCreated) -> None:
    # Given a gzip body sent in chunks (what a streaming client sends)
    body = gzip.compress(json.dumps({"event": "Chunked", "anonymousId": "a1"}).encode())
    connection = RawConnection(gateway.port)
    head = request_head(
        "/v1/t",
        headers={
            "Transfer-Encoding": "chunked",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Authorization": f"Bearer {pipeline.pipeline_key}",
        },
    )

    # When it arrives in two chunks and the terminating one
    connection.send(head + chunk(body[:10]) + chunk(body[10:]) + b"0\r\n\r\n")

    # Then it is accepted
    answer = connection.answer()
    assert answer.status == 200, answer
    assert answer.json() == {"success": True}


def test_a_100_mb_upload_leaves_the_gateways_memory_and_files_as_they_were(
    gateway_factory: Callable[..., Gateway],
) -> None:
    # Given a gateway of our own, so its memory is this test's alone
    own = gateway_factory()
    before = rss_mb(own.process.pid)

    # When a client uploads 100 MB in chunks to a browser path, as fast as it can, without reading
    connection = RawConnection(own.port)
    connection.send(request_head("/v1/t", headers={"Transfer-Encoding": "chunked", "Content-Type": "text/plain"}))
    block = chunk(b"x" * (1 << 20))
    for _ in range(100):
        if not connection.send(block):
            break

    # Then it was refused early, and the gateway neither buffered the body nor spooled it to a file
    answer = connection.answer()
    assert_wire_error(answer, 413, "PAYLOAD_TOO_LARGE")
    assert rss_mb(own.process.pid) - before < 30, (before, rss_mb(own.process.pid))
    assert temp_files(own.process.pid) == []


# -- deadlines ----------------------------------------------------------------------------------


def test_headers_trickled_a_byte_at_a_time_are_cut_off_at_the_headers_deadline(
    gateway_factory: Callable[..., Gateway],
) -> None:
    # Given a gateway whose headers deadline is 1 s
    own = gateway_factory(HTTP_HEADERS_TIMEOUT="1")
    connection = RawConnection(own.port)

    # When a client sends its headers one byte every 50 ms (each byte would reset an idle timer)
    head = request_head("/v1/t", headers={"X-Padding": "p" * 200, "Content-Length": "2"})
    sent = connection.trickle(head, every=0.05, until=8)

    # Then it is told it timed out and cut off after about a second, long before its headers were complete
    answer = connection.answer()
    assert_wire_error(answer, 408, "REQUEST_TIMEOUT")
    assert answer.closed
    assert 0.8 < answer.seconds < 4, answer.seconds
    assert sent < len(head)


def test_a_body_trickled_a_byte_at_a_time_is_cut_off_at_the_body_deadline(
    gateway_factory: Callable[..., Gateway],
) -> None:
    # Given a gateway whose body deadline is 1 s
    own = gateway_factory(HTTP_BODY_TIMEOUT="1")
    connection = RawConnection(own.port)
    connection.send(request_head("/v1/t", headers={"Content-Length": "1000", "Content-Type": "text/plain"}))

    # When the body comes one byte every 50 ms
    sent = connection.trickle(b"x" * 1000, every=0.05, until=8)

    # Then the request is cut off at the deadline, in the error shape
    answer = connection.answer()
    assert_wire_error(answer, 408, "REQUEST_TIMEOUT")
    assert answer.closed
    assert answer.seconds < 4, answer.seconds
    assert sent < 1000


def test_a_slow_body_with_a_large_content_length_holds_no_temporary_file(gateway: Gateway) -> None:
    # Given a batch announced at 4 MB, of which 300 KB have arrived
    connection = RawConnection(gateway.port)
    connection.send(request_head("/v1/batch", headers={"Content-Length": str(4 * 1024 * 1024)}))
    connection.send(b"x" * 300_000)
    time.sleep(0.3)

    # When we look at what the gateway holds open
    held = temp_files(gateway.process.pid)
    connection.close()

    # Then no temporary file is among it: the body is kept in memory, bounded by the path's limit
    assert held == []


@pytest.mark.parametrize("setting", ["HTTP_HEADERS_TIMEOUT", "HTTP_BODY_TIMEOUT"])
def test_a_request_within_the_deadlines_is_answered_as_usual(
    gateway_factory: Callable[..., Gateway], pipeline: PipelineCreated, setting: str
) -> None:
    # Given a gateway with a short deadline
    own = gateway_factory(**{setting: "1"})

    # When a client sends a request promptly, twice over one connection, two seconds apart
    connection = RawConnection(own.port)
    body = json.dumps({"event": "Prompt", "anonymousId": "a1"}).encode()
    head = request_head(
        "/v1/t", headers={"Content-Length": str(len(body)), "Authorization": f"Bearer {pipeline.pipeline_key}"}
    )
    connection.send(head + body)
    first = connection.answer()
    time.sleep(2)  # idle between requests is not a slow request
    connection.send(head + body)
    second = connection.answer()

    # Then both are accepted
    assert (first.status, second.status) == (200, 200), (first, second)


# -- headers ------------------------------------------------------------------------------------


def test_more_than_500_headers_are_answered_431_in_the_error_shape(gateway: Gateway) -> None:
    # Given a request with 600 headers
    connection = RawConnection(gateway.port)
    headers = {f"X-H{i}": "v" for i in range(600)}

    # When it is sent
    connection.send(request_head("/v1/t", headers={**headers, "Content-Length": "2"}) + b"{}")

    # Then it gets a 431 in the error shape, not Twisted's bare 400
    answer = connection.answer()
    assert_wire_error(answer, 431, "HEADERS_TOO_LARGE")
    assert answer.closed


def test_headers_over_16_kb_are_answered_431_in_the_error_shape(gateway: Gateway) -> None:
    # Given 20 KB of headers in 20 lines
    connection = RawConnection(gateway.port)
    headers = {f"X-H{i}": "v" * 1000 for i in range(20)}

    # When they are sent
    connection.send(request_head("/v1/t", headers=headers))

    # Then the answer is a 431 in the error shape
    assert_wire_error(connection.answer(), 431, "HEADERS_TOO_LARGE")


def test_one_header_line_over_16_kb_is_answered_431_not_dropped(gateway: Gateway) -> None:
    # Given one header line of 20 KB (Twisted closed the connection without a word)
    connection = RawConnection(gateway.port)

    # When it is sent
    connection.send(request_head("/v1/t", headers={"X-Big": "v" * 20_000}))

    # Then it gets an answer
    assert_wire_error(connection.answer(), 431, "HEADERS_TOO_LARGE")


def test_a_request_line_over_16_kb_is_answered_414(gateway: Gateway) -> None:
    # Given a pixel URL of 20 KB
    connection = RawConnection(gateway.port)

    # When it is requested
    connection.send(request_head("/v1/pixel/track?e=" + "a" * 20_000, method="GET"))

    # Then it is answered, in the error shape
    assert_wire_error(connection.answer(), 414, "URI_TOO_LONG")


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /v1/t HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/t HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"POST /v1/t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GARBAGE\r\n\r\n",
    ],
    ids=["bad length", "bad header", "bad chunk", "bad request line"],
)
def test_a_malformed_request_is_answered_400_in_the_error_shape(gateway: Gateway, raw: bytes) -> None:
    # Given a request HTTP cannot parse
    connection = RawConnection(gateway.port)

    # When it is sent
    connection.send(raw)

    # Then the answer is the error shape, not Twisted's bare 400
    answer = connection.answer()
    assert_wire_error(answer, 400, "MALFORMED_REQUEST")
    assert answer.closed
