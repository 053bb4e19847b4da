"""The canonical form of a username or an email address.

Two names that a person would read as the same ("Bob", "BOB", "ｂｏｂ") have one
canonical form: Unicode NFKC, then case folding, computed in Python so that it is
the same on every database (PostgreSQL's `lower()` and Python's disagree on
characters such as "İ"). It is what uniqueness, every lookup and the login
throttle's account key use; the name as typed is kept for display.
"""

import unicodedata


def canonical(name: str) -> str:
    return unicodedata.normalize("NFKC", name).casefold()
