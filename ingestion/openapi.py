"""The API's description for ``/openapi.json`` and ``/docs``: request bodies, auth schemes, answers.

Declared for the document only, as JSON Schema: the operations keep reading the raw body (a JSON
object parsed once by orjson, checked field by field where it is used), so describing the API costs
the hot path nothing. ``operation(name)`` is what each operation in ingestion.api passes to ninja as
``openapi_extra``; ``COMPONENTS`` are merged into the document by ``GatewayAPI`` (ingestion.api).
Status codes are the ones the gateway can answer, including those answered on the wire before the
operation runs (signal_gateway.adapters.daphne); tests/test_fuzz.py holds every answer to them.
"""

from __future__ import annotations

import copy
from typing import Any

from ingestion import event_types
from ingestion.envelope import MAX_ID_LENGTH, MAX_TIME_LENGTH
from ingestion.payload import MAX_DEPTH, MAX_EVENT_BYTES
from ingestion.server import MAX_BATCH_BYTES, MAX_BATCH_EVENTS
from ingestion.webhook import MAX_WEBHOOK_BYTES


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_IDENTIFIER = {"type": ["string", "integer", "number", "null"], "description": f"at most {MAX_ID_LENGTH} characters"}
_TIME = {
    "type": ["string", "null"],
    "maxLength": MAX_TIME_LENGTH,
    "description": "ISO 8601 (2024-05-01T12:00:00.123Z); without an offset, UTC",
}
_OBJECT = {"type": "object", "additionalProperties": True}

SCHEMAS: dict[str, Any] = {
    "Event": {
        "title": "Segment-spec event",
        "description": (
            "A Segment-spec call. Unknown keys are kept as they came. A track call needs `event`, a group "
            f"call `groupId`, every call a `userId` or `anonymousId` (browser calls get the `_dfid` cookie's). "
            f"At most {MAX_EVENT_BYTES} bytes and {MAX_DEPTH} levels of nesting."
        ),
        "type": "object",
        "additionalProperties": True,
        "properties": {
            "type": {
                "type": "string",
                "enum": list(event_types.ALL),
                "description": "the path decides it on /v1/t|p|i|g",
            },
            "event": {"type": ["string", "null"], "description": "track: the event's name"},
            "name": {"type": ["string", "null"], "description": "page, screen: the page's name"},
            "properties": _OBJECT,
            "traits": _OBJECT,
            "userId": _IDENTIFIER,
            "anonymousId": _IDENTIFIER,
            "groupId": _IDENTIFIER,
            "messageId": {**_IDENTIFIER, "description": "opaque; a new UUID when absent; the dedup key"},
            "timestamp": _TIME,
            "sentAt": _TIME,
            "context": {
                "type": "object",
                "additionalProperties": True,
                "properties": {
                    "page": {
                        "type": "object",
                        "additionalProperties": True,
                        "properties": {
                            name: {"type": "string"} for name in ("url", "path", "referrer", "title", "search")
                        },
                    },
                    "userAgent": {"type": "string"},
                    "ip": {"type": "string"},
                    "locale": {"type": "string"},
                    "timezone": {"type": "string"},
                    "library": _OBJECT,
                    "campaign": _OBJECT,
                    "consent": _OBJECT,
                    "screen": _OBJECT,
                    "device": _OBJECT,
                },
            },
            "integrations": _OBJECT,
            "writeKey": {"type": "string", "description": "the pipeline key, for SDKs that send no Authorization"},
        },
    },
    "Batch": {
        "title": "Batch",
        "description": (
            f"Up to {MAX_BATCH_EVENTS} events, {MAX_BATCH_BYTES} bytes in all, each at most {MAX_EVENT_BYTES} "
            "bytes. The top-level `context` sits under each event's own; `sentAt` applies to events that carry "
            "none. Invalid items are reported by index; the rest are published."
        ),
        "type": "object",
        "required": ["batch"],
        "additionalProperties": True,
        "properties": {
            "batch": {"type": "array", "maxItems": MAX_BATCH_EVENTS, "items": _ref("Event")},
            "sentAt": _TIME,
            "context": _OBJECT,
            "writeKey": {"type": "string"},
        },
    },
    "Success": {
        "type": "object",
        "required": ["success"],
        "additionalProperties": False,
        "properties": {"success": {"const": True}},
    },
    "BatchReport": {
        "type": "object",
        "required": ["success", "accepted", "rejected", "errors"],
        "additionalProperties": False,
        "properties": {
            "success": {"const": True},
            "accepted": {"type": "integer", "minimum": 0},
            "rejected": {"type": "integer", "minimum": 0},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "code", "message"],
                    "additionalProperties": False,
                    "properties": {
                        "index": {"type": "integer", "minimum": 0},
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                    },
                },
            },
        },
    },
    "Error": {
        "title": "Error",
        "description": "Every error, whatever the path (the pixel excepted: it always answers its GIF).",
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": False,
                "properties": {
                    "code": {
                        "type": "string",
                        "examples": ["INVALID_PAYLOAD", "INVALID_PIPELINE_KEY", "PAYLOAD_TOO_LARGE"],
                    },
                    "message": {"type": "string"},
                },
            }
        },
    },
}

SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer dk_…"},
    "basic": {
        "type": "http",
        "scheme": "basic",
        "description": 'Authorization: Basic base64("dk_…:"), the key as the user name (Segment and RudderStack SDKs)',
    },
    "wk": {"type": "apiKey", "in": "query", "name": "wk", "description": "the pixel's key, in its URL"},
    "signature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Signature",
        "description": (
            "v2=<hex HMAC-SHA256, keyed with a signing secret, of <X-Timestamp>.<METHOD> <path>.<raw body>>; "
            "v1 (sha256=<hex HMAC of <X-Timestamp>.<raw body>>) while SERVER_SIGNATURE_V1 is on"
        ),
    },
    "timestamp": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Timestamp",
        "description": "unix milliseconds, within 5 minutes of the gateway's clock",
    },
    "webhookSource": {
        "type": "apiKey",
        "in": "query",
        "name": "source",
        "description": "the webhook source (wh_…); the request is then verified with the source's vendor scheme",
    },
}

COMPONENTS: dict[str, Any] = {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES}

# {}: no header at all, the key as writeKey in the JSON body (OpenAPI has no scheme for a key in a body).
_KEY: list[dict[str, list[str]]] = [{"bearer": []}, {"basic": []}, {}]
_SIGNED: list[dict[str, list[str]]] = [
    {"bearer": [], "signature": [], "timestamp": []},
    {"basic": [], "signature": [], "timestamp": []},
]

_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "string"}}}


def _error(description: str, *, retry: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}
    if retry:
        answer["headers"] = _RETRY_AFTER
    return answer


# Answered before any operation runs (signal_gateway.adapters.daphne, ingestion.handler).
_WIRE_ERRORS: dict[int, Any] = {
    400: _error("INVALID_PAYLOAD (the body), MALFORMED_REQUEST (not HTTP/1.1)"),
    405: _error("METHOD_NOT_ALLOWED"),
    408: _error("REQUEST_TIMEOUT: headers or body slower than their deadlines"),
    413: _error("PAYLOAD_TOO_LARGE"),
    414: _error("URI_TOO_LONG"),
    431: _error("HEADERS_TOO_LARGE"),
    500: _error("INTERNAL_ERROR: a fault of ours; retry"),
    503: _error("UNAVAILABLE: Kafka, or the key store for a key never seen, could not answer in time", retry=True),
}
_JSON_BODY_ERRORS: dict[int, Any] = {
    **_WIRE_ERRORS,
    401: _error("INVALID_PIPELINE_KEY: unknown, revoked or missing key, or a disabled pipeline"),
    415: _error("UNSUPPORTED_MEDIA_TYPE: not JSON or text/plain, or an encoding other than gzip"),
    429: _error("RATE_LIMITED", retry=True),
}


