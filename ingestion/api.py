"""The HTTP edge: django-ninja operations, each one call into the intake sequence with its input.

Errors do not become HTTP here: the intake sequence (ingestion.intake) answers through
ingestion.answers, and anything a view lets through goes up to the handler (ingestion.handler),
which answers through ingestion.answers too.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Router

from ingestion import browser, health, intake, metrics, pixel, server, webhook
from ingestion.errors import ApiError
from signal_gateway.adapters.ninja import DeferredResponseAPI

api = DeferredResponseAPI(title="Signal Gateway ingestion", version="1", urls_namespace="ingestion", docs_url=None)


@api.exception_handler(Exception)
def _to_the_handler(request: HttpRequest, exc: Exception) -> HttpResponse:
    raise exc  # ingestion.handler turns it into the answer, with every other error


browser_router = Router(tags=["browser"])


def _browser_operation(short: str, call: browser.BrowserCall) -> None:
    async def post(request: HttpRequest) -> HttpResponse:
        return await intake.run(call, request)

    async def options(request: HttpRequest) -> HttpResponse:
        return await browser.preflight(request)

    post.__name__ = f"browser_{call.event_type}"
    options.__name__ = f"browser_{call.event_type}_preflight"
    browser_router.add_api_operation(f"/{short}", ["POST"], post, summary=f"Browser {call.event_type} call")
    browser_router.add_api_operation(f"/{short}", ["OPTIONS"], options, include_in_schema=False)


for _short, _call in browser.CALLS.items():
    _browser_operation(_short, _call)

server_router = Router(tags=["server"])


@server_router.post("/events", summary="One server-side event, HMAC-signed")
async def server_event(request: HttpRequest) -> HttpResponse:
    return await intake.run(server.EVENT, request)


@server_router.post("/batch", summary="Up to 500 events; HMAC-signed or pipeline key alone")
async def batch(request: HttpRequest) -> HttpResponse:
    return await intake.run(server.BATCH, request)


@server_router.get("/pixel/{event_type}", summary="1x1 GIF; wk, e, uid, aid, p.*, t.*, ts, mid")
async def pixel_event(request: HttpRequest, event_type: str) -> HttpResponse:
    return await intake.run(pixel.pixel_for(event_type), request)


@server_router.post("/webhook", summary="Third-party webhook, verified by the source's scheme")
async def webhook_event(request: HttpRequest) -> HttpResponse:
    return await intake.run(webhook.WEBHOOK, request)


api.add_router("/v1", browser_router)
api.add_router("/v1", server_router)

# Which input owns each path with a body: its body limit (after decompression) and what exceeding it
# is called apply on the wire too, checked by the handler as the body arrives.
_INPUTS_BY_PATH: dict[str, intake.Input] = {
    **{f"/v1/{short}": call for short, call in browser.CALLS.items()},
    "/v1/events": server.EVENT,
    "/v1/batch": server.BATCH,
    "/v1/webhook": webhook.WEBHOOK,
}
_DEFAULT_INPUT = intake.Input()


def body_limit(path: str) -> tuple[int, type[ApiError]]:
    """The most a body may weigh on ``path``, and the error for more."""
    input = _INPUTS_BY_PATH.get(path, _DEFAULT_INPUT)
    return input.body_limit, input.too_large


@api.get("/healthz", tags=["health"])
async def healthz(request: HttpRequest) -> HttpResponse:
    return health.liveness()


@api.get("/readyz", tags=["health"])
async def readyz(request: HttpRequest) -> HttpResponse:
    return await health.readiness()


@api.get("/metrics", tags=["health"])
async def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(metrics.render(), content_type="text/plain; version=0.0.4")
