"""CORS for the browser endpoints, from each pipeline's allowed origins (none listed = any origin)."""

from __future__ import annotations

from ingestion.errors import OriginNotAllowed
from pipelines.keystore import PipelineSnapshot

PREFLIGHT_MAX_AGE = "86400"
_ALLOWED_REQUEST_HEADERS = {"content-type": "Content-Type", "authorization": "Authorization"}


def origin_allowed(pipeline: PipelineSnapshot | None, origin: str) -> bool:
    return pipeline is None or not pipeline.origins or origin in pipeline.origins


def response_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


def check_origin(pipeline: PipelineSnapshot, origin: str) -> dict[str, str]:
    """Headers for an allowed origin's response; raises for an origin outside a non-empty allowlist."""
    if not origin:
        return {}
    if not origin_allowed(pipeline, origin):
        raise OriginNotAllowed(f"origin {origin} is not allowed for this pipeline")
    return response_headers(origin)


def preflight_headers(origin: str, requested_headers: str) -> dict[str, str]:
    asked = [h.strip().lower() for h in requested_headers.split(",") if h.strip()]
    allowed = [_ALLOWED_REQUEST_HEADERS[h] for h in asked if h in _ALLOWED_REQUEST_HEADERS] or ["Content-Type"]
    return {
        **response_headers(origin),
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": ", ".join(allowed),
        "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
    }
