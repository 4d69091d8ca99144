"""How the gateway answers: success as JSON, a batch's per-item report, the pixel's GIF, and every
error in the SPEC's one shape, ``{"error": {"code", "message"}}``.

``refusal`` is the one place an error becomes HTTP: the status, the error body, ``Retry-After``, the
CORS headers the caller decided on, and the pixel's rule that a mail client always gets the GIF.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ingestion import metrics
from ingestion.errors import ApiError
from signal_gateway.adapters.django import DeferredResponse

SUCCESS_BODY = b'{"success":true}'
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")  # 43 bytes, transparent
_NO_CACHE = [
    (b"Cache-Control", b"no-store, no-cache, must-revalidate"),
    (b"Pragma", b"no-cache"),
    (b"Expires", b"0"),
]
RawHeaders = list[tuple[bytes, bytes]]


class Answer(enum.Enum):
    """How an input answers, success or not."""

    JSON = "json"  # {"success": true}, or the error shape
    BATCH_REPORT = "batch report"  # accepted and rejected counts with per-item errors, or the error shape
    GIF = "gif"  # always the pixel: mail clients cannot retry and show nothing useful


class GatewayResponse(DeferredResponse):
    """The gateway's answers: a status, a body, and header lines ready for the wire (Set-Cookie, one
    per cookie), sent as they are by the lean handler; a whole Django response only if something
    uses it as one (signal_gateway.adapters.django)."""

    raw_headers: RawHeaders

    def __init__(self, content: bytes, *, status: int = 200, content_type: str) -> None:
        super().__init__(content, status=status, content_type=content_type)
        self.__dict__["raw_headers"] = []


def raw_headers(headers: Mapping[str, str]) -> RawHeaders:
    # Straight to the wire: Django's per-header checks cost ~1 us each, and these values are ours or
    # were a request header's (latin-1, and Twisted strips line breaks on the way out).
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


def json_response(body: bytes | Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> GatewayResponse:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    response = GatewayResponse(content, status=status, content_type="application/json")
    if headers:
        response.raw_headers.extend(raw_headers(headers))
    return response


def _gif() -> GatewayResponse:
    response = GatewayResponse(GIF, content_type="image/gif")
    response.raw_headers.extend(_NO_CACHE)
    return response


def success(
    answer: Answer,
    *,
    accepted: int = 1,
    errors: Sequence[Mapping[str, Any]] = (),
    headers: Mapping[str, str] | None = None,
    cookies: RawHeaders | None = None,
) -> GatewayResponse:
    if answer is Answer.GIF:
        response = _gif()
    elif answer is Answer.BATCH_REPORT:
        report = {"success": True, "accepted": accepted, "rejected": len(errors), "errors": list(errors)}
        response = json_response(report, headers=headers)
    else:
        response = json_response(SUCCESS_BODY, headers=headers)
    if cookies:
        response.raw_headers.extend(cookies)
    return response


def refusal(
    error: ApiError, *, answer: Answer = Answer.JSON, headers: Mapping[str, str] | None = None
) -> GatewayResponse:
    """The answer to a request that was refused, or that we failed."""
    metrics.inc("gateway_errors_total", code=error.code)
    if answer is Answer.GIF:
        return _gif()
    if error.retry_after is not None or error.headers:
        headers = {**(headers or {}), **error.headers}
        if error.retry_after is not None:
            headers["Retry-After"] = str(error.retry_after)
    return json_response(
        {"error": {"code": error.code, "message": error.message}}, status=error.status, headers=headers
    )
