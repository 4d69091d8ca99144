"""daphne, adapted: the connection and request classes daphne builds (daphne.http_protocol).

What HTTP/1.1 parsing does before the application sees a request is Twisted's, and some of it is
unsafe on the public internet: a body of any size is spooled to a temporary file and then read
whole into memory by daphne before the application can refuse it; every byte resets a 60 s idle
timer, so a client that trickles its headers or body is never cut off; too many headers get a bare
``400`` and one header line over 16 KB gets no answer at all. ``tune_requests`` replaces both
classes so that, when the application gives it a ``Wire`` (ingestion.handler.WireLimits):

- a ``Content-Length`` over the path's limit is refused as soon as the headers end, and a chunked
  body as soon as it passes the limit; a body within it is kept in memory (never a temporary file);
- a request's headers must arrive within ``headers_timeout`` of its first byte, and its body within
  ``body_timeout`` of its headers (``408``);
- headers over Twisted's limits (16 KB, 500 lines) get ``431``, a request line over 16 KB ``414``,
  and what HTTP cannot parse ``400``, each in the application's error shape.

A refused request gets its answer at once with ``Connection: close``; the connection then stays open
for what the client is still sending, read and discarded (a client that writes its whole body before
it reads, as most do, would otherwise see a reset instead of the answer), until the client closes,
sends nothing for ``LINGER_IDLE_SECONDS``, or ``body_timeout`` passes.

What this relies on, checked by tests/test_adapters.py against the pinned daphne and Twisted:
- ``HTTPFactory.buildProtocol`` looks ``http_protocol.WebRequest`` up by name for every connection,
  and builds its protocol with the factory's ``protocol`` attribute, which Twisted sets to a function
  wrapping one ``HTTPChannel`` in ``http._GenericHTTPChannelProtocol``;
- ``WebRequest`` is a Twisted ``Request`` whose ``__init__`` takes ``parsePOSTFormSubmission``;
- ``WebRequest.finish`` ends a request, ``self.server.connections`` maps each request to a dict with
  its ``application_instance`` (an asyncio future), and daphne's once-a-second
  ``application_checker`` removes finished ones;
- ``HTTPChannel`` (a ``LineReceiver``) calls ``allHeadersReceived`` when the headers end, with the
  request target in ``_path`` and the announced length in ``length`` (``None`` when chunked), then
  ``Request.gotLength``; each piece of body goes to ``Request.handleContentChunk``; the end of the
  body calls ``allContentReceived``; ``_handlingRequest`` is true while a request is answered;
  ``_receivedHeaderSize``/``_receivedHeaderCount`` count against ``totalHeadersSize``/``maxHeaders``;
  whatever it cannot parse goes to ``_respondToBadRequestAndDisconnect``, and a line over
  ``MAX_LENGTH`` to ``lineLengthExceeded``; ``_command`` exists once a request line was parsed;
- ``daphne.access.AccessLogGenerator.__call__(protocol, action, details)`` writes each access line.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from io import BytesIO
from typing import Any, Protocol
from urllib.parse import unquote

logger = logging.getLogger(__name__)

DEFAULT_HEADERS_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
# A refused client that sends nothing for this long is not sending its body any more.
LINGER_IDLE_SECONDS = 2.0


class Refusal(enum.Enum):
    """Why a request was refused on the wire."""

    BODY_TOO_LARGE = "body too large"
    HEADERS_TOO_LARGE = "headers too large"
    REQUEST_LINE_TOO_LONG = "request line too long"
    HEADERS_TIMEOUT = "headers timeout"
    BODY_TIMEOUT = "body timeout"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class WireAnswer:
    """An answer written straight to the connection: a status, header lines and a body."""

    status: int
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes


class Wire(Protocol):
    """What the application tells the connection before a request reaches it."""

    def body_limit(self, path: str) -> int:
        """The most bytes a body to ``path`` may weigh on the wire."""

    def refusal(self, reason: Refusal, path: str, *, limit: int, timeout: float) -> WireAnswer:
        """The answer to a request refused for ``reason`` (``path`` is ``""`` before it is known)."""


@dataclass
class _Config:
    wire: Wire | None = None
    headers_timeout: float = DEFAULT_HEADERS_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT


_config = _Config()


def tune_requests(
    *,
    wire: Wire | None = None,
    headers_timeout: float = DEFAULT_HEADERS_TIMEOUT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
) -> None:
    """Make daphne build its connections and requests with the gateway's classes.

    Always, both measured with bench/run.py:

    - Twisted's ``parsePOSTFormSubmission=False``. daphne hands the application the raw body and
      never reads the form arguments Twisted parses from it, yet Twisted parses every POST's
      Content-Type with the email package (~30 us, about a fifth of a track request's CPU) and a
      form or multipart body whole, on the event loop, before the gateway can refuse it with 415.
    - A request that ended cleanly leaves daphne's connection table when its application returns,
      not at the next run of daphne's once-a-second reaper. Each held ~35 objects: at 3,000
      requests/s, ~100k that every young garbage collection walked (3-4 ms, five times a second,
      and 30-50 ms for a gen-1 collection), which set the p99.

    With ``wire``: the body limits, deadlines and answers of the module's docstring (without it,
    bench/bare_asgi.py's baseline and the test probes, Twisted's own handling of bodies and headers).

    Called by signal_gateway.asgi on import; harmless when daphne is not serving.
    """
    from daphne import http_protocol

    log_access_lines_without_query()
    _config.wire = wire
    _config.headers_timeout = headers_timeout
    _config.body_timeout = body_timeout
    if getattr(http_protocol.WebRequest, "parses_forms", True) is False:
        return
    request_class, channel_factory = _classes(http_protocol)
    http_protocol.WebRequest = request_class  # HTTPFactory.buildProtocol looks the name up per connection
    http_protocol.HTTPFactory.protocol = channel_factory


def _classes(http_protocol: Any) -> tuple[type, Any]:
    from twisted.web import http

    class WebRequest(http_protocol.WebRequest):  # type: ignore[misc]  # daphne ships no types
        parses_forms = False
        _body_bytes = 0

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("parsePOSTFormSubmission", False)
            super().__init__(*args, **kwargs)

        def gotLength(self, length: int | None) -> None:
            if getattr(self.channel, "body_limit", None) is None:
                super().gotLength(length)
            else:
                # Within the limit, which is at most a few MB: memory, never a temporary file (a
                # slow client would hold its descriptor and a disk's worth of space).
                self.content = BytesIO()

        def handleContentChunk(self, data: bytes) -> None:
            channel = self.channel
            limit = getattr(channel, "body_limit", None)
            if limit is not None:
                if channel.refused:
                    return
                self._body_bytes += len(data)
                if self._body_bytes > limit:
                    channel.refuse(Refusal.BODY_TOO_LARGE)
                    return
            self.content.write(data)

        def finish(self) -> None:
            super().finish()
            details = self.server.connections.get(self)
            instance = details.get("application_instance") if details else None
            if instance is not None:
                instance.add_done_callback(self._forget)

        def _forget(self, instance: Any) -> None:
            # What daphne's once-a-second application_checker would do for a request that ended
            # cleanly; an exception or a cancellation is left to it, to log and handle. Twisted drops
            # ``channel`` once the request is done with its connection (a pipelined request still
            # waiting its turn keeps it, and may yet be told the connection was lost).
            if getattr(self, "channel", None) is None and not instance.cancelled() and instance.exception() is None:
                self.server.connections.pop(self, None)

    class Channel(http.HTTPChannel):  # type: ignore[misc]  # Twisted's class is untyped here
        refused = False
        body_limit: int | None = None
        _path_text = ""
        # What the request being read waits for: its headers, its body, or nothing (None). Its
        # deadline is set only when a read ends with the request still incomplete: a request that
        # arrives whole in one read, as nearly all do, costs no timer.
        _awaiting: Refusal | None = None
        _deadline: Any = None  # the running deadline's DelayedCall
        _linger_end: Any = None

        # -- deadlines -----------------------------------------------------------------------

        def dataReceived(self, data: bytes) -> None:
            if self._awaiting is None and not self._handlingRequest and _config.wire is not None:
                self._awaiting = Refusal.HEADERS_TIMEOUT  # the first byte of a request
            super().dataReceived(data)
            if self._awaiting is not None and self._deadline is None and not self.refused:
                headers = self._awaiting is Refusal.HEADERS_TIMEOUT
                seconds = _config.headers_timeout if headers else _config.body_timeout
                if seconds > 0:
                    self._deadline = self._later(seconds, self._expired, self._awaiting)

        def _later(self, seconds: float, function: Any, *args: Any) -> Any:
            later: Any = self.callLater  # the reactor's (HTTPFactory.buildProtocol sets it), or a test's clock
            return later(seconds, function, *args)

        def _stop_deadline(self) -> None:
            if self._deadline is not None:
                if self._deadline.active():
                    self._deadline.cancel()
                self._deadline = None

        def _expired(self, reason: Refusal) -> None:
            self._deadline = None
            self.refuse(reason)

        # -- the request's phases ------------------------------------------------------------

        def allHeadersReceived(self) -> None:
            wire = _config.wire
            if wire is None:
                super().allHeadersReceived()
                return
            self._stop_deadline()
            self._path_text = _path_of(self._path)
            self.body_limit = limit = _call(wire.body_limit, self._path_text, default=None)
            if self.length is not None and limit is not None and self.length > limit:
                self.refuse(Refusal.BODY_TOO_LARGE)  # before Twisted answers "100 Continue"
                return
            self._awaiting = Refusal.BODY_TIMEOUT if self.length != 0 else None
            super().allHeadersReceived()

        def allContentReceived(self) -> None:
            if self.refused:
                return
            self._stop_deadline()
            self._awaiting = None
            super().allContentReceived()

        def requestDone(self, request: Any) -> None:
            self.body_limit, self._path_text = None, ""
            super().requestDone(request)

        def connectionLost(self, reason: Any = None) -> None:
            self._stop_deadline()
            if self._linger_end is not None and self._linger_end.active():
                self._linger_end.cancel()
            super().connectionLost(reason)

        # -- what Twisted cannot parse -------------------------------------------------------

        def _respondToBadRequestAndDisconnect(self) -> None:
            if _config.wire is None:
                super()._respondToBadRequestAndDisconnect()
            elif self._receivedHeaderSize > self.totalHeadersSize or self._receivedHeaderCount > self.maxHeaders:
                self.refuse(Refusal.HEADERS_TOO_LARGE)
            else:
                self.refuse(Refusal.MALFORMED)

        def lineLengthExceeded(self, line: bytes) -> None:
            if _config.wire is None:
                super().lineLengthExceeded(line)
            elif hasattr(self, "_command"):
                self.refuse(Refusal.HEADERS_TOO_LARGE)
            else:
                self.refuse(Refusal.REQUEST_LINE_TOO_LONG)

        # -- refusing ------------------------------------------------------------------------

        def refuse(self, reason: Refusal) -> None:
            """Answer now, in the application's words, and read no more of this connection."""
            if self.refused or self.transport is None:
                return
            self.refused = True
            self._stop_deadline()
            answer = _answer_for(reason, self._path_text, self.body_limit)
            head = [b"HTTP/1.1 %d %s\r\n" % (answer.status, HTTPStatus(answer.status).phrase.encode())]
            head.extend(name + b": " + value + b"\r\n" for name, value in answer.headers)
            head.append(b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(answer.body))
            transport: Any = self.transport  # typed as zope's ITransport, whose methods mypy misreads
            transport.write(b"".join([*head, answer.body]))
            self.persistent = False
            # Whatever the line parser, the body decoder or the socket hands over from now on is dropped.
            self.dataReceived = self.lineReceived = self.rawDataReceived = self._discard  # type: ignore[method-assign]
            lose_write = getattr(transport, "loseWriteConnection", None)
            if lose_write is None:
                self.loseConnection()
                return
            self._networkProducer.resumeProducing()  # keep reading, to discard
            lose_write()  # the answer, then end of file: the client knows there is no more
            self._linger_end = self._later(LINGER_IDLE_SECONDS, self._stop_lingering)
            self._deadline = self._later(max(_config.body_timeout, LINGER_IDLE_SECONDS), self._stop_lingering)

        def _discard(self, data: bytes = b"") -> None:
            if self._linger_end is not None and self._linger_end.active():
                self._linger_end.reset(LINGER_IDLE_SECONDS)

        def _stop_lingering(self) -> None:
            if self.transport is not None:
                self.transport.abortConnection()

    def build_channel(factory: Any) -> Any:
        # What Twisted's HTTPFactory.protocol does, with the gateway's channel.
        return http._GenericHTTPChannelProtocol(Channel())

    return WebRequest, build_channel


