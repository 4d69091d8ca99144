"""Tell every gateway process that a pipeline's configuration changed.

After the transaction commits, the cached records of the pipeline's tokens are deleted from Redis
and the tokens are published on CHANNEL; each process's key store drops them from memory.
When Redis cannot be reached the change is still committed: the command or admin action logs one
warning, and the gateways pick the change up when they revalidate (KEYSTORE_FRESH_SECONDS).
Without Redis (the one-machine demo) there is nobody to tell: processes revalidate on a short TTL.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

CHANNEL = "sg:keystore"
RECORD_PREFIX = "sg:ks:"
RECORD_TTL_SECONDS = 3600
# Bumped with every change; loaders only write a record back if it has not moved.
GENERATION_KEY = "sg:ks:generation"


def pipeline_changed(pipeline_id: str, extra_tokens: Iterable[str] = ()) -> None:
    extra = list(extra_tokens)
    transaction.on_commit(lambda: _publish(pipeline_id, extra))


def _publish(pipeline_id: str, extra_tokens: list[str]) -> None:
    from pipelines.selectors import pipeline_tokens

    if not settings.REDIS_URL:
        return
    tokens = sorted({*pipeline_tokens(pipeline_id), *extra_tokens})
    if not tokens:
        return
    from django_redis import get_redis_connection

    try:
        redis = get_redis_connection("default")
        pipe = redis.pipeline()
        pipe.incr(GENERATION_KEY)
        pipe.delete(*[RECORD_PREFIX + t for t in tokens])
        pipe.publish(CHANNEL, json.dumps({"pipeline_id": pipeline_id, "tokens": tokens}))
        pipe.execute()
    except Exception as exc:
        # The change is committed, and each gateway revalidates what it caches against the database
        # once it is KEYSTORE_FRESH_SECONDS old. Say that in one line: a traceback reads as a failure.
        logger.warning(
            "could not tell the gateways about the change to pipeline %s at once (Redis: %s); "
            "they will pick it up within %g s",
            pipeline_id,
            _one_line(exc),
            settings.KEYSTORE_FRESH_SECONDS,
        )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
