"""Browser calls (/v1/t, /v1/p, /v1/i, /v1/g): the path decides the type; the origin is checked
against the pipeline's allowlist, and the visitor gets first-party identity cookies."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from ingestion import auth, cors, event_types, identity, intake
from ingestion.envelope import RequestFacts, build_envelope


class BrowserCall(intake.Input):
    source_kind = "browser"
    cors = True
    sets_cookies = True

    def __init__(self, event_type: str) -> None:
        self.event_type = event_type

    def click_ids(self, request: HttpRequest, content: Any) -> dict[str, str]:
        context = content.get("context")
        return identity.click_ids_from_page(context.get("page") if isinstance(context, dict) else None)

    def envelope(self, event: dict[str, Any], facts: RequestFacts) -> dict[str, Any]:
        return build_envelope(event, self.event_type, facts)


CALLS = {short: BrowserCall(event_type) for short, event_type in event_types.BROWSER_SHORT_PATHS.items()}


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
