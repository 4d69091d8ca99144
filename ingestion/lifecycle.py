"""Process start and stop for the ingestion side: producer up and topic present; flush on exit."""

from __future__ import annotations

import atexit
import logging
import threading

from django.conf import settings

from ingestion.publisher import get_publisher

logger = logging.getLogger(__name__)
_started = False


def start() -> None:
    global _started
    if _started:
        return
    _started = True
    publisher = get_publisher()
    if not publisher.ensure_topic(partitions=settings.KAFKA_TOPIC_PARTITIONS):
        # Kafka may come up after us; keep trying in the background (readyz reports it meanwhile).
        threading.Thread(target=_ensure_topic_until_done, name="ensure-topic", daemon=True).start()
    atexit.register(stop)


def _ensure_topic_until_done() -> None:
    publisher = get_publisher()
    while not publisher.ensure_topic(partitions=settings.KAFKA_TOPIC_PARTITIONS):
        threading.Event().wait(5.0)


def stop() -> None:
    left = get_publisher().close(timeout=10.0)
    if left:
        logger.error("%d records were still undelivered at shutdown", left)
