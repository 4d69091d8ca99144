"""A lean ASGI handler for the ingestion paths.

Django's stock ASGIHandler crosses into a worker thread several times per request (request signals,
sync middleware, ``response.close``). The ingestion paths need none of that: this handler reads the
body (bounded), builds Django's ASGIRequest, resolves the ninja operation with Django's URL
resolver and awaits it on the event loop, with no thread hop. The admin keeps the stock handler.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, HttpResponseNotAllowed
from django.urls import Resolver404, ResolverMatch, get_resolver

from ingestion.errors import ApiError, BatchTooLarge, InternalError, MethodNotAllowed, NotFound, PayloadTooLarge
from ingestion.lifecycle import InFlight
from ingestion.responses import error_response

logger = logging.getLogger(__name__)

# Raw body limits, before decompression, and what exceeding one is called; the exact limits are
# checked again after decompression by the endpoint.
_SLACK = 4096
BODY_LIMITS: dict[str, tuple[int, type[ApiError]]] = {
    "/v1/batch": (5 * 1024 * 1024 + _SLACK, BatchTooLarge),
    "/v1/webhook": (1024 * 1024 + _SLACK, PayloadTooLarge),
}
DEFAULT_BODY_LIMIT = (64 * 1024 + _SLACK, PayloadTooLarge)
MAX_CACHED_PATHS = 256


class _BodyTooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


async def _read_body(receive: Any, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_response(response: HttpResponse, send: Any) -> None:
    headers = [(name.encode("ascii"), value.encode("latin1")) for name, value in response.items()]
    headers.extend(getattr(response, "raw_headers", ()))
    for cookie in response.cookies.values():
        headers.append((b"Set-Cookie", cookie.output(header="").strip().encode("ascii")))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})


class IngestionHandler:
    def __init__(self, urlconf: str = "ingestion.urls") -> None:
        self.resolver = get_resolver(urlconf)
        # Resolving walks every pattern; the ingestion paths are few, so remember them (bounded,
        # since /v1/pixel/{type} matches any type a client makes up).
        self._matches: dict[str, ResolverMatch] = {}

    def _resolve(self, path: str) -> ResolverMatch:
        match = self._matches.get(path)
        if match is None:
            match = self.resolver.resolve(path)
            if len(self._matches) < MAX_CACHED_PATHS:
                self._matches[path] = match
        return match

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        InFlight.count += 1
        try:
            await self._handle(scope, receive, send)
        finally:
            InFlight.count -= 1

    async def _handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        try:
            match = self._resolve(path)
        except Resolver404:
            await send_response(error_response(NotFound(f"no endpoint at {path}")), send)
            return
        limit, too_large = BODY_LIMITS.get(path, DEFAULT_BODY_LIMIT)
        try:
            body = await _read_body(receive, limit)
        except _Disconnected:
            return
        except _BodyTooLarge:
            await send_response(error_response(too_large(f"the body is over {limit - _SLACK} bytes")), send)
            return
        request = ASGIRequest(scope, io.BytesIO(body))
        request._body = body  # the body is already read; nothing streams from here
        request.resolver_match = match
        try:
            response = await match.func(request, *match.args, **match.kwargs)
        except ApiError as exc:
            response = error_response(exc)
        except Exception:
            logger.exception("unhandled error on %s", path)
            response = error_response(InternalError("an internal error occurred; the event was not accepted"))
        if isinstance(response, HttpResponseNotAllowed):
            # ninja answers a wrong method in text/html; every error leaves in the one JSON shape.
            error = MethodNotAllowed(f"{request.method} is not allowed on {path}")
            response = error_response(error, {"Allow": response["Allow"]})
        await send_response(response, send)
