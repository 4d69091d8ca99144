"""Process start and stop for the ingestion side: producer up and topic present; on SIGTERM, drain
the requests in flight before daphne stops; flush the producer on exit.

daphne's own SIGTERM handling cancels every request in flight at once. Under daphne, ours replaces
it: /readyz turns 503 (the load balancer stops sending), requests keep being served until none is
in flight or SHUTDOWN_GRACE_SECONDS pass, then the reactor stops and atexit flushes the producer.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time

from django.conf import settings

from ingestion.publisher import get_publisher
from signal_gateway.adapters import twisted

logger = logging.getLogger(__name__)
_started = False


class InFlight:
    """Requests being handled by this process; ``draining`` once SIGTERM has arrived."""

    count = 0
    draining = False


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
    if twisted.serving():
        twisted.on_sigterm(_on_sigterm)


def _on_sigterm() -> None:
    _drain(time.monotonic() + settings.SHUTDOWN_GRACE_SECONDS)


def _drain(deadline: float) -> None:
    reactor = twisted.reactor()
    if not InFlight.draining:
        InFlight.draining = True
        logger.info("SIGTERM: draining %d request(s) in flight", InFlight.count)
    if InFlight.count == 0 or time.monotonic() >= deadline:
        if InFlight.count:
            logger.warning("stopping with %d request(s) still in flight", InFlight.count)
        reactor.stop()
    else:
        reactor.callLater(0.05, _drain, deadline)


def _ensure_topic_until_done() -> None:
    publisher = get_publisher()
    while not publisher.ensure_topic(partitions=settings.KAFKA_TOPIC_PARTITIONS):
        threading.Event().wait(5.0)


def stop() -> None:
    left = get_publisher().close(timeout=10.0)
    if left:
        logger.error("%d records were still undelivered at shutdown", left)
