"""CORS for the browser endpoints, from each pipeline's allowed origins (none listed = any origin).

Three kinds of answer:

- before the pipeline is known (no key, an unknown key, an unreadable or oversized body), the origin
  may read the answer, so a non-credentialed SDK (analytics-next) sees the status instead of a
  network error it would retry forever, but nothing grants it credentials: an origin the pipeline
  has not allowed must not learn that its cookies would be honoured (SPEC §4, issue 11 item 10);
- once the pipeline has allowed the origin: the origin, with credentials, so a page can send and
  keep the identity cookies;
- an origin outside a non-empty allowlist: no CORS headers at all (and ``403`` for its POST).

``Origin: null`` (sandboxed frames, ``file:`` pages, some redirects) is never echoed: every such
page shares that one value, so echoing it would let all of them read the answer.

A preflight is the one answer that grants credentials before the pipeline is known (unless the page
put ``?writeKey=`` on the URL): it only lets the browser *send* a credentialed request, which a
``text/plain`` POST may do without any preflight, and that request's own answer is checked against
the pipeline. Without it, an SDK that sends cookies with its ``Authorization`` header
(RudderStack's XHR) could not post at all.
"""

from __future__ import annotations

from ingestion.errors import OriginNotAllowed
from pipelines.keystore import PipelineSnapshot

PREFLIGHT_MAX_AGE = "86400"
OPAQUE_ORIGIN = "null"
POST_METHODS = "POST, OPTIONS"
GET_METHODS = "GET, OPTIONS"
# The request headers the SDKs send (SPEC §4): analytics-next's Basic auth and retry count,
# RudderStack's AnonymousId and SentAt, and its rsa-* retry headers (matched by prefix).
_ALLOWED_REQUEST_HEADERS = {
    "content-type": "Content-Type",
    "authorization": "Authorization",
    "anonymousid": "AnonymousId",
    "sentat": "SentAt",
    "x-retry-count": "X-Retry-Count",
}
_ALLOWED_PREFIXES = ("rsa-",)
_MAX_REQUESTED = 32  # a preflight asking for more names is answered with the ones that count


def origin_allowed(pipeline: PipelineSnapshot | None, origin: str) -> bool:
    return pipeline is None or not pipeline.origins or origin in pipeline.origins


def unverified_headers(origin: str) -> dict[str, str]:
    """For an answer given before the pipeline is known: readable by the page, no credentials."""
    if not origin or origin == OPAQUE_ORIGIN:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def allowed_headers(origin: str) -> dict[str, str]:
    """For an origin the pipeline allows (or a preflight, whose POST is checked again): with credentials."""
    if not origin or origin == OPAQUE_ORIGIN:
        return {}
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
        raise OriginNotAllowed(f"origin {origin[:200]} is not allowed for this pipeline")
    return allowed_headers(origin)


def _allowed_request_header(name: str) -> str | None:
    known = _ALLOWED_REQUEST_HEADERS.get(name)
    if known is not None:
        return known
    if name.startswith(_ALLOWED_PREFIXES) and name.replace("-", "").isalnum():
        return name
    return None


def preflight_headers(origin: str, requested_headers: str, *, methods: str = POST_METHODS) -> dict[str, str]:
    """A preflight's answer: the credentialed origin (the request itself is checked against the
    pipeline), the methods, and those of the requested headers the gateway reads."""
    if not origin or origin == OPAQUE_ORIGIN:
        return {}
    asked = [h.strip().lower() for h in requested_headers.split(",")[:_MAX_REQUESTED] if h.strip()]
    allowed = [name for name in map(_allowed_request_header, asked) if name is not None] or ["Content-Type"]
    return {
        **allowed_headers(origin),
        "Access-Control-Allow-Methods": methods,
        "Access-Control-Allow-Headers": ", ".join(allowed),
        "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
    }