def _json_body(schema: dict[str, Any], *, limit: int) -> dict[str, Any]:
    return {
        "required": True,
        "description": f"JSON, optionally gzip-encoded (Content-Encoding: gzip); at most {limit} bytes once decompressed",
        "content": {
            "application/json": {"schema": schema},
            "text/plain": {
                "schema": {"type": "string", "description": "the same JSON, sent as text/plain (no CORS preflight)"}
            },
        },
    }


_CONTENT_ENCODING = {
    "name": "Content-Encoding",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "enum": ["gzip", "identity"]},
}
_ORIGIN = {
    "name": "Origin",
    "in": "header",
    "required": False,
    "description": "checked against the pipeline's allowed origins",
    "schema": {"type": "string"},
}


def browser(event_type: str) -> dict[str, Any]:
    """A browser call's description (the short paths and Segment's HTTP Tracking API paths)."""
    return copy.deepcopy(_browser(event_type))


def browser_batch(description: str) -> dict[str, Any]:
    """An SDK's batch from a page (analytics-next's /v1/b, RudderStack's beacon)."""
    described = copy.deepcopy(_OPERATIONS["batch"])
    described["description"] = description + " Up to 500 events; invalid ones are reported by index."
    described["security"] = _KEY
    described["parameters"] = [*described["parameters"], _ORIGIN]
    return described


def _browser(event_type: str) -> dict[str, Any]:
    return {
        "description": (
            f"A browser {event_type} call (analytics.js posts here). The key: Authorization (Bearer or Basic), or "
            "`writeKey` in the body. Sets the `_dfid` and vendor ID cookies (first-party), records ad click IDs from "
            "context.page, answers with CORS headers for an allowed Origin."
        ),
        "security": _KEY,
        "parameters": [_CONTENT_ENCODING, _ORIGIN],
        "requestBody": _json_body(_ref("Event"), limit=MAX_EVENT_BYTES),
        "responses": {
            200: {"description": "published", "content": {"application/json": {"schema": _ref("Success")}}},
            **_JSON_BODY_ERRORS,
            403: _error("ORIGIN_NOT_ALLOWED"),
        },
    }