def _path_of(target: bytes) -> str:
    """The path as daphne gives it to the application: before the query, percent-decoded."""
    return unquote(target.split(b"?", 1)[0].decode("ascii", "replace"))


def _call(function: Any, *args: Any, default: Any) -> Any:
    try:
        return function(*args)
    except Exception:
        logger.exception("the application's wire limits failed; the request goes on unlimited")
        return default


_PLAIN_STATUS = {
    Refusal.BODY_TOO_LARGE: 413,
    Refusal.HEADERS_TOO_LARGE: 431,
    Refusal.REQUEST_LINE_TOO_LONG: 414,
    Refusal.HEADERS_TIMEOUT: 408,
    Refusal.BODY_TIMEOUT: 408,
    Refusal.MALFORMED: 400,
}


def _answer_for(reason: Refusal, path: str, limit: int | None) -> WireAnswer:
    wire = _config.wire
    timeout = _config.body_timeout if reason is Refusal.BODY_TIMEOUT else _config.headers_timeout
    if wire is not None:
        try:
            return wire.refusal(reason, path, limit=limit or 0, timeout=timeout)
        except Exception:
            logger.exception("the application could not word a refusal (%s)", reason.value)
    return WireAnswer(_PLAIN_STATUS[reason], [(b"Content-Type", b"text/plain")], reason.value.encode())


