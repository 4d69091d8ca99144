"""What the request says about its sender: the client's address (the socket peer, or X-Forwarded-For
when the peer is a trusted proxy), User-Agent and GPC, as RequestFacts; and the URL it addressed."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.conf import settings

from ingestion.envelope import RequestFacts

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


def request_facts(
    request: Any,
    pipeline_id: str,
    source_kind: str,
    received_at: datetime,
    *,
    source_id: str | None = None,
    **extra: Any,
) -> RequestFacts:
    """What the request says about its sender (client IP, User-Agent, Global Privacy Control) with
    the pipeline and source; ``extra`` fills the rest of RequestFacts (visitor IDs, a batch's sentAt…)."""
    meta = request.META
    return RequestFacts(
        pipeline_id=pipeline_id,
        source_kind=source_kind,
        source_id=source_id,
        received_at=received_at,
        ip=client_ip(meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR", "")),
        user_agent=meta.get("HTTP_USER_AGENT"),
        gpc=meta.get("HTTP_SEC_GPC") == "1",
        **extra,
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
