"""The benchmark's askgate users: registered once, logged in whenever a run needs it.

Access tokens live 15 minutes (askgate's default), so `tokens` logs everyone in
again unless the tokens in hand outlive the coming run with a margin: a token never
expires mid-run, and a login (an Argon2 verification per user) is not paid per run.
"""

import json
import secrets
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

MARGIN_SECONDS = 60
PARALLEL_REQUESTS = 4
T = TypeVar("T")


def _post(url: str, data: bytes, content_type: str) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - a loopback URL we built
        url, data=data, headers={"Content-Type": content_type}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as reply:  # noqa: S310
        body: dict[str, Any] = json.loads(reply.read())
        return body


@dataclass
class Users:
    base_url: str
    credentials: list[tuple[str, str]]
    _tokens: list[str] = field(default_factory=list)
    _expires_at: float = 0.0

    @classmethod
    def register(cls, base_url: str, count: int) -> "Users":
        # Random passwords: askgate refuses common ones.
        credentials = [(f"bench{n}", secrets.token_urlsafe(15)) for n in range(count)]

        def register_one(username: str, password: str) -> None:
            body = json.dumps({"username": username, "password": password}).encode()
            _post(f"{base_url}/auth/register", body, "application/json")

        _each(register_one, credentials)
        return cls(base_url, credentials)

    def tokens(self, needed_for_seconds: float) -> list[str]:
        """Access tokens, one a user, valid for at least `needed_for_seconds`."""
        if time.monotonic() + needed_for_seconds + MARGIN_SECONDS > self._expires_at:
            self._log_in()
        return self._tokens

    def _log_in(self) -> None:
        started = time.monotonic()

        def log_in(username: str, password: str) -> dict[str, Any]:
            form = urllib.parse.urlencode({"username": username, "password": password})
            return _post(
                f"{self.base_url}/auth/token",
                form.encode(),
                "application/x-www-form-urlencoded",
            )

        replies = _each(log_in, self.credentials)
        lifetime = min(float(reply["expires_in"]) for reply in replies)
        self._tokens = [reply["access_token"] for reply in replies]
        self._expires_at = started + lifetime


def _each(call: Callable[[str, str], T], credentials: list[tuple[str, str]]) -> list[T]:
    """`call` for every user, a few at once: each costs askgate an Argon2 hash."""
    with ThreadPoolExecutor(PARALLEL_REQUESTS) as pool:
        return list(pool.map(lambda pair: call(*pair), credentials))


@dataclass(frozen=True)
class FixedToken:
    """One key that does not expire (a peer's master key)."""

    token: str

    def tokens(self, needed_for_seconds: float) -> list[str]:
        return [self.token]
