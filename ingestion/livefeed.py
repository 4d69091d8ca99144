"""The live tail of ``raw-events`` and ``rejected-events`` behind the admin's live view (issue 10).

One reader per process, shared by every open live socket: a thread whose confluent-kafka
``Consumer`` is assigned every partition of both topics from their current end. Assigned, not
subscribed: a consumer-group join takes ~20 s on Tansu and would make each viewer a member of a
group for nothing; nothing is committed. The reader keeps only records whose ``pipeline_id`` header
somebody watches, turns each into the WebSocket message's text, and hands each poll's messages to
the watcher's event loop in one ``call_soon_threadsafe``. It starts with the first watcher and
stops (closing its consumer) within a poll of the last one leaving.

Nothing is added to the ingestion path: the reader only reads what the gateway already published.
Polling blocks, so it never runs on the event loop.

Messages (one JSON object each)::

    {"status": "accepted", "envelope": {…the raw-events record…}}
    {"status": "rejected", "reason": "<error code>", "message": "…", "payload": "<first 8 KB>",
     "truncated": false, "receivedAt": "…", "source": {"kind": "…", "id": …}}
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2
BATCH = 500
# How often the reader looks for partitions it does not read yet (a topic created after it started).
REFRESH_SECONDS = 10.0
# How long a new watcher waits for the reader to find the topics' ends before it is let in anyway
# (Kafka down: the view then shows events from whenever the reader gets there).
POSITION_TIMEOUT = 5.0
# Messages waiting for one socket; past it the oldest go (a browser cannot show thousands a second).
WATCHER_QUEUE = 1000


@dataclass(eq=False)
class Watcher:
    """One live socket's subscription to one pipeline's events."""

    pipeline_id: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(WATCHER_QUEUE))
    dropped: int = 0

    async def next_message(self) -> str:
        return await self.queue.get()

    def _deliver(self, messages: list[str]) -> None:
        """On the watcher's loop."""
        for message in messages:
            if self.queue.full():
                self.queue.get_nowait()
                self.dropped += 1
            self.queue.put_nowait(message)


class LiveFeed:
    """Watchers by pipeline and the reader thread that serves them."""

    def __init__(self, *, bootstrap: str, accepted_topic: str, rejected_topic: str) -> None:
        self.bootstrap = bootstrap
        self.formatters: dict[str, Callable[[bytes], str | None]] = {
            accepted_topic: accepted_message,
            rejected_topic: rejected_message,
        }
        self._lock = threading.Lock()
        # Replaced whole (never mutated) under the lock, so the reader reads it without one.
        self._watching: dict[str, tuple[Watcher, ...]] = {}
        self._reader: _Reader | None = None

    async def watch(self, pipeline_id: str) -> Watcher:
        """A new watcher of the pipeline's events; returns once the reader knows where the topics
        end (or after ``POSITION_TIMEOUT``), so every event published after it arrives."""
        watcher = Watcher(pipeline_id, asyncio.get_running_loop())
        with self._lock:
            watching = dict(self._watching)
            watching[pipeline_id] = (*watching.get(pipeline_id, ()), watcher)
            self._watching = watching
            if self._reader is None:
                self._reader = _Reader(self)
                self._reader.start()
            reader = self._reader
        await asyncio.to_thread(reader.positioned.wait, POSITION_TIMEOUT)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        with self._lock:
            watching = dict(self._watching)
            left = tuple(w for w in watching.get(watcher.pipeline_id, ()) if w is not watcher)
            if left:
                watching[watcher.pipeline_id] = left
            else:
                watching.pop(watcher.pipeline_id, None)
            self._watching = watching

    @property
    def reading(self) -> bool:
        """Whether a reader thread (and its Kafka consumer) is running."""
        with self._lock:
            return self._reader is not None

    def _stop_if_unwatched(self, reader: _Reader) -> bool:
        with self._lock:
            if self._watching:
                return False
            self._reader = None  # a watcher arriving after this starts a new reader
            return True


