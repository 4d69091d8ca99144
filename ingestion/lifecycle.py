"""Process start and stop for the ingestion side: producer up and topics present, the spool's
drainer running; on SIGTERM, stop taking requests and finish those in flight; on exit, close the
producer and the spool.

daphne's own SIGTERM handling cancels every request in flight at once. Under daphne, ours replaces
it (signal_gateway.adapters.twisted). On SIGTERM the process stops listening at once, answers any
new request on an open connection 503 (``Connection: close``) and /readyz 503; requests in flight
finish. Those still waiting for Kafka at SHUTDOWN_GRACE_SECONDS spool their records instead (and are
answered 200); then the reactor stops and the process exits 0. What the spool holds is drained by
the next process to open the spool directory.
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
# After the grace period, how long requests may take to spool what Kafka has not acknowledged.
SPOOL_AT_SHUTDOWN_SECONDS = 5.0


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
    from ingestion.delivery import get_delivery

    monitor.start(queue_depth=get_publisher().queue_depth, check_ready=health.readiness)
    get_delivery().start()  # drains what an earlier process left in the spool, traffic or not


def _on_sigterm() -> None:
    InFlight.draining = True
    metrics.ready(False)
    twisted.stop_listening()
    logger.info("SIGTERM: stopped listening; %d request(s) in flight", InFlight.count)
    _drain(time.monotonic() + settings.SHUTDOWN_GRACE_SECONDS)


def _drain(deadline: float, spooling_since: float | None = None) -> None:
    reactor = twisted.reactor()
    now = time.monotonic()
    if InFlight.count == 0:
        reactor.stop()
        return
    if now >= deadline and spooling_since is None:
        from ingestion.delivery import get_delivery

        logger.warning("grace period over: %d request(s) still waiting for Kafka spool instead", InFlight.count)
        get_delivery().give_up_now()
        spooling_since = now
    if spooling_since is not None and now - spooling_since > SPOOL_AT_SHUTDOWN_SECONDS:
        logger.error("stopping with %d request(s) still in flight", InFlight.count)
        reactor.stop()
        return
    reactor.callLater(0.05, _drain, deadline, spooling_since)


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
    metrics.flush()
    # Whatever the producer still holds is in the spool too (its requests spooled it), or is
    # best effort (rejected-events): a short flush, not a wait for a broker that may be gone.
    left = get_publisher().close(timeout=2.0)
    if left:
        logger.info("%d record(s) left in the producer at exit (each is spooled, or best effort)", left)
    from ingestion import delivery

    if delivery._default is not None:
        delivery._default.spool.close()
