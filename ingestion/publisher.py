"""The Kafka publisher: one idempotent producer per process, acknowledgements awaited on the event loop.

``produce()`` never blocks: it queues the record in librdkafka and returns a future. A poll thread
serves delivery reports and hands each poll's completions to the loop in one
``call_soon_threadsafe``. ``wait`` returns once the records are acknowledged by ``acks=all``; a full
local queue, a failed delivery or an acknowledgement that does not arrive within ``ack_timeout``
raises ``PublishUnavailable`` (ingestion.delivery then spools the records). A record a request gave
up on may still be delivered later: ``enqueue``'s ``on_late`` hears of it.

The publisher also says whether Kafka is worth trying (``reachable``): false from the moment
librdkafka reports every broker down or a delivery fails, true again at the next acknowledgement.
A fatal error (an idempotent producer librdkafka can no longer use, e.g. fenced after an outage
longer than ``message.timeout.ms``) replaces the producer with a new one, in the poll thread; what
the old one held fails, and is spooled by its requests.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from ingestion import metrics
from ingestion.errors import Unavailable
from ingestion.records import PRODUCER_MAX_MESSAGE_BYTES, Record

logger = logging.getLogger(__name__)


# Delivery errors after which this producer will never deliver again, whatever Kafka does: its
# producer id or epoch is no longer Kafka's (an idempotent producer's records timed out during an
# outage, it bumped its epoch, and the broker answers that a newer producer fences it).
_UNUSABLE = frozenset({
    KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH, KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
    KafkaError.UNKNOWN_PRODUCER_ID, KafkaError.INVALID_PRODUCER_ID_MAPPING, KafkaError._FENCED, KafkaError._FATAL,
})  # fmt: skip


# ...and a record that timed out: the idempotent producer then bumps its epoch, which this broker
# answers by fencing whatever the producer sends next, part of a batch included. A new producer
# (a new id) before anything else is sent keeps that batch whole.
_REPLACE_AFTER = _UNUSABLE | {KafkaError._MSG_TIMED_OUT}


class PublishUnavailable(Unavailable):
    """Kafka could not take the record within the bounded wait (503 + Retry-After to the client)."""


def producer_config(bootstrap: str, linger_ms: float = 2.0, message_timeout_ms: int = 30_000) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "client.id": "signal-gateway",
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        # A short linger lets concurrent requests share a produce request without adding visible latency.
        "linger.ms": linger_ms,
        # Said, not left to librdkafka's default: ingestion.records refuses (413) what would not fit.
        "message.max.bytes": PRODUCER_MAX_MESSAGE_BYTES,
        "queue.buffering.max.messages": 200_000,
        "queue.buffering.max.kbytes": 262_144,
        # Records a request gave up on (and spooled) may still land; past this, librdkafka stops trying.
        "message.timeout.ms": message_timeout_ms,
        "socket.keepalive.enable": True,
        "reconnect.backoff.max.ms": 1000,
    }


class Publisher:
    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        ack_timeout: float,
        linger_ms: float = 2.0,
        message_timeout_ms: int = 30_000,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.ack_timeout = ack_timeout
        self.message_timeout_s = message_timeout_ms / 1000
        self._config = {
            **producer_config(bootstrap, linger_ms, message_timeout_ms),
            "error_cb": self._on_error,
        }
        self._producer = self._new_producer()
        self.reachable = True  # worth trying; see the module's docstring
        self.recreated = 0  # producers replaced after a fatal error
        self._fatal: KafkaError | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._completed: list[tuple[_Waiter, KafkaError | None]] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._poll_forever, name="kafka-poll", daemon=True)
        self._thread.start()

    def _new_producer(self) -> Producer:
        return Producer(self._config, logger=logging.getLogger("librdkafka"))

    # -- producing ----------------------------------------------------------------------------

    def enqueue(self, records: Sequence[Record], on_late: Callable[[bool], None] | None = None) -> asyncio.Future[None]:
        """Queue the records (librdkafka copies them); the future completes when all are
        acknowledged (or one fails). Await it with ``wait``. ``on_late(delivered)`` is called on the
        loop if the outcome arrives after the future was given up on."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiter = _Waiter(future, len(records), self._completed, on_late)
        produce, topic, delivered = self._producer.produce, self.topic, waiter.delivered
        try:
            for key, value, headers in records:
                # Positional, in the C signature's order (topic, value, key, partition, callback,
                # on_delivery, timestamp, headers): keyword arguments cost librdkafka's binding a
                # string lookup per name, about a fifth of produce(). -1 and 0 are its defaults.
                produce(topic, value, key, -1, delivered, None, 0, headers)
        except BufferError:
            raise PublishUnavailable("the local Kafka queue is full") from None
        except KafkaException as exc:
            raise PublishUnavailable(f"Kafka refused the record: {exc}") from None
        return future

    def produce_nowait(self, topic: str, record: Record, on_delivery: Callable[[KafkaError | None, Any], None]) -> None:
        """Queue a record for another topic and do not wait for it (best effort: rejected-events).
        Raises BufferError when librdkafka's queue is full, KafkaException when it refuses it."""
        self._producer.produce(topic, record.value, record.key, headers=record.headers, on_delivery=on_delivery)

    async def publish(self, record: Record) -> None:
        """Return once Kafka has acknowledged the record."""
        await self.publish_many((record,))

    async def publish_many(self, records: Sequence[Record]) -> None:
        """Queue every record at once and wait for all acknowledgements together."""
        await self.wait(self.enqueue(records))

    async def wait(self, acknowledged: asyncio.Future[None]) -> None:
        """Return once ``enqueue``'s records are acknowledged; PublishUnavailable after ack_timeout.

        A timer fails the future, rather than asyncio.wait_for, which wraps it in a second future
        and callbacks on every request."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        timer = loop.call_later(self.ack_timeout, self._expire, acknowledged)
        try:
            await acknowledged
        except PublishUnavailable:
            self.reachable = False
            raise
        finally:
            timer.cancel()
        self.reachable = True
        metrics.kafka_acked(loop.time() - started)

    def _expire(self, acknowledged: asyncio.Future[None]) -> None:
        if not acknowledged.done():
            acknowledged.set_exception(PublishUnavailable(f"Kafka did not acknowledge within {self.ack_timeout:g}s"))

    # -- delivery reports (poll thread) -------------------------------------------------------

    def _on_error(self, err: KafkaError) -> None:
        # librdkafka's error callback, from poll() in the poll thread (its own log lines say the rest).
        if err.fatal():
            self._fatal = err
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            if self.reachable:
                logger.warning("kafka: every broker is down; new events go to the spool")
            self.reachable = False

    def _replace_producer(self) -> None:
        """After a fatal error: a new producer; the old one's records fail (their requests spool them)."""
        err, self._fatal = self._fatal, None
        old, self._producer = self._producer, self._new_producer()
        self.recreated += 1
        self.reachable = False
        logger.error("kafka producer can no longer deliver (%s); replaced it with a new one", err.str() if err else "?")
        try:
            old.purge(in_queue=True, in_flight=True, blocking=False)
            old.poll(0)  # delivery reports for what was purged
            old.flush(0)
        except Exception as exc:  # the old producer is being dropped whatever it says
            logger.warning("could not purge the old producer: %s", exc)

    def _poll_forever(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.05)
            if self._fatal is not None:
                self._replace_producer()
            if self._completed and self._loop is not None:
                batch = self._completed[:]
                del self._completed[: len(batch)]
                for _, err in batch:
                    if err is not None and self._fatal is None and (err.fatal() or err.code() in _REPLACE_AFTER):
                        self._fatal = err  # replaced at the next turn of this loop
                try:
                    self._loop.call_soon_threadsafe(_complete, batch)
                except RuntimeError:  # the loop is closed: nobody is waiting any more
                    return

    # -- lifecycle ----------------------------------------------------------------------------

    def ensure_topic(self, *, partitions: int, timeout: float = 5.0, topic: str | None = None) -> bool:
        """Create the topic (ours unless ``topic`` names another) if it is missing; False (and a
        log line) when Kafka cannot say."""
        topic = topic or self.topic
        # librdkafka writes its own lines to stderr unless given a logger: JSON logs only.
        admin = AdminClient({"bootstrap.servers": self.bootstrap}, logger=logging.getLogger("librdkafka"))
        try:
            metadata = admin.list_topics(timeout=timeout)
            if topic in metadata.topics and not metadata.topics[topic].error:
                return True
            futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=-1)])
            futures[topic].result(timeout=timeout)
            logger.info("created topic %s with %d partitions", topic, partitions)
            return True
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return True
            logger.warning("could not ensure topic %s: %s", topic, exc)
            return False
        except Exception as exc:
            logger.warning("could not ensure topic %s: %s", topic, exc)
            return False

    def queue_depth(self) -> int:
        """Messages and requests waiting in librdkafka's local queue (``len(producer)``), for
        gateway_kafka_queue_depth; sampled by ingestion.monitor."""
        return len(self._producer)

    def check(self, timeout: float = 1.0) -> None:
        """Raise unless a broker answers a metadata request now (blocking; call off the loop). A client
        of its own, so that nothing cached can answer for a broker that is gone."""
        admin = AdminClient(
            {"bootstrap.servers": self.bootstrap, "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000))},
            logger=logging.getLogger("librdkafka"),
        )
        admin.list_topics(self.topic, timeout=timeout)

    def close(self, timeout: float = 10.0) -> int:
        """Flush what is queued, stop polling; returns how many records were left undelivered."""
        self._stopping.set()
        self._thread.join(timeout=1.0)
        return self._producer.flush(timeout)


class _Waiter:
    """Counts one request's delivery reports in the poll thread; only the last one (or the first
    error) is handed to the event loop."""

    __slots__ = ("future", "remaining", "completed", "on_late")

    def __init__(
        self,
        future: asyncio.Future[None],
        count: int,
        completed: list[Any],
        on_late: Callable[[bool], None] | None,
    ) -> None:
        self.future = future
        self.remaining = count
        self.completed = completed
        self.on_late = on_late

    def delivered(self, err: KafkaError | None, _msg: Any) -> None:
        if self.remaining <= 0:
            return  # already reported (an earlier record failed)
        if err is not None:
            self.remaining = 0
            self.completed.append((self, err))
            return
        self.remaining -= 1
        if self.remaining == 0:
            self.completed.append((self, None))


def _complete(batch: list[tuple[_Waiter, KafkaError | None]]) -> None:
    for waiter, err in batch:
        future = waiter.future
        if future.done():  # the request gave up on it (timeout) and spooled its records
            if waiter.on_late is not None:
                waiter.on_late(err is None)
            continue
        if err is None:
            future.set_result(None)
        else:
            future.set_exception(PublishUnavailable(f"Kafka rejected the record: {err.str()}"))


_default: Publisher | None = None
_lock = threading.Lock()


def get_publisher() -> Publisher:
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                from django.conf import settings

                _default = Publisher(
                    bootstrap=settings.KAFKA_BOOTSTRAP_SERVERS,
                    topic=settings.KAFKA_TOPIC,
                    ack_timeout=settings.KAFKA_ACK_TIMEOUT,
                    linger_ms=settings.KAFKA_LINGER_MS,
                    message_timeout_ms=settings.KAFKA_MESSAGE_TIMEOUT_MS,
                )
    return _default
