"""Process start and stop for the ingestion side: producer up and topics present; on SIGTERM, drain
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

from ingestion import metrics
from ingestion.publisher import get_publisher
from pipelines import keystore
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
    keystore.count_lookup = metrics.keystore_lookup
    if not _ensure_topics():
        # Kafka may come up after us; keep trying in the background (readyz reports it meanwhile).
        threading.Thread(target=_ensure_topics_until_done, name="ensure-topic", daemon=True).start()
    atexit.register(stop)
    if twisted.serving():
        twisted.on_sigterm(_on_sigterm)
        # A timed call runs inside daphne's asyncio loop, where the monitor's task belongs.
        twisted.reactor().callLater(0, _start_monitor)


def _start_monitor() -> None:
    from ingestion import health, monitor  # health imports this module

    monitor.start(queue_depth=get_publisher().queue_depth, check_ready=health.readiness)


def _on_sigterm() -> None:
    _drain(time.monotonic() + settings.SHUTDOWN_GRACE_SECONDS)


def _drain(deadline: float) -> None:
    reactor = twisted.reactor()
    if not InFlight.draining:
        InFlight.draining = True
        metrics.ready(False)
        logger.info("SIGTERM: draining %d request(s) in flight", InFlight.count)
    if InFlight.count == 0 or time.monotonic() >= deadline:
        if InFlight.count:
            logger.warning("stopping with %d request(s) still in flight", InFlight.count)
        reactor.stop()
    else:
        reactor.callLater(0.05, _drain, deadline)


def _ensure_topics() -> bool:
    """The events topic, then the rejected-events topic (ingestion/rejected.py). Stops at the first
    failure: a broker that did not answer for one will not for the other, and start-up would wait twice."""
    publisher = get_publisher()
    topics = (settings.KAFKA_TOPIC, settings.KAFKA_REJECTED_TOPIC)
    return all(publisher.ensure_topic(partitions=settings.KAFKA_TOPIC_PARTITIONS, topic=topic) for topic in topics)


def _ensure_topics_until_done() -> None:
    while not _ensure_topics():
        threading.Event().wait(5.0)


def stop() -> None:
    left = get_publisher().close(timeout=10.0)
    if left:
        logger.error("%d records were still undelivered at shutdown", left)
