"""Browser collection (/v1/t, /v1/p, /v1/i, /v1/g): request -> authenticate -> parse -> enrich -> publish."""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from ingestion import auth, cors, identity, metrics, payload
from ingestion.client import request_facts
from ingestion.envelope import RequestFacts, build_envelope, to_record
from ingestion.publisher import get_publisher
from ingestion.responses import SUCCESS_BODY, json_response
from pipelines.keystore import PipelineSnapshot


async def collect(request: HttpRequest, event_type: str) -> HttpResponse:
    meta = request.META
    received_at = datetime.now(UTC)
    origin = meta.get("HTTP_ORIGIN", "")
    if origin:
        # Until the pipeline is known, errors (400, 401, 413, 415) are readable by the page, so an
        # SDK sees the status instead of a network failure it would retry forever.
        request.cors_headers = cors.response_headers(origin)  # type: ignore[attr-defined]
    body = payload.decode_json_body(
        request.body,
        content_type=meta.get("CONTENT_TYPE", ""),
        content_encoding=meta.get("HTTP_CONTENT_ENCODING", ""),
        limit=payload.MAX_EVENT_BYTES,
    )
    pipeline = await auth.authenticate(auth.key_from_request(meta, body))
    request.cors_headers = {}  # type: ignore[attr-defined]  # a refused origin gets no CORS headers
    request.cors_headers = cors_headers = cors.check_origin(pipeline, origin)  # type: ignore[attr-defined]

    context = body.get("context")
    click_ids = identity.click_ids_from_page(context.get("page") if isinstance(context, dict) else None)
    visitor, facts = visitor_facts(request, pipeline, "browser", click_ids, received_at)
    envelope = build_envelope(body, event_type, facts)
    await get_publisher().publish(to_record(envelope))
    metrics.inc("gateway_events_total", source="browser", outcome="accepted")

    response = json_response(SUCCESS_BODY, headers=cors_headers)
    identity.set_cookies(response, visitor, pipeline.cookie_domain or settings.COOKIE_DOMAIN or None)
    return response


def visitor_facts(
    request: HttpRequest, pipeline: PipelineSnapshot, source_kind: str, click_ids: dict[str, str], received_at: datetime
) -> tuple[identity.Identity, RequestFacts]:
    """The visitor's identity (from cookies, or minted) and the request's facts, for inputs that
    a browser sends (the browser endpoints and the pixel)."""
    visitor = identity.resolve_identity(request.COOKIES, click_ids, now_ms=int(received_at.timestamp() * 1000))
    facts = request_facts(
        request,
        pipeline.pipeline_id,
        source_kind,
        received_at,
        anonymous_id=visitor.dfid,
        vendor_ids=visitor.vendor_ids,
        click_ids=click_ids,
    )
    return visitor, facts


async def preflight(request: HttpRequest) -> HttpResponse:
    """Preflights carry no key, so the pipeline is known only if the page put ``?writeKey=`` on the URL;
    otherwise the origin is answered and the POST itself enforces the allowlist (403)."""
    meta = request.META
    origin = meta.get("HTTP_ORIGIN", "")
    if not origin:
        return HttpResponse(status=204)
    key = request.GET.get("writeKey") or request.GET.get("wk") or ""
    if key:
        pipeline = await auth.authenticate(key)
        if not cors.origin_allowed(pipeline, origin):
            return HttpResponse(status=204)  # no CORS headers: the browser blocks the POST
    response = HttpResponse(status=204)
    for name, value in cors.preflight_headers(origin, meta.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "")).items():
        response[name] = value
    return response
