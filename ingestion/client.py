"""What the request says about its sender: the client's address (the socket peer, or X-Forwarded-For
when the peer is a trusted proxy), User-Agent and GPC, as RequestFacts; the scheme and URL it
addressed. Addresses are compared and recorded in one form (ingestion.addresses)."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from django.conf import settings

from ingestion import addresses
from ingestion.envelope import RequestFacts


@lru_cache(maxsize=1)
def _trusted(proxies: tuple[str, ...]) -> tuple[addresses.Network, ...]:
    return tuple(addresses.network(p) for p in proxies)


def _is_trusted(address: addresses.Address, networks: tuple[addresses.Network, ...]) -> bool:
    return any(address in net for net in networks)


def client_ip(peer: str | None, forwarded_for: str) -> str | None:
    """The client's address: the socket peer, or, when the peer is a trusted proxy, the nearest
    ``X-Forwarded-For`` hop that is not one of our proxies; in one form (ingestion.addresses)."""
    if not peer:
        return None
    networks = _trusted(tuple(settings.TRUSTED_PROXIES))
    if not networks and ":" not in peer:
        return peer  # an IPv4 peer and no proxy to believe: nothing to parse
    peer_ip = addresses.parse(peer)
    if peer_ip is None:
        return peer
    if not networks or not forwarded_for or not _is_trusted(peer_ip, networks):
        return str(peer_ip)
    # Walk from the nearest hop back; the first address that is not one of our proxies is the client.
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        hop_ip = addresses.parse(hop)
        if hop_ip is None:
            return str(peer_ip)  # a malformed header is not evidence of anything
        if not _is_trusted(hop_ip, networks):
            return str(hop_ip)
    return str(peer_ip)


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


def public_scheme(request: Any) -> str:
    """``http`` or ``https`` as the caller reached us: the connection's scheme, or ``X-Forwarded-Proto``
    when the peer is a trusted proxy (TLS ends in front of the gateway)."""
    meta = request.META
    scheme = str(request.scope.get("scheme", "http"))
    forwarded = meta.get("HTTP_X_FORWARDED_PROTO", "")
    if forwarded:
        networks = _trusted(tuple(settings.TRUSTED_PROXIES))
        peer = addresses.parse(meta.get("REMOTE_ADDR", ""))
        if networks and peer is not None and _is_trusted(peer, networks):
            claimed = forwarded.split(",")[0].strip().lower()
            if claimed in ("http", "https"):
                scheme = claimed
    return scheme


def public_url(request: Any) -> str:
    """The URL as the caller addressed it (scheme from a trusted proxy, Host, raw path and query),
    for signature schemes that sign the URL (HubSpot v3)."""
    meta = request.META
    scheme = public_scheme(request)
    host = meta.get("HTTP_HOST") or meta.get("SERVER_NAME", "")
    raw_path = request.scope.get("raw_path") or request.path.encode()
    query = request.scope.get("query_string", b"")
    return f"{scheme}://{host}{raw_path.decode('latin1')}" + (f"?{query.decode('latin1')}" if query else "")
