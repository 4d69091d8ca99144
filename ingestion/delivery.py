"""The publish step of the intake (SPEC §6): every accepted event is in Kafka, or in the durable
local spool, before the client hears 200.

``submit`` starts a request's records on their way and ``settle`` waits for the outcome:
- *direct*: queued in the producer, answered once Kafka acknowledges them (``acks=all``);
- *spooled*: appended to the spool (ingestion.spool) and answered once they are fsync'd, when Kafka
  is known to be unreachable, when the spool still holds earlier events (so nothing overtakes them),
  or as the fallback of a direct publish that Kafka did not acknowledge within KAFKA_ACK_TIMEOUT.
Only when neither can take the records (the spool at SPOOL_MAX_BYTES, or its disk failing) is the
answer 503.

The drainer, a task on the event loop, replays the spool to Kafka in arrival order, a batch at a time,
each batch acknowledged before the cursor moves past it and before the next is sent, so one
visitor's events stay in order. It also drains the directories of dead processes. Once the spool is
empty and Kafka acknowledges again, requests go direct again.

Duplicates. A record the producer was still retrying when its request gave up may be delivered after
all: if that happens before the drainer reaches its spooled copy, the copy is skipped (``_forget``);
the drainer waits for such outcomes before replaying. A crash between Kafka's acknowledgement of a
drained batch and the cursor's move replays that batch. Both are counted in the README's delivery
guarantees, measured by the fault suite (tests/faults/).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ingestion import metrics
from ingestion.publisher import Publisher, PublishUnavailable, get_publisher
from ingestion.records import Record
from ingestion.spool import Spool, SpoolDirectory, Spooled

logger = logging.getLogger(__name__)

DRAIN_BATCH = 2000
DRAIN_ACK_TIMEOUT = 15.0
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0)
ORPHAN_SCAN_SECONDS = 10.0


@dataclass(slots=True)
class Pending:
    """One request's records on their way."""

    records: Sequence[Record]
    spooled: bool  # on the spool's way (else: the producer's)
    acknowledged: asyncio.Future[Any] | None = None  # the producer's acknowledgement, or the spool's fsync (seqs)
    gave_up: bool = False  # the request stopped waiting for the producer and spooled the records
    late_delivered: bool = False  # ...which the producer then delivered after all
    seqs: range = field(default_factory=lambda: range(0))


