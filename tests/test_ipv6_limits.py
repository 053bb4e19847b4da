"""The per-address abuse limits (registrations, failed logins per address) count
an IPv6 client by its /64 network and an IPv4 client by its address, whether the
address is the ASGI peer or comes through trusted proxies (X-Forwarded-For)."""

import httpx
import pytest
from fastapi import FastAPI

from askgate.client_ip import limit_key
from askgate.config import Settings
from tests.redis_server import BACKENDS, redis_server, redis_url, with_backend

__all__ = ["redis_server", "redis_url"]  # fixtures used through `with_backend`

REGISTRATIONS = 2
FAILURES_PER_IP = 2
PASSWORD = "a long enough passphrase"
WRONG = "not the password at all"
PROXY = "10.0.0.2"


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    settings.registrations_per_hour = REGISTRATIONS
    settings.login_failures_per_ip = FAILURES_PER_IP
    settings.trusted_proxies = [PROXY]
    return with_backend(settings, request)


@pytest.mark.parametrize(
    ("client_ip", "key"),
    [
        ("203.0.113.5", "203.0.113.5"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::1", "::/64"),
        ("unknown", "unknown"),
    ],
)
def test_limit_key(client_ip: str, key: str) -> None:
    assert limit_key(client_ip) == key


class Client:
    """A client at one address: the ASGI peer itself, or behind the trusted
    proxy, which names it in X-Forwarded-For."""

    def __init__(self, app: FastAPI, address: str, *, via_proxy: bool) -> None:
        peer = PROXY if via_proxy else address
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        self.http = httpx.AsyncClient(transport=transport, base_url="http://test")
        self.headers = {"X-Forwarded-For": address} if via_proxy else {}

    async def register(self, username: str) -> int:
        response = await self.http.post(
            "/auth/register",
            json={"username": username, "password": PASSWORD},
            headers=self.headers,
        )
        return response.status_code

    async def fail_login(self, username: str) -> int:
        response = await self.http.post(
            "/auth/token",
            data={"username": username, "password": WRONG},
            headers=self.headers,
        )
        return response.status_code


# (first, same limit, other limit): two addresses that share a limit, and one
# that does not share it with them.
FAMILIES = {
    "ipv6": ("2001:db8:aa:1::1", "2001:db8:aa:1:8000::2", "2001:db8:aa:2::1"),
    "ipv4": ("203.0.113.7", "203.0.113.7", "203.0.113.8"),
    "ipv4-mapped": ("::ffff:203.0.113.9", "203.0.113.9", "::ffff:203.0.113.10"),
}
PATHS = {"direct": False, "proxied": True}


@pytest.mark.parametrize("via_proxy", PATHS.values(), ids=PATHS.keys())
@pytest.mark.parametrize("addresses", FAMILIES.values(), ids=FAMILIES.keys())
async def test_registrations_are_limited_per_network(
    app: FastAPI, addresses: tuple[str, str, str], via_proxy: bool
) -> None:
    first, same, other = (Client(app, a, via_proxy=via_proxy) for a in addresses)
    tag = f"{via_proxy:d}{addresses[0].replace(':', '').replace('.', '')[-6:]}"

    assert [await first.register(f"a{tag}{n}") for n in range(REGISTRATIONS)] == [
        201
    ] * REGISTRATIONS
    assert await same.register(f"b{tag}") == 429
    assert await other.register(f"c{tag}") == 201


@pytest.mark.parametrize("via_proxy", PATHS.values(), ids=PATHS.keys())
@pytest.mark.parametrize("addresses", FAMILIES.values(), ids=FAMILIES.keys())
async def test_failed_logins_are_limited_per_network(
    app: FastAPI, addresses: tuple[str, str, str], via_proxy: bool
) -> None:
    first, same, other = (Client(app, a, via_proxy=via_proxy) for a in addresses)

    # A new username each time: only the address's limit can refuse.
    failures = [await first.fail_login(f"victim{n}") for n in range(FAILURES_PER_IP)]
    assert failures == [401] * FAILURES_PER_IP
    assert await same.fail_login("victim-next") == 429
    assert await other.fail_login("victim-other") == 401


async def test_a_forged_forwarded_for_from_an_untrusted_peer_is_ignored(
    app: FastAPI,
) -> None:
    # The peer is in one /64 and names addresses of others: all count as its own.
    peer = httpx.ASGITransport(app=app, client=("2001:db8:bb:1::1", 40000))
    async with httpx.AsyncClient(transport=peer, base_url="http://test") as client:
        statuses = [
            (
                await client.post(
                    "/auth/register",
                    json={"username": f"forger{n}", "password": PASSWORD},
                    headers={"X-Forwarded-For": f"2001:db8:cc:{n}::1"},
                )
            ).status_code
            for n in range(REGISTRATIONS + 1)
        ]

    assert statuses == [201] * REGISTRATIONS + [429]
