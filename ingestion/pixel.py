"""The tracking pixel (GET /v1/pixel/{type}): email opens and no-JS pages.

The event comes from the query string and the key from ``wk``. Mail clients cannot retry and show
nothing useful to a reader, so the pixel answers the GIF whatever happens (ingestion.answers): a bad
key, a bad parameter or an unreachable Kafka is counted and dropped.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from ingestion import auth, event_types, identity, intake
from ingestion.answers import Answer
from ingestion.envelope import RequestFacts, build_envelope, iso_from_ms
from ingestion.errors import InvalidPayload
from pipelines.keystore import PipelineSnapshot

_FIELDS = (
    ("e", "event"),
    ("uid", "userId"),
    ("aid", "anonymousId"),
    ("gid", "groupId"),
    ("mid", "messageId"),
    ("name", "name"),
)


def event_from_query(query: Any, event_type: str) -> dict[str, Any]:
    """``e``, ``uid``, ``aid``, ``gid``, ``mid``, ``ts`` (unix ms), ``p.<name>``, ``t.<name>``."""
    event: dict[str, Any] = {"properties": {}, "traits": {}}
    for name, value in query.items():
        if name.startswith("p.") and len(name) > 2:
            event["properties"][name[2:]] = value
        elif name.startswith("t.") and len(name) > 2:
            event["traits"][name[2:]] = value
    for param, field in _FIELDS:
        if query.get(param):
            event[field] = query[param]
    if event_type == event_types.PAGE and "name" not in event and query.get("e"):
        event["name"] = query["e"]
    ts = query.get("ts")
    if ts:
        try:
            event["timestamp"] = iso_from_ms(int(ts))
        except (ValueError, OverflowError, OSError):
            raise InvalidPayload("ts must be unix milliseconds") from None
    return event


class Pixel(intake.Input):
    source_kind = "pixel"
    answer = Answer.GIF
    sets_cookies = True

    def __init__(self, event_type: str) -> None:
        self.event_type = event_type

    def read(self, request: HttpRequest) -> None:
        return None  # the query is read once the key is known, so a bad parameter is reported

    def events(self, request: HttpRequest, content: Any, pipeline: PipelineSnapshot) -> tuple[dict[str, Any]]:
        if self.event_type not in event_types.PIXEL:
            raise InvalidPayload(f"pixel type must be one of {', '.join(event_types.PIXEL)}")
        return (event_from_query(request.GET, self.event_type),)

    async def authenticate(self, request: HttpRequest, content: Any) -> PipelineSnapshot:
        return await auth.authenticate(request.GET.get("wk", ""))

    def click_ids(self, request: HttpRequest, content: Any) -> dict[str, str]:
        return identity.click_ids_from_query(request.META.get("QUERY_STRING", ""))

    def envelope(self, event: dict[str, Any], facts: RequestFacts) -> dict[str, Any]:
        return build_envelope(event, self.event_type, facts)

    def refused_payload(self, request: HttpRequest) -> bytes:
        return request.META.get("QUERY_STRING", "").encode("latin-1", "replace")


PIXELS = {event_type: Pixel(event_type) for event_type in event_types.PIXEL}


def pixel_for(event_type: str) -> Pixel:
    """The pixel for ``/v1/pixel/{event_type}``; an unknown type still answers the GIF (and is dropped)."""
    return PIXELS.get(event_type) or Pixel(event_type)
