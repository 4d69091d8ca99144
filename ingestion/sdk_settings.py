"""The settings documents browser SDKs fetch before they send anything, pointed back at this gateway.

- analytics-next: ``GET /v1/projects/<writeKey>/settings`` (what Segment's CDN serves). Without
  ``apiHost`` and ``protocol`` it posts to Segment's cloud; without ``metrics.sampleRate: 0`` it
  reports its own metrics there 30 s later.
- RudderStack's analytics-js v3: ``GET /sourceConfig/?p=…&v=…&writeKey=<key>`` with Basic auth
  (what its control plane serves). ``source.id``, ``source.config`` and ``source.destinations`` are
  required; error and metrics collection to RudderStack's own service is switched off.

Both are answered from the key store's snapshot (no database query once the key is cached) and are
readable by the pipeline's allowed origins. The host in ``apiHost`` is the one the page used
(``Host``), the protocol the one it reached us by (the connection's, or ``X-Forwarded-Proto`` from a
trusted proxy), so one gateway serves every customer subdomain pointed at it.
"""

from __future__ import annotations

import re

from django.http import HttpRequest, HttpResponse

from ingestion import answers, auth, cors
from ingestion.client import public_scheme
from ingestion.errors import ApiError, InvalidPayload
from pipelines.keystore import PipelineSnapshot

# Browsers cache the document briefly: a page view need not ask again on every load, and a changed
# key still reaches them within a minute (the events themselves are checked on every request).
CACHE_CONTROL = "private, max-age=60"
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:\d{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:\d{1,5})?")


def _host(request: HttpRequest) -> str:
    host = request.META.get("HTTP_HOST", "")
    if not _HOST.fullmatch(host):
        raise InvalidPayload("the Host header is not a host name")
    return host


def segment_settings_document(*, write_key: str, host: str, scheme: str) -> dict[str, object]:
    return {
        "integrations": {"Segment.io": {"apiKey": write_key, "apiHost": f"{host}/v1", "protocol": scheme}},
        "metrics": {"sampleRate": 0},
        "plan": {},
        "remotePlugins": [],
        "enabledMiddleware": {},
        "middlewareSettings": {},
    }


def rudderstack_config_document(*, write_key: str, pipeline: PipelineSnapshot) -> dict[str, object]:
    return {
        "isHosted": False,
        "source": {
            "id": pipeline.pipeline_id,
            "name": pipeline.pipeline_id,
            "writeKey": write_key,
            "workspaceId": pipeline.pipeline_id,
            "enabled": True,
            "config": {"statsCollection": {"errors": {"enabled": False}, "metrics": {"enabled": False}}},
            "destinations": [],
        },
    }


async def _answer(request: HttpRequest, write_key: str, document: str) -> HttpResponse:
    origin = request.META.get("HTTP_ORIGIN", "")
    headers = cors.unverified_headers(origin)
    try:
        pipeline = await auth.authenticate(write_key)
        headers = {}  # a refused origin gets no CORS headers
        headers = cors.check_origin(pipeline, origin)
        if document == "segment":
            body = segment_settings_document(write_key=write_key, host=_host(request), scheme=public_scheme(request))
        else:
            body = rudderstack_config_document(write_key=write_key, pipeline=pipeline)
    except ApiError as error:
        return answers.refusal(error, headers=headers)
    return answers.json_response(body, headers={**headers, "Cache-Control": CACHE_CONTROL})


async def segment_settings(request: HttpRequest, write_key: str) -> HttpResponse:
    """``GET /v1/projects/<writeKey>/settings``."""
    return await _answer(request, write_key, "segment")


async def rudderstack_config(request: HttpRequest) -> HttpResponse:
    """``GET /sourceConfig/?writeKey=<key>``; the key may come as Basic auth instead."""
    try:
        write_key = auth.key_from_request(request.META) or request.GET.get("writeKey", "")
    except ApiError as error:
        return answers.refusal(error, headers=cors.unverified_headers(request.META.get("HTTP_ORIGIN", "")))
    return await _answer(request, write_key, "rudderstack")
