"""Responses that carry a credential (a token, a key) are never stored.

RFC 6749 §5.1: a token response has `Cache-Control: no-store` and `Pragma:
no-cache`, so that no browser, proxy or client cache keeps a copy. A route adds
`dependencies=[NoStore]`; only its successful responses carry a credential.
"""

from fastapi import Depends, Response

NO_STORE_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _no_store(response: Response) -> None:
    response.headers.update(NO_STORE_HEADERS)


NoStore = Depends(_no_store)
