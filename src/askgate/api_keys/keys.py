"""The key itself: how one is made, recognized and digested.

A key is `ag-` and 43 URL-safe characters: 32 random bytes from `secrets`, far
too many to guess, so a plain SHA-256 is enough to store it (no salt or slow
hash: there is no dictionary of keys to try). Only the digest and the first
characters (for the owner to recognize it) are ever stored.
"""

import hashlib
import re
import secrets

KEY_PREFIX = "ag-"
SHOWN_CHARACTERS = 8  # stored as `prefix`: "ag-" and 5 random characters
_KEY_BYTES = 32
_WELL_FORMED = re.compile(r"ag-[A-Za-z0-9_-]{43}")


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(_KEY_BYTES)


def is_api_key(credential: str) -> bool:
    """Whether a bearer credential is meant as an API key (an access token, a
    JWT, starts with "eyJ")."""
    return credential.startswith(KEY_PREFIX)


def is_well_formed(key: str) -> bool:
    """A key askgate could have made: anything else is refused unread."""
    return _WELL_FORMED.fullmatch(key) is not None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
