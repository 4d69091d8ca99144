"""The tracking pixel (GET /v1/pixel/{type}): email opens and no-JS pages.

Mail clients cannot retry and show nothing useful to a reader, so every request answers the same
transparent GIF: a bad key, a bad parameter or an unreachable Kafka is counted and dropped.
"""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from ingestion import auth, identity, metrics
from ingestion.browser import visitor_facts
from ingestion.envelope import build_envelope, iso_from_ms, to_record
from ingestion.errors import ApiError, InvalidPayload
from ingestion.publisher import get_publisher
from ingestion.responses import GatewayResponse

logger = logging.getLogger(__name__)

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")  # 43 bytes, transparent
_TYPES = {"track", "page", "identify", "group"}
_NO_CACHE = {"Cache-Control": "no-store, no-cache, must-revalidate", "Pragma": "no-cache", "Expires": "0"}


def gif_response() -> GatewayResponse:
    response = GatewayResponse(GIF, content_type="image/gif")
    for name, value in _NO_CACHE.items():
        response[name] = value
    return response


def event_from_query(query: Any, event_type: str) -> dict[str, Any]:
    """``e``, ``uid``, ``aid``, ``gid``, ``mid``, ``ts`` (unix ms), ``p.<name>``, ``t.<name>``."""
    event: dict[str, Any] = {"properties": {}, "traits": {}}
    for name, value in query.items():
        if name.startswith("p.") and len(name) > 2:
            event["properties"][name[2:]] = value
        elif name.startswith("t.") and len(name) > 2:
            event["traits"][name[2:]] = value
    for param, field in (
        ("e", "event"),
        ("uid", "userId"),
        ("aid", "anonymousId"),
        ("gid", "groupId"),
        ("mid", "messageId"),
        ("name", "name"),
    ):
        if query.get(param):
            event[field] = query[param]
    if event_type == "page" and "name" not in event and query.get("e"):
        event["name"] = query["e"]
    ts = query.get("ts")
    if ts:
        try:
            event["timestamp"] = iso_from_ms(int(ts))
        except (ValueError, OverflowError, OSError):
            raise InvalidPayload("ts must be unix milliseconds") from None
    return event


async def collect(request: HttpRequest, event_type: str) -> HttpResponse:
    try:
        return await _collect(request, event_type)
    except ApiError as exc:
        metrics.inc("gateway_events_total", source="pixel", outcome="dropped")
        metrics.inc("gateway_pixel_dropped_total", reason=exc.code)
        logger.info("pixel dropped: %s %s", exc.code, exc.message)
        return gif_response()


async def _collect(request: HttpRequest, event_type: str) -> HttpResponse:
    received_at = datetime.now(UTC)
    if event_type not in _TYPES:
        raise InvalidPayload(f"pixel type must be one of {', '.join(sorted(_TYPES))}")
    query = request.GET
    pipeline = await auth.authenticate(query.get("wk", ""))
    event = event_from_query(query, event_type)
    click_ids = identity.click_ids_from_query(request.META.get("QUERY_STRING", ""))
    visitor, facts = visitor_facts(request, pipeline, "pixel", click_ids, received_at)
    await get_publisher().publish(to_record(build_envelope(event, event_type, facts)))
    metrics.inc("gateway_events_total", source="pixel", outcome="accepted")
    response = gif_response()
    identity.set_cookies(response, visitor, pipeline.cookie_domain or settings.COOKIE_DOMAIN or None)
    return response
