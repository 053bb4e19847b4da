"""Password hashing (Argon2id, off the event loop) and access/refresh tokens.

Argon2 takes tens of milliseconds of CPU a call: in the event loop it would stall
every other request, so it runs in worker threads, and in few of them: a pool of
its own, of one thread per CPU core (at least 2, so that one slow hash does not
hold up every login; ASKGATE_PASSWORD_HASH_CONCURRENCY overrides it). Hashes
beyond that wait in the pool's queue, not in running threads, so a burst of
logins or password changes cannot take the CPU from the event loop (with a
thread per request, 40 hashing threads would leave it a fortieth of a core);
and a hash whose request was cancelled while waiting is never computed. The
pool is the process's: with several workers per machine, lower the setting.
"""

import asyncio
import hashlib
import os
import secrets
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

ALGORITHM = "HS256"
ISSUER = "askgate"
AUDIENCE = "askgate"
ACCESS_TOKEN_TYPE = "access"
LEEWAY_SECONDS = 30
MAX_USER_ID = 2**63 - 1  # a signed 64-bit id column
REQUIRED_CLAIMS = ["sub", "type", "iss", "aud", "iat", "exp", "jti", "sid"]

_password_hash = PasswordHash((Argon2Hasher(),))
# Verified when the user does not exist, so an unknown username costs the same time
# as a wrong password and login timing does not reveal which usernames exist.
_DUMMY_HASH = _password_hash.hash(secrets.token_urlsafe(16))


T = TypeVar("T")


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # the cores this process may use
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _HashingPool:
    """The threads Argon2 runs in (module doc); calls beyond them wait queued."""

    def __init__(self) -> None:
        self.size = 0
        self._executor: ThreadPoolExecutor | None = None
        self.resize(None)

    def resize(self, workers: int | None) -> None:
        """`workers` threads, or one per core (at least 2). Hashes already
        submitted finish in the threads they were given to."""
        size = workers if workers is not None else max(2, _cores())
        if size == self.size:
            return
        old, self.size = self._executor, size
        self._executor = ThreadPoolExecutor(size, thread_name_prefix="argon2")
        if old is not None:
            old.shutdown(wait=False)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)


_hashing = _HashingPool()


def limit_concurrent_hashing(workers: int | None) -> None:
    """ASKGATE_PASSWORD_HASH_CONCURRENCY: the process's hashing threads."""
    _hashing.resize(workers)


def _hash(password: str) -> str:
    # Looked up at each call: tests replace the hasher to hold it.
    return _password_hash.hash(password)


def _verify(password: str, password_hash: str) -> bool:
    return _password_hash.verify(password, password_hash)


async def hash_password(password: str) -> str:
    return await _hashing.run(_hash, password)


async def verify_password(password: str, password_hash: str | None) -> bool:
    """Constant-work check; `None` (no such user) verifies against a dummy hash."""
    if password_hash is None:
        await _hashing.run(_verify, password, _DUMMY_HASH)
        return False
    return await _hashing.run(_verify, password, password_hash)


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    # A refresh token has 256 random bits: a fast hash is enough to make the stored
    # value useless to someone who reads the database.
    return hashlib.sha256(token.encode()).hexdigest()


def new_session_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    session_id: str
    expires_at: float  # Unix time; the token is accepted until LEEWAY_SECONDS after

    def expired(self, now: float) -> bool:
        return now >= self.expires_at + LEEWAY_SECONDS


class InvalidToken(Exception):
    """The access token is malformed, forged, expired or of the wrong type."""


def create_access_token(
    *, user_id: int, session_id: str, key: str, ttl: timedelta
) -> str:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "type": ACCESS_TOKEN_TYPE,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
        "sid": session_id,
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def decode_access_token(token: str, *, key: str) -> AccessClaims:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    if claims["type"] != ACCESS_TOKEN_TYPE:
        raise InvalidToken("not an access token")
    subject, session_id = claims["sub"], claims["sid"]
    # ASCII digits only (str.isdecimal also accepts "１"), and within the id column's
    # range: a larger integer makes the database driver raise, which would be a 500.
    if not (isinstance(subject, str) and subject.isascii() and subject.isdecimal()):
        raise InvalidToken("malformed subject")
    user_id = int(subject)
    if not 1 <= user_id <= MAX_USER_ID:
        raise InvalidToken("malformed subject")
    if not isinstance(session_id, str):
        raise InvalidToken("malformed session id")
    return AccessClaims(
        user_id=user_id, session_id=session_id, expires_at=float(claims["exp"])
    )
