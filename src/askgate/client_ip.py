"""The client's address: the ASGI peer, or X-Forwarded-For behind trusted proxies
(ASKGATE_TRUSTED_PROXIES); and the key the abuse limits count it under: an IPv4
address as it is, an IPv6 address's /64 network (`limit_key`)."""

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Request

from askgate.config import Settings
from askgate.runtime import SettingsDep

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN_CLIENT = "unknown"
# One host (a home router, a VM, a phone) is usually given a whole /64, and can
# pick any of its 2**64 addresses at will: counted per address, it could register
# and guess passwords without limit.
IPV6_LIMIT_PREFIX = 64


def parse_trusted_proxies(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """ASKGATE_TRUSTED_PROXIES: IP addresses or CIDR networks."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"ASKGATE_TRUSTED_PROXIES: {entry!r} is not an IP address or network"
            ) from None
    return tuple(networks)


def _parse_ip(value: str) -> IPAddress | None:
    """An address from a header or the peer; tolerates a port ("1.2.3.4:80")."""
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def resolve_client_ip(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> str:
    """The client's address: the ASGI peer, unless that peer is a trusted proxy.

    Behind trusted proxies, X-Forwarded-For is read from the right (each proxy
    appends the address it received the request from) and the first address that
    is not a trusted proxy is the client. Anything left of it was written by the
    client itself and is ignored; so is the header when the peer is not trusted.
    """
    address = _parse_ip(peer) if peer else None
    if address is None:
        return peer or UNKNOWN_CLIENT
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    while _is_trusted(address, trusted) and hops:
        previous = _parse_ip(hops.pop())
        if previous is None:
            break  # garbage in the chain: keep the last hop we can vouch for
        address = previous
    return str(address)


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted)


# Parsed once per distinct setting, not per request (a process has one or two:
# the settings of its app, and of tests' apps).
_trusted_networks = lru_cache(maxsize=8)(parse_trusted_proxies)


async def get_client_ip(request: Request, settings: SettingsDep) -> str:
    peer = request.client.host if request.client else None
    return resolve_client_ip(
        peer,
        request.headers.getlist("x-forwarded-for"),
        _trusted_networks(tuple(settings.trusted_proxies)),
    )


ClientIP = Annotated[str, Depends(get_client_ip)]


def limit_key(client_ip: str) -> str:
    """What the per-address abuse limits count `client_ip` (from
    `resolve_client_ip`) under: an IPv4 address itself, an IPv6 address its /64
    ("2001:db8:1:2::/64"). IPv4-mapped IPv6 addresses arrive here as IPv4
    already. Anything else (UNKNOWN_CLIENT, a Unix socket's peer) as it is."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip
    if isinstance(address, ipaddress.IPv4Address):
        return client_ip
    # From the integer: a scoped address ("fe80::1%eth0") keeps no scope here.
    host_bits = 128 - IPV6_LIMIT_PREFIX
    network = int(address) >> host_bits << host_bits
    return str(ipaddress.IPv6Network((network, IPV6_LIMIT_PREFIX)))


async def get_client_limit_key(client_ip: ClientIP) -> str:
    return limit_key(client_ip)


ClientLimitKey = Annotated[str, Depends(get_client_limit_key)]
"""The client's address as the abuse limits count it (see `limit_key`)."""


def is_https(request: Request, settings: Settings) -> bool:
    """Whether the client reached askgate over HTTPS: askgate's own TLS, or a
    trusted proxy's (its last X-Forwarded-Proto; the client's own is ignored)."""
    if request.url.scheme == "https":
        return True
    peer = _parse_ip(request.client.host) if request.client else None
    if peer is None or not _is_trusted(
        peer, _trusted_networks(tuple(settings.trusted_proxies))
    ):
        return False
    forwarded = request.headers.getlist("x-forwarded-proto")
    return bool(forwarded) and forwarded[-1].split(",")[-1].strip() == "https"