class _Reader(threading.Thread):
    def __init__(self, feed: LiveFeed) -> None:
        super().__init__(name="live-feed", daemon=True)
        self.feed = feed
        self.positioned = threading.Event()
        self.assigned: set[tuple[str, int]] = set()

    def run(self) -> None:
        consumer = Consumer(consumer_config(self.feed.bootstrap), logger=logging.getLogger("librdkafka"))
        try:
            next_refresh = 0.0
            while not self.feed._stop_if_unwatched(self):
                if time.monotonic() >= next_refresh:
                    self._assign_new_partitions(consumer)
                    # Until the broker has answered once, try again soon: watchers are waiting.
                    next_refresh = time.monotonic() + (REFRESH_SECONDS if self.positioned.is_set() else 1.0)
                if not self.assigned:
                    time.sleep(POLL_SECONDS)
                    continue
                self._fan_out(consumer.consume(BATCH, POLL_SECONDS))
        except Exception:
            logger.exception("the live feed's reader stopped")
            with self.feed._lock:
                if self.feed._reader is self:
                    self.feed._reader = None
        finally:
            self.positioned.set()  # nobody waits on a reader that is gone
            consumer.close()

    def _assign_new_partitions(self, consumer: Consumer) -> None:
        """Partitions seen at the reader's start are read from their end; any that appear later
        (a topic created since) from their beginning, since all of it is newer than the reader."""
        starting = not self.positioned.is_set()
        try:
            metadata = consumer.list_topics(timeout=2.0)
            new: list[TopicPartition] = []
            for topic in self.feed.formatters:
                described = metadata.topics.get(topic)
                if described is None or described.error is not None:
                    continue
                for partition in described.partitions:
                    if (topic, partition) in self.assigned:
                        continue
                    offset = OFFSET_BEGINNING
                    if starting:
                        _low, offset = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=2.0)
                    new.append(TopicPartition(topic, partition, offset))
        except KafkaException as exc:
            logger.warning("live feed: cannot read the topics' partitions yet: %s", exc)
            return
        if new:
            consumer.incremental_assign(new)
            self.assigned.update((tp.topic, tp.partition) for tp in new)
        self.positioned.set()

    def _fan_out(self, messages: list[Message]) -> None:
        watching = self.feed._watching
        formatters = self.feed.formatters
        out: dict[Watcher, list[str]] = {}
        for message in messages:
            if message.error() is not None:
                continue
            pipeline_id = _header(message, "pipeline_id")
            watchers = watching.get(pipeline_id) if pipeline_id else None
            if not watchers:
                continue
            text = formatters[message.topic() or ""](message.value() or b"")
            if text is None:
                continue
            for watcher in watchers:
                out.setdefault(watcher, []).append(text)
        for watcher, texts in out.items():
            try:
                watcher.loop.call_soon_threadsafe(watcher._deliver, texts)
            except RuntimeError:  # its loop is closed: the socket is gone, it will unwatch
                pass


def _header(message: Message, name: str) -> str | None:
    headers = message.headers() or ()
    pairs = headers.items() if isinstance(headers, dict) else headers  # a consumer's are a list
    for key, value in pairs:
        if key == name and value is not None:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


def accepted_message(value: bytes) -> str | None:
    try:
        envelope = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None  # not ours: the gateway only writes JSON envelopes
    return orjson.dumps({"status": "accepted", "envelope": envelope}).decode()


def rejected_message(value: bytes) -> str | None:
    try:
        record: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    return orjson.dumps(
        {
            "status": "rejected",
            "reason": record.get("code"),
            "message": record.get("message"),
            "payload": record.get("payload"),
            "truncated": record.get("truncated", False),
            "receivedAt": record.get("receivedAt"),
            "source": record.get("source"),
        }
    ).decode()


def consumer_config(bootstrap: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "client.id": "signal-gateway-live",
        # Required by the client; never joined (partitions are assigned) and nothing is committed.
        "group.id": f"signal-gateway-live-{os.getpid()}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # Events show up within a poll, not after the broker's default 500 ms fetch wait.
        "fetch.wait.max.ms": 100,
        # The prefetch queue is for a person watching, not a pipeline: 8 MB, not 64 MB.
        "queued.max.messages.kbytes": 8192,
        "socket.keepalive.enable": True,
        "reconnect.backoff.max.ms": 1000,
    }


_default: LiveFeed | None = None
_default_lock = threading.Lock()


def get_feed() -> LiveFeed:
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                from django.conf import settings

                _default = LiveFeed(
                    bootstrap=settings.KAFKA_BOOTSTRAP_SERVERS,
                    accepted_topic=settings.KAFKA_TOPIC,
                    rejected_topic=settings.KAFKA_REJECTED_TOPIC,
                )
    return _default
