"""daphne, adapted: the request class daphne builds per HTTP request (daphne.http_protocol.WebRequest).

What this relies on, checked by tests/test_adapters.py against the pinned daphne:
- ``HTTPFactory.buildProtocol`` looks ``http_protocol.WebRequest`` up by name for every connection,
  so replacing the module attribute takes effect;
- ``WebRequest`` is a Twisted ``Request`` whose ``__init__`` takes ``parsePOSTFormSubmission``;
- ``WebRequest.finish`` ends a request, ``self.server.connections`` maps each request to a dict with
  its ``application_instance`` (an asyncio future), and daphne's once-a-second
  ``application_checker`` removes finished ones;
- ``daphne.access.AccessLogGenerator.__call__(protocol, action, details)`` writes each access line.
"""

from __future__ import annotations

import logging
from typing import Any


def tune_requests() -> None:
    """Make daphne build its requests with two changes, both measured with bench/run.py:

    - Twisted's ``parsePOSTFormSubmission=False``. daphne hands the application the raw body and
      never reads the form arguments Twisted parses from it, yet Twisted parses every POST's
      Content-Type with the email package (~30 us, about a fifth of a track request's CPU) and a
      form or multipart body whole, on the event loop, before the gateway can refuse it with 415.
    - A request that ended cleanly leaves daphne's connection table when its application returns,
      not at the next run of daphne's once-a-second reaper. Each held ~35 objects: at 3,000
      requests/s, ~100k that every young garbage collection walked (3-4 ms, five times a second,
      and 30-50 ms for a gen-1 collection), which set the p99.

    Called by signal_gateway.asgi on import (and by bench/bare_asgi.py, so the baseline runs the
    same daphne); harmless when daphne is not serving.
    """
    from daphne import http_protocol

    log_access_lines_without_query()

    if getattr(http_protocol.WebRequest, "parses_forms", True) is False:
        return

    class WebRequest(http_protocol.WebRequest):  # type: ignore[misc]  # daphne ships no types
        parses_forms = False

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("parsePOSTFormSubmission", False)
            super().__init__(*args, **kwargs)

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

    http_protocol.WebRequest = WebRequest  # HTTPFactory.buildProtocol looks the name up per connection


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
