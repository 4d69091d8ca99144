"""Typed errors raised where a problem is found; ingestion.answers.refusal turns them into HTTP, once."""

from __future__ import annotations

from collections.abc import Mapping


class ApiError(Exception):
    status = 400
    code = "INVALID_PAYLOAD"
    retry_after: int | None = None
    headers: Mapping[str, str] = {}  # sent with the error (Allow for a 405)

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retry_after is not None:
            self.retry_after = retry_after


class InvalidPayload(ApiError):
    status, code = 400, "INVALID_PAYLOAD"


class BatchTooLarge(ApiError):
    status, code = 400, "BATCH_TOO_LARGE"


class InvalidPipelineKey(ApiError):
    status, code = 401, "INVALID_PIPELINE_KEY"


class InvalidSignature(ApiError):
    status, code = 401, "INVALID_SIGNATURE"


class StaleTimestamp(ApiError):
    status, code = 401, "STALE_TIMESTAMP"


class OriginNotAllowed(ApiError):
    status, code = 403, "ORIGIN_NOT_ALLOWED"


class NotFound(ApiError):
    status, code = 404, "NOT_FOUND"


class MethodNotAllowed(ApiError):
    status, code = 405, "METHOD_NOT_ALLOWED"

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message)
        self.headers = {"Allow": allow}


class PayloadTooLarge(ApiError):
    status, code = 413, "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(ApiError):
    status, code = 415, "UNSUPPORTED_MEDIA_TYPE"


# Refused on the wire, before the request reaches the application (signal_gateway.adapters.daphne).


class MalformedRequest(ApiError):
    """HTTP that cannot be parsed: a request line, header or chunk framing that is not HTTP/1.1."""

    status, code = 400, "MALFORMED_REQUEST"


class RequestTimeout(ApiError):
    """The request's headers or body did not arrive within their deadline."""

    status, code = 408, "REQUEST_TIMEOUT"


class UriTooLong(ApiError):
    status, code = 414, "URI_TOO_LONG"


class HeadersTooLarge(ApiError):
    status, code = 431, "HEADERS_TOO_LARGE"


class RateLimited(ApiError):
    status, code, retry_after = 429, "RATE_LIMITED", 1


class Unavailable(ApiError):
    status, code, retry_after = 503, "UNAVAILABLE", 5


class InternalError(ApiError):
    """A fault of ours; the client may retry (never a 400, which SDKs do not retry)."""

    status, code = 500, "INTERNAL_ERROR"
