"""The one intake sequence every event goes through, whichever input it came by.

    read -> authenticate -> verify -> origin -> identity -> envelope per event -> publish -> count -> answer

An input (browser, server, batch, pixel, webhook) is a small adapter, an ``Input``, that declares
where its key comes from, how it reads its events from the request, its source kind, whether it
sets identity cookies and how it answers (JSON, a per-item batch report, or the GIF). ``run`` is the
sequence, written once; a step that every event must go through is added here, once.

Every step raises typed errors (ingestion.errors); ``run`` hands them, with the CORS headers the
sequence decided on, to ``answers.refusal``, the one place an error becomes HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from ingestion import answers, auth, consent, cors, event_types, identity, metrics, payload, rejected
from ingestion.answers import Answer
from ingestion.client import request_facts
from ingestion.dedup import get_dedup
from ingestion.delivery import Pending, get_delivery
from ingestion.envelope import RequestFacts, build_envelope
from ingestion.errors import ApiError, InternalError, PayloadTooLarge, RateLimited, Unavailable
from ingestion.ratelimit import get_rate_limiter
from ingestion.records import Record, to_record
from pipelines.keystore import PipelineSnapshot

logger = logging.getLogger(__name__)

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
# The visitor of an input that sets cookies: their identity and the request's click IDs.
Visitor = tuple[identity.Identity, dict[str, str]] | None


class Input:
    """What one input declares; the defaults are a JSON body with the key in a header or the body."""

    source_kind = ""
    answer = Answer.JSON
    cors = False  # answers pages in browsers: checks the origin, sends CORS headers
    sets_cookies = False  # mints the visitor's identity cookies
    body_limit = payload.MAX_EVENT_BYTES  # after decompression
    too_large: type[ApiError] = PayloadTooLarge
    max_depth: int | None = payload.MAX_DEPTH  # None: the input checks nesting itself, part by part

    def read(self, request: HttpRequest) -> Any:
        """The request's content, parsed: by default its body as a JSON object."""
        meta = request.META
        return payload.decode_json_body(
            request.body,
            content_type=meta.get("CONTENT_TYPE", ""),
            content_encoding=meta.get("HTTP_CONTENT_ENCODING", ""),
            limit=self.body_limit,
            too_large=self.too_large,
            max_depth=self.max_depth,
        )

    async def authenticate(self, request: HttpRequest, content: Any) -> PipelineSnapshot:
        """Where the key comes from: by default ``Authorization`` (Bearer or Basic), or ``writeKey`` in the body."""
        return await auth.authenticate(auth.key_from_request(request.META, content))

    def verify(self, request: HttpRequest, content: Any, pipeline: PipelineSnapshot) -> None:
        """A signature to check once the pipeline is known; none by default."""

    def click_ids(self, request: HttpRequest, content: Any) -> dict[str, str]:
        """The request's ad click IDs, for an input that sets cookies (``_fbc``, ``_gcl_aw``)."""
        return {}

    def facts(
        self, request: HttpRequest, content: Any, pipeline: PipelineSnapshot, received_at: datetime, visitor: Visitor
    ) -> RequestFacts:
        """What the request says about its sender, for every event it carries."""
        if visitor is None:
            return request_facts(request, pipeline.pipeline_id, self.source_kind, received_at)
        identity_, click_ids = visitor
        return request_facts(
            request, pipeline.pipeline_id, self.source_kind, received_at,
            anonymous_id=identity_.dfid, vendor_ids=identity_.vendor_ids, click_ids=click_ids,
        )  # fmt: skip

    def events(self, request: HttpRequest, content: Any, pipeline: PipelineSnapshot) -> Sequence[Any]:
        """The events to envelope: each a dict, or a Refused item."""
        return (content,)

    def envelope(self, event: dict[str, Any], facts: RequestFacts) -> dict[str, Any]:
        return build_envelope(event, event.get("type") or event_types.TRACK, facts, event_click_ids(event))

    def refused_payload(self, request: HttpRequest) -> bytes:
        """What the client sent, for the rejected-events topic: the body, decompressed (its start)."""
        return payload.start_of_body(
            request.body,
            content_encoding=request.META.get("HTTP_CONTENT_ENCODING", ""),
            size=rejected.MAX_PAYLOAD_BYTES,
        )


