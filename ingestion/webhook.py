"""Third-party webhooks (POST /v1/webhook?source=wh_…): the source names the pipeline, the vendor's
signature is verified over the raw body, and the payload is mapped onto an event.

A payload the mapping cannot read is still published: the raw payload goes under ``properties``
and the notes under ``context.webhook.notes``; nothing is dropped silently.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from django.http import HttpRequest

from ingestion import auth, event_types, intake, payload, signatures, webhook_mapping
from ingestion.client import public_url, request_facts
from ingestion.envelope import RequestFacts, build_envelope
from ingestion.errors import InvalidPayload, NotFound
from pipelines.keystore import PipelineSnapshot, WebhookSource

# Below what the producer can publish (ingestion.records.MAX_VALUE_BYTES, about 1 MB): the payload is
# published once as properties.payload, or mapped into properties, traits and context; even copied
# twice, a payload of 512 KiB fits. What still does not (text that JSON escapes six-fold, a mapping
# that copies a payload three times) is refused 413 by to_record, never 503.
MAX_WEBHOOK_BYTES = 512 * 1024


def _decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", errors="replace")  # form posts and plain text are kept as text


def _source(request: HttpRequest, pipeline: PipelineSnapshot) -> WebhookSource:
    source = pipeline.webhook_sources.get(request.GET.get("source", ""))
    if source is None:
        raise NotFound("unknown webhook source")
    return source


class Webhook(intake.Input):
    source_kind = "webhook"
    body_limit = MAX_WEBHOOK_BYTES

    def read(self, request: HttpRequest) -> None:
        # Nothing is read before the signature is checked: an unsigned body is never decompressed.
        return None

    async def authenticate(self, request: HttpRequest, content: Any) -> PipelineSnapshot:
        pipeline = await auth.authenticate_webhook_source(request.GET.get("source", ""))
        _source(request, pipeline)
        return pipeline

    def verify(self, request: HttpRequest, content: Any, pipeline: PipelineSnapshot) -> None:
        signatures.verify_webhook(
            source=_source(request, pipeline),
            method=request.method or "POST",
            url=public_url(request),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=request.body,
            now=time.time(),
        )

    def facts(
        self, request: HttpRequest, content: Any, pipeline: PipelineSnapshot, received_at: Any, visitor: intake.Visitor
    ) -> RequestFacts:
        # A vendor's event need not be about a visitor.
        source_id = _source(request, pipeline).id
        return request_facts(
            request, pipeline.pipeline_id, self.source_kind, received_at, source_id=source_id, require_identity=False
        )

    def events(self, request: HttpRequest, content: Any, pipeline: PipelineSnapshot) -> tuple[dict[str, Any]]:
        source = _source(request, pipeline)
        raw = payload.decompress(
            request.body, content_encoding=request.META.get("HTTP_CONTENT_ENCODING", ""), limit=self.body_limit
        )
        decoded = _decode(raw)
        if isinstance(decoded, (dict, list)) and payload.depth_exceeds(decoded, payload.MAX_DEPTH):
            # A 4xx, so the vendor stops: past 254 levels orjson cannot encode it, nor copy.deepcopy map it.
            raise InvalidPayload(f"the webhook payload nests deeper than {payload.MAX_DEPTH} levels")
        event, notes = webhook_mapping.apply_mapping(decoded, source.mapping)
        context = event.setdefault("context", {})
        if isinstance(context, dict):
            context["webhook"] = {"scheme": source.scheme, **({"notes": notes} if notes else {})}
        return (event,)

    def envelope(self, event: dict[str, Any], facts: RequestFacts) -> dict[str, Any]:
        # No click IDs: the page a vendor's payload mentions is not the visitor's.
        return build_envelope(event, event.get("type") or event_types.TRACK, facts)


WEBHOOK = Webhook()
