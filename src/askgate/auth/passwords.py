"""Password policy: 8–128 characters (see users/schemas.py), no composition rules,
and none of the most common passwords (NIST SP 800-63B, section 3.1.1.2)."""

import gzip
import unicodedata
from functools import cache
from importlib import resources

COMMON_PASSWORDS_FILE = "common-passwords.txt.gz"
TOO_COMMON = "is one of the most common passwords; choose a less predictable one"


@cache
def common_passwords() -> frozenset[str]:
    """Django's list of 19,640 common passwords (lower-case), read on first use."""
    data = resources.files("askgate.data").joinpath(COMMON_PASSWORDS_FILE)
    text = gzip.decompress(data.read_bytes()).decode("utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def _comparable(password: str) -> str:
    # "Ｐａｓｓｗｏｒｄ", "PASSWORD" and " password" are all "password".
    return unicodedata.normalize("NFKC", password).casefold().strip()


def is_common(password: str) -> bool:
    return _comparable(password) in common_passwords()


def reject_common_password(password: str) -> str:
    """A pydantic `AfterValidator`: `Annotated[str, AfterValidator(this)]`."""
    if is_common(password):
        raise ValueError(TOO_COMMON)
    return password
