"""Third-party webhooks (POST /v1/webhook?source=wh_…): verify the vendor's signature, map, publish.

A payload the mapping cannot read is still published: the raw payload goes under ``properties``
and the notes under ``context.webhook.notes``; nothing is dropped silently.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse

from ingestion import auth, metrics, payload, signatures
from ingestion.client import public_url, request_facts
from ingestion.envelope import build_envelope, to_record
from ingestion.errors import NotFound
from ingestion.publisher import get_publisher
from ingestion.responses import SUCCESS_BODY, json_response

MAX_WEBHOOK_BYTES = 1024 * 1024


def _decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", errors="replace")  # form posts and plain text are kept as text


async def collect(request: HttpRequest) -> HttpResponse:
    received_at = datetime.now(UTC)
    source_id = request.GET.get("source", "")
    pipeline = await auth.authenticate_webhook_source(source_id)
    source = pipeline.webhook_sources.get(source_id)
    if source is None:
        raise NotFound("unknown webhook source")

    raw = payload.decompress(
        request.body, content_encoding=request.META.get("HTTP_CONTENT_ENCODING", ""), limit=MAX_WEBHOOK_BYTES
    )
    headers = {name.lower(): value for name, value in request.headers.items()}
    signatures.verify_webhook(
        source=source,
        method=request.method or "POST",
        url=public_url(request),
        headers=headers,
        body=request.body,
        now=time.time(),
    )

    event, notes = signatures.apply_mapping(_decode(raw), source.mapping)
    context = event.setdefault("context", {})
    if isinstance(context, dict):
        context["webhook"] = {"scheme": source.scheme, **({"notes": notes} if notes else {})}
    facts = request_facts(
        request,
        pipeline.pipeline_id,
        "webhook",
        received_at,
        source_id=source_id,
        require_identity=False,  # a vendor's event need not be about a visitor
    )
    await get_publisher().publish(to_record(build_envelope(event, event.get("type") or "track", facts)))
    metrics.inc("gateway_events_total", source="webhook", outcome="accepted")
    return json_response(SUCCESS_BODY)
