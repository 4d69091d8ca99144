"""Server-side inputs: one HMAC-signed event (/v1/events), and batches (/v1/batch) signed or
authenticated by the pipeline key alone, whose invalid items are reported, not fatal."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from ingestion import intake, payload, signatures
from ingestion.answers import Answer
from ingestion.client import request_facts
from ingestion.envelope import RequestFacts
from ingestion.errors import BatchTooLarge, InvalidPayload, PayloadTooLarge
from pipelines.keystore import PipelineSnapshot

MAX_BATCH_EVENTS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
# An item nesting deeper than payload.MAX_DEPTH is reported by its index; one past this is refused
# with its whole batch, since a refused item is re-encoded for the rejected-events topic and orjson
# encodes at most 254 levels.
MAX_BATCH_ITEM_DEPTH = 128


def _verify(request: HttpRequest, pipeline: PipelineSnapshot, *, required: bool) -> None:
    meta = request.META
    signature = meta.get("HTTP_X_SIGNATURE")
    if signature is None and not required:
        return  # a batch may be authenticated by the pipeline key alone
    signatures.verify_server_signature(
        secrets=pipeline.signing_secrets,
        body=request.body,
        signature_header=signature,
        timestamp_header=meta.get("HTTP_X_TIMESTAMP"),
        now=time.time(),
        method=request.method or "POST",
        path=request.path,
        accept_v1=settings.SERVER_SIGNATURE_V1,
    )


class ServerEvent(intake.Input):
    source_kind = "server"

    def verify(self, request: HttpRequest, content: Any, pipeline: PipelineSnapshot) -> None:
        _verify(request, pipeline, required=True)

    def events(self, request: HttpRequest, content: Any, pipeline: PipelineSnapshot) -> tuple[Any]:
        if isinstance(content.get("batch"), list):
            # A v1 signature covers the body, not the path: without this, a signed batch whose top
            # level also reads as an event could be replayed here. No event carries a batch.
            raise InvalidPayload("this body is a batch: post it to /v1/batch")
        return (content,)


class Batch(intake.Input):
    source_kind = "batch"
    answer = Answer.BATCH_REPORT
    body_limit = MAX_BATCH_BYTES
    too_large = BatchTooLarge
    max_depth = None  # checked item by item (events), so one deep event does not sink the batch

    def verify(self, request: HttpRequest, content: Any, pipeline: PipelineSnapshot) -> None:
        _verify(request, pipeline, required=False)

    def facts(
        self, request: HttpRequest, content: Any, pipeline: PipelineSnapshot, received_at: Any, visitor: intake.Visitor
    ) -> RequestFacts:
        # The batch's sentAt applies to the events that carry none.
        return request_facts(
            request, pipeline.pipeline_id, self.source_kind, received_at, sent_at=content.get("sentAt")
        )

    def events(self, request: HttpRequest, content: Any, pipeline: PipelineSnapshot) -> list[Any]:
        items = content.get("batch")
        if not isinstance(items, list):
            raise InvalidPayload('the body must be {"batch": [event, ...]}')
        if len(items) > MAX_BATCH_EVENTS:
            raise BatchTooLarge(f"a batch holds at most {MAX_BATCH_EVENTS} events; this one has {len(items)}")
        top_context = content.get("context")
        if isinstance(top_context, (dict, list)) and payload.depth_exceeds(top_context, payload.MAX_DEPTH - 1):
            # It sits under every event's own context, one level down.
            raise InvalidPayload(f"the batch's context nests deeper than {payload.MAX_DEPTH - 1} levels")
        # Every event, its share of the batch's context included, is within the per-event limit when
        # the whole body is.
        check_sizes = len(request.body) > payload.MAX_EVENT_BYTES or request.META.get("HTTP_CONTENT_ENCODING")
        events: list[Any] = []
        for item in items:
            events.append(_item(item, top_context, check_sizes=bool(check_sizes)))
        return events


def _item(item: Any, top_context: Any, *, check_sizes: bool) -> dict[str, Any] | intake.Refused:
    if isinstance(item, (dict, list)) and payload.depth_exceeds(item, payload.MAX_DEPTH):
        if payload.depth_exceeds(item, MAX_BATCH_ITEM_DEPTH):
            raise InvalidPayload(f"a batch item nests deeper than {MAX_BATCH_ITEM_DEPTH} levels")
        return intake.Refused(InvalidPayload(f"the event nests deeper than {payload.MAX_DEPTH} levels"), item)
    if not isinstance(item, dict):
        return intake.Refused(InvalidPayload("each batch item must be a JSON object"), item)
    event = {**item, "context": _merge_context(top_context, item.get("context"))} if top_context else item
    # The limit holds for the event as published, the batch's context included.
    if check_sizes and len(payload.encode(event)) > payload.MAX_EVENT_BYTES:
        return intake.Refused(PayloadTooLarge(f"the event is over {payload.MAX_EVENT_BYTES} bytes"), item)
    return event


def _merge_context(top: Any, own: Any) -> Any:
    """The batch's context sits under each event's: the event's keys win, one level deep."""
    if not isinstance(top, dict) or not top:
        return own
    if own is None:
        return dict(top)
    if not isinstance(own, dict):
        return own  # build_envelope reports the bad type
    merged = dict(top)
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


EVENT = ServerEvent()
BATCH = Batch()
