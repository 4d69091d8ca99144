"""The HTTP edge: django-ninja operations, each one call into the intake sequence with its input.

Errors do not become HTTP here: the intake sequence (ingestion.intake) answers through
ingestion.answers, and anything a view lets through goes up to the handler (ingestion.handler),
which answers through ingestion.answers too.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Router

from ingestion import browser, cors, event_types, health, intake, metrics, openapi, pixel, sdk_settings, server, webhook
from ingestion.errors import ApiError
from signal_gateway.adapters.ninja import DeferredResponseAPI


class GatewayAPI(DeferredResponseAPI):
    """The ingestion API, whose document (/openapi.json, and /docs, served with our own copy of
    Swagger UI) carries the request bodies and auth schemes of ingestion.openapi."""

    def get_openapi_schema(self, **kwargs: Any) -> Any:
        document = super().get_openapi_schema(**kwargs)
        components = document.setdefault("components", {})
        for name, entries in openapi.COMPONENTS.items():
            components.setdefault(name, {}).update(entries)
        return document


api = GatewayAPI(
    title="Signal Gateway ingestion",
    version="1",
    description=(
        "Events in, from browsers, servers, email pixels and third parties; one canonical envelope each out, "
        "to Kafka. A 200 means the event is safe: in Kafka, or in the gateway's durable spool on its way there. "
        "Every error has one shape, `{error: {code, message}}`."
    ),
    urls_namespace="ingestion",
    docs_url="/docs",
)


@api.exception_handler(Exception)
def _to_the_handler(request: HttpRequest, exc: Exception) -> HttpResponse:
    raise exc  # ingestion.handler turns it into the answer, with every other error


browser_router = Router(tags=["browser"])


def _browser_operation(
    router: Router, path: str, call: intake.Input, name: str, summary: str, described: dict[str, Any]
) -> None:
    """``POST path`` into the intake sequence with ``call``, and its CORS preflight."""

    async def post(request: HttpRequest) -> HttpResponse:
        return await intake.run(call, request)

    async def options(request: HttpRequest) -> HttpResponse:
        return await browser.preflight(request)

    post.__name__ = f"browser_{name}"
    options.__name__ = f"browser_{name}_preflight"
    router.add_api_operation(path, ["POST"], post, summary=summary, openapi_extra=described)
    router.add_api_operation(path, ["OPTIONS"], options, include_in_schema=False)


for _short, _call in browser.CALLS.items():
    _browser_operation(
        browser_router,
        f"/{_short}",
        _call,
        _short,
        f"Browser {_call.event_type} call",
        openapi.browser(_call.event_type),
    )
for _path, _call in browser.HTTP_API_CALLS.items():
    _browser_operation(
        browser_router,
        f"/{_path}",
        _call,
        _path,
        f"{_call.event_type} (Segment's HTTP Tracking API)",
        openapi.browser(_call.event_type),
    )
_browser_operation(
    browser_router,
    f"/{event_types.BROWSER_BATCH_PATH}",
    browser.BATCH,
    "batch",
    "analytics-next's batch: {writeKey, batch, sentAt}",
    openapi.browser_batch("analytics-next's batching mode: `{writeKey, batch, sentAt}`, text/plain."),
)


@browser_router.get(
    "/projects/{write_key}/settings",
    summary="analytics-next's settings, pointed at this gateway",
    openapi_extra=openapi.operation("segment_settings"),
)
async def segment_settings(request: HttpRequest, write_key: str) -> HttpResponse:
    return await sdk_settings.segment_settings(request, write_key)


@browser_router.api_operation(["OPTIONS"], "/projects/{write_key}/settings", include_in_schema=False)
async def segment_settings_preflight(request: HttpRequest, write_key: str) -> HttpResponse:
    return await browser.preflight(request, methods=cors.GET_METHODS)


server_router = Router(tags=["server"])


@server_router.post(
    "/events", summary="One server-side event, HMAC-signed", openapi_extra=openapi.operation("server_event")
)
async def server_event(request: HttpRequest) -> HttpResponse:
    return await intake.run(server.EVENT, request)


@server_router.post(
    "/batch",
    summary="Up to 500 events; HMAC-signed or pipeline key alone",
    openapi_extra=openapi.operation("batch"),
)
async def batch(request: HttpRequest) -> HttpResponse:
    return await intake.run(browser.PAGE_BATCH, request)


@server_router.api_operation(["OPTIONS"], "/batch", include_in_schema=False)
async def batch_preflight(request: HttpRequest) -> HttpResponse:
    return await browser.preflight(request)  # RudderStack's browser SDK batches here too


@server_router.get(
    "/pixel/{event_type}",
    summary="1x1 GIF; wk, e, uid, aid, p.*, t.*, ts, mid",
    openapi_extra=openapi.operation("pixel_event"),
)
async def pixel_event(request: HttpRequest, event_type: str) -> HttpResponse:
    return await intake.run(pixel.pixel_for(event_type), request)


@server_router.post(
    "/webhook",
    summary="Third-party webhook, verified by the source's scheme",
    openapi_extra=openapi.operation("webhook_event"),
)
async def webhook_event(request: HttpRequest) -> HttpResponse:
    return await intake.run(webhook.WEBHOOK, request)


api.add_router("/v1", browser_router)
api.add_router("/v1", server_router)

# RudderStack's browser SDK: its settings (GET /sourceConfig/) and its beacon mode. Routed to the lean
# handler by signal_gateway.asgi.
sdk_router = Router(tags=["browser"])


@sdk_router.get(
    "/sourceConfig/",
    summary="RudderStack's source config, pointed at this gateway",
    openapi_extra=openapi.operation("rudderstack_config"),
)
async def rudderstack_config(request: HttpRequest) -> HttpResponse:
    return await sdk_settings.rudderstack_config(request)


@sdk_router.api_operation(["OPTIONS"], "/sourceConfig/", include_in_schema=False)
async def rudderstack_config_preflight(request: HttpRequest) -> HttpResponse:
    return await browser.preflight(request, methods=cors.GET_METHODS)


_browser_operation(
    sdk_router,
    "/beacon/v1/batch",
    browser.BATCH,
    "beacon",
    "RudderStack's beacon: ?writeKey=, batch",
    openapi.browser_batch("RudderStack's beacon mode: `?writeKey=`, a `{batch}` body as text/plain, no Authorization."),
)
api.add_router("", sdk_router)

# Which input owns each path with a body: its body limit (after decompression) and what exceeding it
# is called apply on the wire too, checked by the handler as the body arrives.
_INPUTS_BY_PATH: dict[str, intake.Input] = {
    **{f"/v1/{short}": call for short, call in browser.CALLS.items()},
    **{f"/v1/{path}": call for path, call in browser.HTTP_API_CALLS.items()},
    f"/v1/{event_types.BROWSER_BATCH_PATH}": browser.BATCH,
    "/beacon/v1/batch": browser.BATCH,
    "/v1/events": server.EVENT,
    "/v1/batch": browser.PAGE_BATCH,
    "/v1/webhook": webhook.WEBHOOK,
}
_DEFAULT_INPUT = intake.Input()


def body_limit(path: str) -> tuple[int, type[ApiError]]:
    """The most a body may weigh on ``path``, and the error for more."""
    input = _INPUTS_BY_PATH.get(path, _DEFAULT_INPUT)
    return input.body_limit, input.too_large


@api.get("/healthz", tags=["health"], openapi_extra=openapi.operation("healthz"))
async def healthz(request: HttpRequest) -> HttpResponse:
    return health.liveness()


@api.get("/readyz", tags=["health"], openapi_extra=openapi.operation("readyz"))
async def readyz(request: HttpRequest) -> HttpResponse:
    return await health.readiness()


@api.get("/metrics", tags=["health"], openapi_extra=openapi.operation("prometheus_metrics"))
async def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(metrics.render(), content_type="text/plain; version=0.0.4")
