"""Browser inputs: what pages and their SDKs post.

- ``BrowserCall``: one event on a path that decides its type: analytics.js's short paths
  (``/v1/t|p|i|g|a|s``) and Segment's HTTP Tracking API (``/v1/track|page|screen|identify|group|alias``),
  which RudderStack's browser SDK posts to as well.
- ``BrowserBatch``: analytics-next's batching mode (``/v1/b``, ``{writeKey, batch: […], sentAt}`` as
  ``text/plain``) and RudderStack's beacon mode (``/beacon/v1/batch?writeKey=``, ``text/plain``, no
  ``Authorization``, cookies included); each event names its type; answered with the batch report.
- ``PageBatch``: ``/v1/batch``, the server batch, which RudderStack's browser SDK also posts to in
  its batching mode: it answers pages (CORS) and treats their context as a browser's.

The key may come in any of the places SDKs put it: ``Authorization`` (Bearer or Basic), ``writeKey``
in the body, or ``?writeKey=`` on the URL. Each checks the origin against the pipeline's allowlist
and mints the visitor's identity cookies as consent permits (ingestion.consent).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django.http import HttpRequest, HttpResponse

from ingestion import auth, cors, event_types, identity, intake, server
from ingestion.envelope import RequestFacts, build_envelope
from pipelines.keystore import PipelineSnapshot

_MAX_HEADER_ID = 256


def browser_key(request: HttpRequest, content: Any) -> str:
    """The key from ``Authorization``, the body's ``writeKey``, or the URL's ``?writeKey=`` (beacons)."""
    return auth.key_from_request(request.META, content if isinstance(content, dict) else None) or request.GET.get(
        "writeKey", ""
    )


def _header_anonymous_id(meta: Any) -> str | None:
    """RudderStack's ``AnonymousId`` header: the visitor's id, base64-encoded."""
    encoded = meta.get("HTTP_ANONYMOUSID", "")
    if not encoded or len(encoded) > _MAX_HEADER_ID * 2:
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None  # not evidence of anything: the body's own id, or the _dfid, stands
    return decoded or None


def as_segment_event(event: dict[str, Any], meta: Any, event_type: str | None) -> dict[str, Any]:
    """What RudderStack's SDK sends, in Segment's shape: the anonymous id from the ``AnonymousId``
    header when the body has none, and identify's traits from ``context.traits`` when the call has
    none of its own. (Its ``userId: ""`` for anonymous visitors already reads as no userId.)"""
    if not event.get("anonymousId"):
        header_id = _header_anonymous_id(meta)
        if header_id is not None:
            event["anonymousId"] = header_id
    if (event_type or event.get("type")) == event_types.IDENTIFY and not event.get("traits"):
        context = event.get("context")
        if isinstance(context, dict) and isinstance(context.get("traits"), dict):
            event["traits"] = context["traits"]
    return event


def _first_click_ids(items: Any) -> dict[str, str]:
    """A batch's click IDs for its cookies (``_fbc``, ``_gcl_aw``): the first event's page that has some."""
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                found = intake.event_click_ids(item)
                if found:
                    return found
    return {}


class BrowserCall(intake.Input):
    source_kind = "browser"
    cors = True
    sets_cookies = True

    def __init__(self, event_type: str) -> None:
        self.event_type = event_type

    async def authenticate(self, request: HttpRequest, content: Any) -> PipelineSnapshot:
        return await auth.authenticate(browser_key(request, content))

    def click_ids(self, request: HttpRequest, content: Any) -> dict[str, str]:
        context = content.get("context")
        return identity.click_ids_from_page(context.get("page") if isinstance(context, dict) else None)

    def events(self, request: HttpRequest, content: Any, pipeline: PipelineSnapshot) -> tuple[Any]:
        return (as_segment_event(content, request.META, self.event_type),)

    def envelope(self, event: dict[str, Any], facts: RequestFacts) -> dict[str, Any]:
        return build_envelope(event, self.event_type, facts)


class BrowserBatch(server.Batch):
    """A page's batch: no signature (a page cannot keep a secret), cookies and CORS as for one call."""

    source_kind = "browser"
    cors = True
    sets_cookies = True

    async def authenticate(self, request: HttpRequest, content: Any) -> PipelineSnapshot:
        return await auth.authenticate(browser_key(request, content))

    def verify(self, request: HttpRequest, content: Any, pipeline: PipelineSnapshot) -> None:
        pass

    def click_ids(self, request: HttpRequest, content: Any) -> dict[str, str]:
        return _first_click_ids(content.get("batch"))

    def facts(
        self, request: HttpRequest, content: Any, pipeline: PipelineSnapshot, received_at: Any, visitor: intake.Visitor
    ) -> RequestFacts:
        facts = intake.Input.facts(self, request, content, pipeline, received_at, visitor)
        facts.sent_at = content.get("sentAt")  # the batch's sentAt applies to the events that carry none
        return facts

    def events(self, request: HttpRequest, content: Any, pipeline: PipelineSnapshot) -> list[Any]:
        meta = request.META
        return [
            as_segment_event(event, meta, None) if type(event) is dict else event
            for event in super().events(request, content, pipeline)
        ]


class PageBatch(server.Batch):
    """``/v1/batch`` as before for servers; from a page (a request with an ``Origin``), CORS and a
    browser's context: its ``context.ip`` and ``context.userAgent`` are claims (ingestion.envelope)."""

    cors = True

    async def authenticate(self, request: HttpRequest, content: Any) -> PipelineSnapshot:
        return await auth.authenticate(browser_key(request, content))

    def facts(
        self, request: HttpRequest, content: Any, pipeline: PipelineSnapshot, received_at: Any, visitor: intake.Visitor
    ) -> RequestFacts:
        facts = super().facts(request, content, pipeline, received_at, visitor)
        if request.META.get("HTTP_ORIGIN"):
            facts.source_kind = "browser"
        return facts

    def events(self, request: HttpRequest, content: Any, pipeline: PipelineSnapshot) -> list[Any]:
        events = super().events(request, content, pipeline)
        if not request.META.get("HTTP_ORIGIN"):
            return events
        meta = request.META
        return [as_segment_event(event, meta, None) if type(event) is dict else event for event in events]


# One input per path; paths that mean the same call share it.
CALLS = {short: BrowserCall(event_type) for short, event_type in event_types.BROWSER_SHORT_PATHS.items()}
HTTP_API_CALLS = {path: BrowserCall(event_type) for path, event_type in event_types.HTTP_API_PATHS.items()}
BATCH = BrowserBatch()
PAGE_BATCH = PageBatch()


async def preflight(request: HttpRequest, *, methods: str = cors.POST_METHODS) -> HttpResponse:
    """Preflights carry no key, so the pipeline is known only if the page put ``?writeKey=`` on the URL;
    otherwise the origin is answered and the request itself enforces the allowlist (403)."""
    meta = request.META
    origin = meta.get("HTTP_ORIGIN", "")
    if not origin or origin == cors.OPAQUE_ORIGIN:
        return HttpResponse(status=204)
    key = request.GET.get("writeKey") or request.GET.get("wk") or ""
    if key:
        pipeline = await auth.authenticate(key)
        if not cors.origin_allowed(pipeline, origin):
            return HttpResponse(status=204)  # no CORS headers: the browser blocks the request
    response = HttpResponse(status=204)
    requested = meta.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "")
    for name, value in cors.preflight_headers(origin, requested, methods=methods).items():
        response[name] = value
    return response
