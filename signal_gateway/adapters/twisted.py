"""Twisted, adapted: the gateway's SIGTERM handler replaces the one Twisted's reactor installs.

daphne runs Twisted's reactor, which installs its own SIGTERM handler when it starts; that handler
stops the reactor at once and daphne cancels every request in flight. ``on_sigterm`` puts ours in
its place, so requests in flight can finish (ingestion.lifecycle).

``stop_listening`` closes the listening sockets daphne opened (on SIGTERM: no new connections).

What this relies on, checked by tests/test_adapters.py against the pinned Twisted and daphne: daphne
imports ``twisted.internet.reactor`` before the application; callables given to
``reactor.callWhenRunning`` run after the reactor has installed its signal handlers; daphne's
listening sockets (``-p``, or ``--fd`` from signal_gateway.serve) are ``twisted.internet.tcp.Port``
readers of the reactor.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any


def serving() -> bool:
    """Whether this process is served by daphne (its reactor is imported before the application)."""
    return "twisted.internet.reactor" in sys.modules


def reactor() -> Any:
    from twisted.internet import reactor as installed

    return installed  # typed as Any: Twisted's module-level reactor confuses type checkers


def on_sigterm(handler: Callable[[], None]) -> None:
    """From the moment the reactor runs, SIGTERM calls ``handler`` on the reactor's thread instead
    of stopping the reactor."""
    running = reactor()

    def received(signum: int, frame: Any) -> None:
        running.callFromThread(handler)

    # After the reactor starts, so ours replaces the handler Twisted installs then.
    running.callWhenRunning(signal.signal, signal.SIGTERM, received)


def stop_listening() -> int:
    """Close every listening socket of the reactor; returns how many."""
    from twisted.internet import tcp

    ports = [reader for reader in reactor().getReaders() if isinstance(reader, tcp.Port)]
    for port in ports:
        port.stopListening()
    return len(ports)
