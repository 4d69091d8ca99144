"""The client's address: the socket peer, or X-Forwarded-For when the peer is a trusted proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from django.conf import settings

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=1)
def _trusted(proxies: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _is_trusted(address: str, networks: tuple[_Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_ip(peer: str | None, forwarded_for: str) -> str | None:
    networks = _trusted(tuple(settings.TRUSTED_PROXIES))
    if not peer or not networks or not forwarded_for or not _is_trusted(peer, networks):
        return peer
    # Walk from the nearest hop back; the first address that is not one of our proxies is the client.
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed header is not evidence of anything
        if not _is_trusted(hop, networks):
            return hop
    return peer


def request_origin_facts(meta: Mapping[str, Any]) -> tuple[str | None, str | None, bool]:
    """(client IP, User-Agent, Global Privacy Control) as the request carries them."""
    return (
        client_ip(meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR", "")),
        meta.get("HTTP_USER_AGENT"),
        meta.get("HTTP_SEC_GPC") == "1",
    )


def public_url(request: Any) -> str:
    """The URL as the caller addressed it (scheme from a trusted proxy, Host, raw path and query),
    for signature schemes that sign the URL (HubSpot v3)."""
    meta = request.META
    scheme = request.scope.get("scheme", "http")
    networks = _trusted(tuple(settings.TRUSTED_PROXIES))
    if meta.get("HTTP_X_FORWARDED_PROTO") and networks and _is_trusted(meta.get("REMOTE_ADDR", ""), networks):
        scheme = meta["HTTP_X_FORWARDED_PROTO"].split(",")[0].strip()
    host = meta.get("HTTP_HOST") or meta.get("SERVER_NAME", "")
    raw_path = request.scope.get("raw_path") or request.path.encode()
    query = request.scope.get("query_string", b"")
    return f"{scheme}://{host}{raw_path.decode('latin1')}" + (f"?{query.decode('latin1')}" if query else "")
