"""The client's address: the ASGI peer, or X-Forwarded-For behind trusted proxies
(ASKGATE_TRUSTED_PROXIES). The abuse limits key on it."""

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Annotated

from fastapi import Depends, Request

from askgate.runtime import SettingsDep

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN_CLIENT = "unknown"


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
