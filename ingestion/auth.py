"""Who is calling: the pipeline key from wherever the client put it, resolved by the key store."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from ingestion.errors import ApiError, InvalidPipelineKey, NotFound, Unavailable
from pipelines.keystore import KeyStoreUnavailable, PipelineSnapshot, get_keystore
from pipelines.tokens import PIPELINE_KEY_RE, WEBHOOK_SOURCE_RE


def key_from_request(meta: Mapping[str, Any], body: Mapping[str, Any] | None = None) -> str:
    """``Authorization: Bearer dk_…``, ``Basic base64("dk_…:")``, or a ``writeKey`` in the body.

    Reads request.META: request.headers would build a map of every header to read one."""
    auth = meta.get("HTTP_AUTHORIZATION", "")
    if auth:
        scheme, _, value = auth.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer" and value:
            return value
        if scheme == "basic" and value:
            try:
                user = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidPipelineKey("the Basic credentials are not valid base64") from None
            return user.split(":", 1)[0]
    if body is not None:
        write_key = body.get("writeKey")
        if isinstance(write_key, str) and write_key:
            return write_key
    return ""


async def authenticate(key: str) -> PipelineSnapshot:
    """The pipeline behind a ``dk_`` key."""
    if not key:
        raise InvalidPipelineKey("a pipeline key is required (Authorization header or writeKey)")
    if not PIPELINE_KEY_RE.match(key):
        # The key store also resolves wh_ webhook source ids; those are not keys.
        raise InvalidPipelineKey("the pipeline key is unknown or revoked")
    return await _resolve(key, InvalidPipelineKey("the pipeline key is unknown or revoked"))


async def authenticate_webhook_source(source_id: str) -> PipelineSnapshot:
    """The pipeline behind a ``wh_`` webhook source id; unknown sources are 404, as the SPEC says."""
    if not WEBHOOK_SOURCE_RE.match(source_id):
        raise NotFound("unknown webhook source")
    return await _resolve(source_id, NotFound("unknown webhook source"))


async def _resolve(token: str, unknown: ApiError) -> PipelineSnapshot:
    try:
        pipeline = await get_keystore().resolve(token)
    except KeyStoreUnavailable:
        raise Unavailable("the pipeline key cannot be checked right now; retry") from None
    if pipeline is None:
        raise unknown
    if not pipeline.enabled:
        raise InvalidPipelineKey("the pipeline is disabled")
    return pipeline
