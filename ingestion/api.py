"""The HTTP edge: django-ninja operations, each one call into the module that owns the work.

Errors raised anywhere below are typed (ingestion.errors) and turned into responses here, once.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Router

from ingestion import browser, health, metrics, pixel, server, webhook
from ingestion.errors import ApiError, InternalError
from ingestion.responses import error_response

logger = logging.getLogger(__name__)


class _UnusedResponse(HttpResponse):
    """Stands in for the HttpResponse ninja builds on every request for a view that takes a
    ``response`` parameter (~4 us each). These views return their own response, so one shared
    instance is handed out; it refuses every change, so a view that did write to it fails loudly
    instead of leaking headers into other requests."""

    def __setitem__(self, header: str, value: str | bytes | int) -> None:
        raise TypeError("ingestion views return their own response; they do not get ninja's")

    def set_cookie(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("ingestion views return their own response; they do not get ninja's")


class IngestionAPI(NinjaAPI):
    _unused_response = _UnusedResponse()

    def create_temporal_response(self, request: HttpRequest) -> HttpResponse:
        return self._unused_response


api = IngestionAPI(title="Signal Gateway ingestion", version="1", urls_namespace="ingestion", docs_url=None)


@api.exception_handler(ApiError)
def on_api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return error_response(exc, getattr(request, "cors_headers", None))


@api.exception_handler(Exception)
def on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("unexpected error on %s", request.path)
    error = InternalError("an internal error occurred; the event was not accepted")
    return error_response(error, getattr(request, "cors_headers", None))


browser_router = Router(tags=["browser"])
_BROWSER_TYPES = {"t": "track", "p": "page", "i": "identify", "g": "group"}


def _browser_operation(short: str, event_type: str) -> None:
    async def post(request: HttpRequest) -> HttpResponse:
        return await browser.collect(request, event_type)

    async def options(request: HttpRequest) -> HttpResponse:
        return await browser.preflight(request)

    post.__name__ = f"browser_{event_type}"
    options.__name__ = f"browser_{event_type}_preflight"
    browser_router.add_api_operation(f"/{short}", ["POST"], post, summary=f"Browser {event_type} call")
    browser_router.add_api_operation(f"/{short}", ["OPTIONS"], options, include_in_schema=False)


for _short, _type in _BROWSER_TYPES.items():
    _browser_operation(_short, _type)

server_router = Router(tags=["server"])


@server_router.post("/events", summary="One server-side event, HMAC-signed")
async def server_event(request: HttpRequest) -> HttpResponse:
    return await server.collect_event(request)


@server_router.post("/batch", summary="Up to 500 events; HMAC-signed or pipeline key alone")
async def batch(request: HttpRequest) -> HttpResponse:
    return await server.collect_batch(request)


@server_router.get("/pixel/{event_type}", summary="1x1 GIF; wk, e, uid, aid, p.*, t.*, ts, mid")
async def pixel_event(request: HttpRequest, event_type: str) -> HttpResponse:
    return await pixel.collect(request, event_type)


@server_router.post("/webhook", summary="Third-party webhook, verified by the source's scheme")
async def webhook_event(request: HttpRequest) -> HttpResponse:
    return await webhook.collect(request)


api.add_router("/v1", browser_router)
api.add_router("/v1", server_router)


@api.get("/healthz", tags=["health"])
async def healthz(request: HttpRequest) -> HttpResponse:
    return health.liveness()


@api.get("/readyz", tags=["health"])
async def readyz(request: HttpRequest) -> HttpResponse:
    return await health.readiness()


@api.get("/metrics", tags=["health"])
async def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(metrics.render(), content_type="text/plain; version=0.0.4")