class Delivery:
    def __init__(self, publisher: Publisher, spool: Spool) -> None:
        self.publisher = publisher
        self.spool = spool
        self.spooling = spool.depth > 0  # earlier events wait in the spool: new ones queue behind them
        self._forgotten: set[int] = set()  # spooled seqs that Kafka has after all
        self._late = 0  # given up on, outcome unknown yet
        self._in_flight: set[asyncio.Future[None]] = set()  # direct publishes awaited by requests
        self._appended = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None
        self.closing = False

    def start(self) -> None:
        """Start the drainer on the running loop (at start-up, and by the first request otherwise)."""
        if self._drainer is None or self._drainer.done():
            self._appended = asyncio.Event()  # of this loop (a test may run several, one after another)
            self._drainer = asyncio.get_running_loop().create_task(self._drain_forever(), name="spool-drainer")

    # -- the request's side ---------------------------------------------------------------------

    def submit(self, records: Sequence[Record]) -> Pending:
        if self._drainer is None or self._drainer.done():
            self.start()
        if self.spooling or not self.publisher.reachable or self.closing:
            return self._to_spool(records)
        pending = Pending(records, spooled=False)
        try:
            pending.acknowledged = self.publisher.enqueue(records, on_late=partial(self._late_outcome, pending))
        except PublishUnavailable:
            return self._to_spool(records)
        return pending

    async def settle(self, pending: Pending) -> None:
        """Return once the records are safe (acknowledged or fsync'd); Unavailable when neither."""
        assert pending.acknowledged is not None
        if not pending.spooled:
            self._in_flight.add(pending.acknowledged)
            try:
                await self.publisher.wait(pending.acknowledged)
                return
            except PublishUnavailable as exc:
                logger.warning("kafka did not take %d record(s) (%s): spooling them", len(pending.records), exc.message)
                self._give_up_on(pending)
                spooled = self._to_spool(pending.records)
            finally:
                self._in_flight.discard(pending.acknowledged)
            pending.acknowledged, pending.spooled = spooled.acknowledged, True
        await self._spooled(pending)

    def _to_spool(self, records: Sequence[Record]) -> Pending:
        self.spooling = True
        future = self.spool.append(records)  # SpoolFull (503) when at the cap
        self._appended.set()
        return Pending(records, spooled=True, acknowledged=future)

    async def _spooled(self, pending: Pending) -> None:
        assert pending.acknowledged is not None
        seqs = await pending.acknowledged
        if isinstance(seqs, range):
            pending.seqs = seqs
            if pending.late_delivered:
                self._forgotten.update(seqs)
        self._report()

    def _give_up_on(self, pending: Pending) -> None:
        """The request stops waiting for the producer and spools the records; if the producer
        delivers them after all, the spooled copies are skipped (if the drainer has not sent them)."""
        pending.gave_up = True
        self._late += 1

    def _late_outcome(self, pending: Pending, delivered: bool) -> None:
        if not pending.gave_up:
            return  # the request was cancelled (its client left): nothing was spooled
        self._late -= 1
        if delivered:
            pending.late_delivered = True
            self._forgotten.update(pending.seqs)

    def give_up_now(self) -> None:
        """Shutdown's deadline: every request still waiting for Kafka spools its records instead."""
        self.closing = True
        for future in list(self._in_flight):
            if not future.done():
                future.set_exception(PublishUnavailable("shutting down: spooling instead of waiting for Kafka"))

    # -- the drainer ----------------------------------------------------------------------------

    async def _drain_forever(self) -> None:
        attempt = 0
        orphans: list[SpoolDirectory] = []
        next_scan = 0.0
        late_wait_until: float | None = None
        while True:
            try:
                self._report()
                if time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + ORPHAN_SCAN_SECONDS
                    orphans += await asyncio.to_thread(self.spool.orphans)
                directory = next((o for o in orphans if o.depth), None) or self.spool.own
                if not directory.depth and directory is self.spool.own:
                    if self.spooling and not self.publisher.reachable and await self._kafka_answers():
                        self.publisher.reachable = True  # nothing left to drain, and Kafka answers again
                    idle = not self.spool.depth and not self.spool.appending  # again: that took a while
                    if self.spooling and self.publisher.reachable and idle:
                        self.spooling = False  # drained: new events go straight to Kafka again
                        logger.info("spool drained; publishing directly again")
                    self._appended.clear()
                    await _wait(self._appended, 1.0)
                    continue
                if not await self._kafka_answers():
                    await asyncio.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
                    attempt += 1
                    continue
                if self._late:
                    # Records a request gave up on may still be delivered: hear of them first (at the
                    # latest, librdkafka gives up on them after its message timeout).
                    if late_wait_until is None:
                        late_wait_until = time.monotonic() + self.publisher.message_timeout_s + 1.0
                    if time.monotonic() < late_wait_until:
                        await asyncio.sleep(0.1)
                        continue
                late_wait_until = None
                if await self._drain_batch(directory):
                    attempt = 0
                else:
                    await asyncio.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
                    attempt += 1
                if directory is not self.spool.own and not directory.depth:
                    directory.release()
                    orphans.remove(directory)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("spool drainer failed; retrying")
                await asyncio.sleep(1.0)

    async def _kafka_answers(self) -> bool:
        if self.publisher.reachable:
            return True
        try:
            await asyncio.to_thread(self.publisher.check, 1.0)
        except Exception:
            return False
        return True

    async def _drain_batch(self, directory: SpoolDirectory) -> bool:
        durable = self.spool.durable if directory is self.spool.own else None
        batch: list[Spooled] = await asyncio.to_thread(directory.read, DRAIN_BATCH, durable)
        if not batch:
            return True
        records = [spooled.record for spooled in batch if spooled.seq not in self._forgotten]
        if records:
            future = self.publisher.enqueue(records)
            try:
                await asyncio.wait_for(asyncio.shield(future), DRAIN_ACK_TIMEOUT)
            except (PublishUnavailable, TimeoutError) as exc:
                self.publisher.reachable = False
                logger.warning("spool drain: kafka did not take %d record(s): %s", len(records), exc)
                return False
            self.publisher.reachable = True
        await asyncio.to_thread(directory.commit, batch, durable)
        if directory is self.spool.own:
            self._forgotten.difference_update(spooled.seq for spooled in batch)
        metrics.spool_drained(len(records))
        self._report()
        return True

    def _report(self) -> None:
        spool = self.spool
        metrics.spool_state(
            depth=spool.depth, size_bytes=spool.own.bytes, oldest_age_seconds=spool.oldest_age_seconds()
        )

    async def aclose(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()
            try:
                await self._drainer
            except (asyncio.CancelledError, Exception):
                pass


async def _wait(event: asyncio.Event, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass


_default: Delivery | None = None


def get_delivery() -> Delivery:
    global _default
    if _default is None:
        from django.conf import settings

        spool = Spool(Path(settings.SPOOL_DIR), max_bytes=settings.SPOOL_MAX_BYTES)
        _default = Delivery(get_publisher(), spool)
    return _default