class Refused(NamedTuple):
    """An item of a request that was refused as it was read (a batch item that is not an object)."""

    error: ApiError
    item: Any


def event_click_ids(event: dict[str, Any]) -> dict[str, str]:
    """One event's click IDs from its own ``context.page`` (server-side events carry them per event)."""
    context = event.get("context")
    return identity.click_ids_from_page(context.get("page") if isinstance(context, dict) else None)


class _Intake:
    """What the answer will carry, filled in as the sequence goes."""

    __slots__ = (
        "received_at", "pipeline", "headers", "cookies", "pending", "marks", "accepted", "duplicates",
        "in_flight_copy", "errors",
    )  # fmt: skip

    def __init__(self) -> None:
        self.received_at = datetime.now(UTC)
        self.pipeline: PipelineSnapshot | None = None  # once authenticated
        self.headers: Mapping[str, str] = _NO_HEADERS
        self.cookies: list[tuple[bytes, bytes]] = []
        self.pending: Pending | None = None  # the records on their way to Kafka or the spool
        self.marks: list[bytes] = []  # dedup marks this request placed
        self.accepted = 0  # events answered as accepted: published, or duplicates of published ones
        self.duplicates = 0
        self.in_flight_copy = False  # another request is delivering a copy of one of these events
        self.errors: list[dict[str, Any]] = []


async def run(input: Input, request: HttpRequest) -> HttpResponse:
    intake = _Intake()
    origin = request.META.get("HTTP_ORIGIN", "") if input.cors else ""
    if origin:
        # Until the pipeline is known, errors (400, 401, 413, 415) are readable by the page, so an
        # SDK sees the status instead of a network failure it would retry forever; no credentials.
        intake.headers = cors.unverified_headers(origin)
    try:
        await _accept(input, request, intake, origin)
        if intake.pending is not None:
            await _publish(intake.pending, intake.marks)
        if intake.in_flight_copy:
            raise Unavailable("a copy of this event is still being delivered; retry to learn how that went")
    except ApiError as error:
        _count_refused(input, error)
        if intake.pipeline is not None and not isinstance(error, Unavailable):
            _report(input, intake, error, input.refused_payload(request))
        return answers.refusal(error, answer=input.answer, headers=intake.headers)
    except Exception:
        logger.exception("unexpected error on %s", request.path)
        failure = InternalError("an internal error occurred; the event was not accepted")
        return answers.refusal(failure, answer=input.answer, headers=intake.headers)
    _count_accepted(input, intake)
    return answers.success(
        input.answer, accepted=intake.accepted, errors=intake.errors, headers=intake.headers, cookies=intake.cookies
    )