_HEALTH = {
    "healthz": {
        "description": "Liveness: the process answers.",
        "responses": {200: {"description": "alive", "content": {"application/json": {"schema": _OBJECT}}}},
    },
    "readyz": {
        "description": (
            "Readiness: can this process take events (Kafka, or its spool)? Each dependency and the spool reported; "
            "503 only with the spool full while it must be used, or while draining."
        ),
        "responses": {
            200: {"description": "ready", "content": {"application/json": {"schema": _OBJECT}}},
            503: {"description": "not ready", "content": {"application/json": {"schema": _OBJECT}}},
        },
    },
    "prometheus_metrics": {
        "description": "Prometheus text format.",
        "responses": {200: {"description": "the metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}},
    },
}

_OPERATIONS: dict[str, dict[str, Any]] = {
    **_HEALTH,
    "segment_settings": {
        "description": (
            "analytics-next's settings document, pointing the SDK back at this gateway (apiHost, protocol) with "
            "its own metrics off. No Authorization: the key is in the path."
        ),
        "parameters": [_ORIGIN],
        "responses": {
            200: {"description": "the settings", "content": {"application/json": {"schema": _OBJECT}}},
            401: _error("INVALID_PIPELINE_KEY"),
            403: _error("ORIGIN_NOT_ALLOWED"),
            **_WIRE_ERRORS,
        },
    },
    "rudderstack_config": {
        "description": "RudderStack's source config (analytics-js v3): the key as `?writeKey=` or Basic auth.",
        "security": [{"basic": []}, {}],
        "parameters": [
            {"name": "writeKey", "in": "query", "required": False, "schema": {"type": "string"}},
            _ORIGIN,
        ],
        "responses": {
            200: {"description": "the source config", "content": {"application/json": {"schema": _OBJECT}}},
            401: _error("INVALID_PIPELINE_KEY"),
            403: _error("ORIGIN_NOT_ALLOWED"),
            **_WIRE_ERRORS,
        },
    },
    "server_event": {
        "description": "One server-side event, signed (see README, 'Signing server requests').",
        "security": _SIGNED,
        "parameters": [_CONTENT_ENCODING],
        "requestBody": _json_body(_ref("Event"), limit=MAX_EVENT_BYTES),
        "responses": {
            200: {"description": "published", "content": {"application/json": {"schema": _ref("Success")}}},
            **_JSON_BODY_ERRORS,
            401: _error("INVALID_PIPELINE_KEY, INVALID_SIGNATURE or STALE_TIMESTAMP"),
        },
    },
    "batch": {
        "description": (
            "Up to 500 events; signed, or authenticated by the pipeline key alone (Authorization, or `writeKey` "
            "in the body)."
        ),
        "security": [*_KEY, *_SIGNED],
        "parameters": [_CONTENT_ENCODING],
        "requestBody": _json_body(_ref("Batch"), limit=MAX_BATCH_BYTES),
        "responses": {
            200: {
                "description": "every valid event published; invalid ones reported by index",
                "content": {"application/json": {"schema": _ref("BatchReport")}},
            },
            **_JSON_BODY_ERRORS,
            400: _error("INVALID_PAYLOAD, BATCH_TOO_LARGE (over 500 events or 5 MB), MALFORMED_REQUEST"),
            401: _error("INVALID_PIPELINE_KEY, INVALID_SIGNATURE or STALE_TIMESTAMP"),
        },
    },
    "pixel_event": {
        "description": (
            "The tracking pixel: e (event name), uid, aid, gid, mid, name, ts (unix ms), p.<name> (properties), "
            "t.<name> (traits), cb (ignored). Always the GIF, whatever happens: mail clients cannot retry."
        ),
        "security": [{"wk": []}],
        "parameters": [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}, "description": text}
            for name, text in (
                ("wk", "the pipeline key"),
                ("e", "the event name"),
                ("uid", "userId"),
                ("aid", "anonymousId"),
                ("gid", "groupId"),
                ("mid", "messageId"),
                ("ts", "unix milliseconds"),
                ("cb", "cache buster, ignored"),
            )
        ],
        "responses": {
            200: {
                "description": "a 1x1 transparent GIF, never cached",
                "content": {"image/gif": {"schema": {"type": "string", "format": "binary"}}},
            },
            **_WIRE_ERRORS,
        },
    },
    "webhook_event": {
        "description": (
            "A third party's webhook: the source's scheme (stripe, shopify, github, hubspot-v3, standard-webhooks, "
            f"generic-hmac, shared-secret, none) verifies it over the raw body; at most {MAX_WEBHOOK_BYTES} bytes "
            f"and {MAX_DEPTH} levels of nesting. Its field mapping turns it into an event."
        ),
        "security": [{"webhookSource": []}],
        "parameters": [
            {"name": "source", "in": "query", "required": True, "schema": {"type": "string", "pattern": "^wh_"}}
        ],
        "requestBody": {
            "required": True,
            "description": "the vendor's payload, as the vendor sends it; JSON is mapped, anything else kept as text",
            "content": {
                "application/json": {"schema": _OBJECT},
                "text/plain": {"schema": {"type": "string"}},
            },
        },
        "responses": {
            200: {"description": "published", "content": {"application/json": {"schema": _ref("Success")}}},
            **_JSON_BODY_ERRORS,
            401: _error("INVALID_SIGNATURE or STALE_TIMESTAMP"),
            404: _error("NOT_FOUND: no such webhook source"),
        },
    },
}


def operation(name: str) -> dict[str, Any]:
    """What ninja merges into the named operation's description (its ``openapi_extra``): a copy, since
    ninja merges by reference and the answers are shared between operations."""
    return copy.deepcopy(_OPERATIONS[name])
