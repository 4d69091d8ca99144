"""Request ids: one per request, in the response's ``X-Request-ID`` and in every log line written
while the request is handled.

``begin(scope)`` is called once by the handler as a request arrives. It believes the request's own
``X-Request-ID`` only from a peer in ``TRUSTED_PROXIES`` (the proxy in front, which may have minted
it or passed on its caller's), and only when it is 1-128 characters of ``[A-Za-z0-9._:+/=@-]``: a
log line must not carry whatever a client chooses. Otherwise it mints one: 32 hex characters, like
nginx's ``$request_id`` (a per-process random prefix and a counter: unique without a syscall).

The id lives in a context variable, which asyncio copies into each task: daphne runs every request
as its own task, so ids never leak between requests. ``RequestIdFilter`` (installed on the log
handler in settings.LOGGING) copies it onto every log record as ``request_id``.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import os
import re
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from django.conf import settings

HEADER = "X-Request-ID"
_HEADER_KEY = b"x-request-id"
MAX_LENGTH = 128
_WELL_FORMED = re.compile(rf"[A-Za-z0-9._:+/=@-]{{1,{MAX_LENGTH}}}")

_current: ContextVar[str | None] = ContextVar("request_id", default=None)


class _Minter:
    """32 hex characters: 80 random bits per process, then a 48-bit counter."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self.prefix = os.urandom(10).hex()
        self.counter = itertools.count(1)

    def mint(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFFFFFF:012x}"


_minter = _Minter()
# A forked child must not hand out its parent's ids.
os.register_at_fork(after_in_child=_minter.reseed)


def mint() -> str:
    return _minter.mint()


@lru_cache(maxsize=1)
def _networks(proxies: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


@lru_cache(maxsize=256)
def _is_trusted_peer(peer: str, proxies: tuple[str, ...]) -> bool:
    # The same rule as ingestion.client's X-Forwarded-For: only a socket peer in TRUSTED_PROXIES.
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in network for network in _networks(proxies))


def from_headers(scope: dict[str, Any]) -> str | None:
    """The request's ``X-Request-ID`` when a trusted proxy passed it and it is well-formed."""
    proxies = settings.TRUSTED_PROXIES
    if not proxies:
        return None
    client = scope.get("client")
    if not client or not _is_trusted_peer(client[0], tuple(proxies)):
        return None
    for name, value in scope.get("headers", ()):
        if name == _HEADER_KEY:
            text = value.decode("latin-1")
            return text if _WELL_FORMED.fullmatch(text) else None
    return None


def begin(scope: dict[str, Any]) -> str:
    """The request's id (its trusted ``X-Request-ID`` or a new one), now current for its logs.
    The caller echoes it in the response's ``X-Request-ID`` header."""
    request_id = from_headers(scope) or _minter.mint()
    _current.set(request_id)
    return request_id


def current() -> str | None:
    """The id of the request being handled in this task, if any."""
    return _current.get()


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record logged while a request is handled (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _current.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True
