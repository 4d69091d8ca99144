"""IP addresses in one form, and what a pipeline's IP mode leaves of one.

An IPv4-mapped IPv6 address (``::ffff:203.0.113.7``) is the IPv4 address it maps, wherever it
appears: the socket peer, a hop of ``X-Forwarded-For``, an entry of ``TRUSTED_PROXIES``, a client's
``context.ip``. Otherwise one host would be trusted in one spelling and not in the other, one
visitor would be recorded under two addresses, and a mapped address would escape IPv4 truncation.
"""

from __future__ import annotations

import ipaddress

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

FULL, TRUNCATE, DROP = "full", "truncate", "drop"
IP_MODES = (FULL, TRUNCATE, DROP)
_PREFIX = {4: 24, 6: 48}  # what truncation keeps


def parse(text: str) -> Address | None:
    """The address ``text`` spells, IPv4-mapped IPv6 as IPv4; None if it is no address."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def normalise(text: object) -> str | None:
    """``text`` as the gateway records an address (IPv4-mapped IPv6 as IPv4); None if it is no address."""
    if type(text) is not str:
        return None
    ip = parse(text)
    return None if ip is None else str(ip)


def network(text: str) -> Network:
    """A CIDR; an IPv4-mapped IPv6 range (``::ffff:10.0.0.0/104``) as the IPv4 range it maps."""
    net = ipaddress.ip_network(text, strict=False)
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network(f"{mapped}/{net.prefixlen - 96}")
    return net


def masked(address: str | None, mode: str) -> str | None:
    """What IP mode ``mode`` leaves of ``address``: ``full`` all of it, ``truncate`` the IPv4 /24
    (``203.0.113.7`` -> ``203.0.113.0``) or the IPv6 /48, ``drop`` nothing. In ``truncate`` mode a
    value that is no address is left out: it cannot be truncated, and keeping it whole would not be."""
    if not address or mode == DROP:
        return None
    if mode != TRUNCATE:
        return address
    ip = parse(address)
    if ip is None:
        return None
    return str(ipaddress.ip_network(f"{ip}/{_PREFIX[ip.version]}", strict=False).network_address)
