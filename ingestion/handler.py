"""A lean ASGI handler for the ingestion paths.

Django's stock ASGIHandler crosses into a worker thread several times per request (request signals,
sync middleware, ``response.close``). The ingestion paths need none of that: this handler reads the
body (bounded), builds Django's ASGIRequest, resolves the ninja operation with Django's URL
resolver and awaits it on the event loop, with no thread hop. The admin keeps the stock handler.
"""

from __future__ import annotations

import io
import logging
from time import perf_counter
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, HttpResponseNotAllowed
from django.urls import Resolver404, ResolverMatch, get_resolver

from ingestion import answers, metrics, request_ids
from ingestion.api import body_limit
from ingestion.errors import (
    ApiError,
    HeadersTooLarge,
    InternalError,
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    Unavailable,
    UriTooLong,
)
from ingestion.lifecycle import InFlight
from signal_gateway.adapters.daphne import Refusal, WireAnswer
from signal_gateway.adapters.django import DeferredResponse

logger = logging.getLogger(__name__)

MAX_CACHED_PATHS = 256
# Answered while the process drains after SIGTERM (readiness says 503 "draining"); nothing else is.
_ALWAYS_ANSWERED = frozenset({"/healthz", "/readyz", "/metrics"})
# What gateway_requests_total counts for a client that hung up before its answer (nginx's code).
CLIENT_CLOSED = 499
# The body as sent may be a little over the input's limit (the exact limit applies after decompression).
_SLACK = 4096
INGESTION_PREFIX = "/v1/"
# Paths served by Django's own handler (the admin): Django refuses form data over
# DATA_UPLOAD_MAX_MEMORY_SIZE itself; the wire stops a body well past it.
_OTHER_PATHS_SLACK = 64 * 1024


class _Disconnected(Exception):
    pass


class ShuttingDown(Unavailable):
    """A request that arrived after SIGTERM on a connection that was already open."""

    retry_after = 1
    headers = {"Connection": "close"}


async def _read_body(receive: Any, limit: int, too_large: type[ApiError]) -> bytes:
    most = limit + _SLACK
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > most:
                raise too_large(f"the body is over {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_response(response: HttpResponse, send: Any, request_id: str) -> None:
    parts = response.deferred_parts() if isinstance(response, DeferredResponse) else None
    if parts is not None:  # never used as a Django response: its own parts are the whole answer
        body, content_type = parts
        headers = [(b"Content-Type", content_type.encode("latin1"))]
    else:
        body = response.content
        headers = [(name.encode("ascii"), value.encode("latin1")) for name, value in response.items()]
        for cookie in response.cookies.values():
            headers.append((b"Set-Cookie", cookie.output(header="").strip().encode("ascii")))
    headers.extend(getattr(response, "raw_headers", ()))
    headers.append((b"X-Request-ID", request_id.encode("ascii")))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class WireLimits:
    """What daphne's connection asks before a request reaches any handler (the contract is
    signal_gateway.adapters.daphne's ``Wire``): how many bytes a path's body may weigh as sent, the
    same limit ``_read_body`` holds the ingestion paths to, and the answer, in the one error shape,
    to a request refused on the wire. Given to ``tune_requests`` by signal_gateway.asgi."""

    def body_limit(self, path: str) -> int:
        if path.startswith(INGESTION_PREFIX):
            return body_limit(path)[0] + _SLACK
        return (settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 10 * 1024 * 1024) + _OTHER_PATHS_SLACK

    def refusal(self, reason: Refusal, path: str, *, limit: int, timeout: float) -> WireAnswer:
        error: ApiError
        if reason is Refusal.BODY_TOO_LARGE:
            if path.startswith(INGESTION_PREFIX):
                most, too_large = body_limit(path)
                error = too_large(f"the body is over {most} bytes")
            else:
                error = PayloadTooLarge(f"the body is over {limit} bytes")
        elif reason is Refusal.HEADERS_TOO_LARGE:
            error = HeadersTooLarge("the request's headers are over 16384 bytes, 500 lines or 16384 bytes in one line")
        elif reason is Refusal.REQUEST_LINE_TOO_LONG:
            error = UriTooLong("the request line is over 16384 bytes")
        elif reason is Refusal.HEADERS_TIMEOUT:
            error = RequestTimeout(f"the request's headers did not arrive within {timeout:g} s")
        elif reason is Refusal.BODY_TIMEOUT:
            error = RequestTimeout(f"the request's body did not arrive within {timeout:g} s")
        else:
            error = MalformedRequest("the request is not well-formed HTTP/1.1")
        response = answers.refusal(error)
        parts = response.deferred_parts()
        assert parts is not None  # a refusal is never used as a Django response
        body, content_type = parts
        return WireAnswer(response.status_code, [(b"Content-Type", content_type.encode()), *response.raw_headers], body)


class IngestionHandler:
    def __init__(self, urlconf: str = "ingestion.urls") -> None:
        self.resolver = get_resolver(urlconf)
        # Resolving walks every pattern; the ingestion paths are few, so remember them (bounded,
        # since /v1/pixel/{type} matches any type a client makes up), with their metrics label: the
        # route template, so a pixel type or a key in a path never becomes a label value.
        self._matches: dict[str, tuple[ResolverMatch, str]] = {}

    def _resolve(self, path: str) -> tuple[ResolverMatch, str]:
        found = self._matches.get(path)
        if found is None:
            match = self.resolver.resolve(path)
            found = (match, metrics.endpoint_from_route(match.route))
            if len(self._matches) < MAX_CACHED_PATHS:
                self._matches[path] = found
        return found

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        InFlight.count += 1
        started = perf_counter()
        request_id = request_ids.begin(scope)  # before anything else: a 404 or a 413 has one too
        try:
            endpoint, status = await self._handle(scope, receive, send, request_id)
            metrics.request_finished(endpoint, status, perf_counter() - started)
        finally:
            InFlight.count -= 1

    async def _handle(self, scope: dict[str, Any], receive: Any, send: Any, request_id: str) -> tuple[str, int]:
        """Answer the request; returns its endpoint label and status, for the request metrics."""
        path = scope["path"]
        endpoint = "other"
        try:
            try:
                match, endpoint = self._resolve(path)
            except Resolver404:
                raise NotFound(f"no endpoint at {path}") from None
            if InFlight.draining and path not in _ALWAYS_ANSWERED:
                raise ShuttingDown("this gateway is shutting down; retry (another one will answer)")
            limit, too_large = body_limit(path)
            body = await _read_body(receive, limit, too_large)
            request = ASGIRequest(scope, io.BytesIO(body))
            request._body = body  # the body is already read; nothing streams from here
            request.resolver_match = match
            response = await match.func(request, *match.args, **match.kwargs)
            if isinstance(response, HttpResponseNotAllowed):
                # ninja answers a wrong method in text/html; every error leaves in the one JSON shape.
                raise MethodNotAllowed(f"{request.method} is not allowed on {path}", allow=response["Allow"])
        except _Disconnected:
            return endpoint, CLIENT_CLOSED
        except ApiError as error:
            response = answers.refusal(error)
        except Exception:
            logger.exception("unhandled error on %s", endpoint)  # the route, not the path: it may hold a key
            response = answers.refusal(InternalError("an internal error occurred; the event was not accepted"))
        await send_response(response, send, request_id)
        return endpoint, response.status_code