def log_access_lines_without_query() -> None:
    """daphne's access log (``daphne -v 1``, ``ACCESS_LOG=1``) writes each request's whole URI to
    stdout, and a query string carries pixel keys (``wk``), webhook source ids and pixel properties
    (often an email address). Its lines go through the ``daphne.access`` logger instead, as JSON
    like every other line, with the path and without the query. Patched on the class because
    daphne's CLI builds its instance after loading the application."""
    from daphne import access

    if getattr(access.AccessLogGenerator, "logs_without_query", False):
        return
    access_logger = logging.getLogger("daphne.access")

    def log_action(self: Any, protocol: str, action: str, details: dict[str, Any]) -> None:
        path = str(details.get("path", ""))
        fields = {
            "protocol": protocol,
            "action": action,
            "method": details.get("method"),
            "path": path.split("?", 1)[0],
            "status": details.get("status"),
            "size": details.get("size"),
            "client": details.get("client"),
        }
        if details.get("time_taken") is not None:
            fields["duration_ms"] = round(details["time_taken"] * 1000, 3)
        verb = fields["method"] if protocol == "http" else f"WS{action.upper()}"
        access_logger.info("%s %s %s", verb, fields["path"], fields["status"] or "-", extra=fields)

    access.AccessLogGenerator.__call__ = log_action
    access.AccessLogGenerator.logs_without_query = True
