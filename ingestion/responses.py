"""The two response shapes: success, and ``{"error": {"code", "message"}}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from django.http import HttpResponse

from ingestion import metrics
from ingestion.errors import ApiError

SUCCESS_BODY = b'{"success":true}'


class GatewayResponse(HttpResponse):
    """An HttpResponse that also carries ready-made header lines (Set-Cookie: one per cookie),
    sent as they are by the lean handler."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.raw_headers: list[tuple[bytes, bytes]] = []


def json_response(body: bytes | Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> GatewayResponse:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    response = GatewayResponse(content, status=status, content_type="application/json")
    if headers:
        # Straight to the wire: Django's per-header checks cost ~1 us each, and these values are
        # ours or were a request header's (latin-1, and Twisted strips line breaks on the way out).
        response.raw_headers.extend(
            [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
        )
    return response


def error_response(error: ApiError, headers: Mapping[str, str] | None = None) -> GatewayResponse:
    metrics.inc("gateway_errors_total", code=error.code)
    if error.retry_after is not None:
        headers = {**(headers or {}), "Retry-After": str(error.retry_after)}
    return json_response(
        {"error": {"code": error.code, "message": error.message}}, status=error.status, headers=headers
    )