async def _accept(input: Input, request: HttpRequest, intake: _Intake, origin: str) -> None:
    """Every step up to the publish. The parsed content and its envelopes die with this frame:
    while a batch waits for its acknowledgements only its records stay alive, not its events' dicts
    (bench/inprocess.py, 50 batches in flight: event-loop CPU per event 9x -> 5.4x its orjson baseline)."""
    received_at = intake.received_at
    content = input.read(request)
    pipeline = intake.pipeline = await input.authenticate(request, content)
    input.verify(request, content, pipeline)
    if origin:
        intake.headers = _NO_HEADERS  # a refused origin gets no CORS headers
        intake.headers = cors.check_origin(pipeline, origin)

    visitor: Visitor = None
    if input.sets_cookies:
        click_ids = input.click_ids(request, content)
        permits = consent.cookie_permits(content, request.META, required=pipeline.consent_required)
        visitor = (
            identity.resolve_identity(
                request.COOKIES, click_ids, now_ms=int(received_at.timestamp() * 1000), permits=permits
            ),
            click_ids,
        )
    facts = input.facts(request, content, pipeline, received_at, visitor)
    facts.apply_privacy(ip_mode=pipeline.ip_mode, consent_required=pipeline.consent_required)
    records, message_ids = _envelopes(input, request, content, pipeline, facts, intake)
    del content  # the records are all that is needed from here on

    if records:
        try:
            await get_rate_limiter().admit(pipeline.pipeline_id, pipeline.rate_limit_rps, len(records))
        except RateLimited:
            metrics.events(input.source_kind, "rate_limited", len(records))
            raise
        if pipeline.dedup_enabled:
            claim = await get_dedup().claim(pipeline.pipeline_id, message_ids)
            if claim.duplicates or claim.in_flight:
                records = [record for record, publish in zip(records, claim.publish, strict=True) if publish]
            intake.marks, intake.duplicates, intake.in_flight_copy = claim.keys, claim.duplicates, claim.in_flight
        if records:
            intake.pending = get_delivery().submit(records)
    intake.accepted = len(records) + intake.duplicates
    if visitor is not None:
        intake.cookies = identity.cookie_headers(visitor[0], pipeline.cookie_domain or settings.COOKIE_DOMAIN or None)


def _envelopes(
    input: Input, request: HttpRequest, content: Any, pipeline: PipelineSnapshot, facts: RequestFacts, intake: _Intake
) -> tuple[list[Record], list[str | None]]:
    """Each event's record, and its messageId when the client gave one (only those are deduplicated:
    the others got a new UUID). A bad event refuses the request, or, in a batch, is reported."""
    records: list[Record] = []
    message_ids: list[str | None] = []
    reports_items = input.answer is Answer.BATCH_REPORT
    for index, event in enumerate(input.events(request, content, pipeline)):
        try:
            if type(event) is Refused:
                raise event.error
            envelope = input.envelope(event, facts)
            records.append(to_record(envelope))
            message_ids.append(envelope["messageId"] if event.get("messageId") else None)
        except ApiError as exc:
            if not reports_items:
                raise
            intake.errors.append({"index": index, "code": exc.code, "message": exc.message})
            item = event.item if type(event) is Refused else event
            _report(input, intake, exc, payload.encode(item))
    return records, message_ids


async def _publish(pending: Pending, marks: list[bytes]) -> None:
    """Wait until the records are in Kafka or the spool; the dedup marks follow the outcome."""
    try:
        await get_delivery().settle(pending)
    except BaseException:
        get_dedup().settle(marks, delivered=False)  # a retry of these events must be accepted
        raise
    get_dedup().settle(marks, delivered=True)


def _count_accepted(input: Input, intake: _Intake) -> None:
    kind = input.source_kind
    pending = intake.pending
    published = intake.accepted - intake.duplicates
    metrics.events(kind, "accepted", published)
    if pending is not None and pending.spooled:
        metrics.events(kind, "spooled", published)
    if intake.duplicates:
        metrics.events(kind, "duplicate", intake.duplicates)
    if intake.errors:
        metrics.events(kind, "rejected", len(intake.errors))


def _report(input: Input, intake: _Intake, error: ApiError, sent: bytes) -> None:
    """A known pipeline's refused event goes to the rejected-events topic (best effort, never awaited)."""
    assert intake.pipeline is not None
    rejected.report(
        pipeline_id=intake.pipeline.pipeline_id,
        source_kind=input.source_kind,
        code=error.code,
        message=error.message,
        received_at=intake.received_at,
        payload=sent,
    )


def _count_refused(input: Input, error: ApiError) -> None:
    kind = input.source_kind
    if input.answer is Answer.GIF:
        metrics.pixel_dropped(error.code)
        logger.info("pixel dropped: %s", error.code)  # the code only: a message may quote the query
    if isinstance(error, RateLimited):
        return  # counted as rate_limited where it was refused
    if input.answer is Answer.GIF:
        metrics.events(kind, "dropped")
    elif input.answer is Answer.JSON:
        metrics.events(kind, "rejected")
