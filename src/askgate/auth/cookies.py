"""The web page's login: its refresh token in a cookie that scripts cannot read.

A caller opts in per request with `X-Askgate-Web: 1` on POST /auth/token,
/auth/refresh and /auth/logout. Then the refresh token travels only in the
`askgate_refresh` cookie (HttpOnly, SameSite=Strict, Path=/auth, Secure over
HTTPS) and the JSON carries `refresh_token: null`; the short-lived access token
stays in the page's memory. Without the header nothing changes: API clients send
and receive the refresh token in JSON, and the cookie is never read.

Cross-site requests cannot use the cookie: SameSite=Strict keeps browsers from
sending it from another site; a cross-site page cannot add the custom header
without a CORS preflight, which askgate's CORS settings never allow for it; and a
request whose `Origin` names another host, or whose `Sec-Fetch-Site` says
cross-site, is refused with 403 before the cookie is looked at.
"""

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request, Response

from askgate.auth.schemas import TokenPair
from askgate.client_ip import is_https
from askgate.config import Settings
from askgate.errors import NotAuthenticated, PermissionDenied
from askgate.runtime import SettingsDep

WEB_HEADER = "X-Askgate-Web"
REFRESH_COOKIE = "askgate_refresh"
COOKIE_PATH = "/auth"
CROSS_SITE = "Cross-site requests cannot use the web page's login"
NO_COOKIE = "Not signed in: no refresh cookie (sign in again)"
REFRESH_TOKEN_MAX = 512  # as RefreshRequest allows


class WebLogin:
    """What a request asked of the cookie (`enabled`) and the cookie's token."""

    def __init__(self, request: Request, settings: Settings) -> None:
        self.enabled = request.headers.get(WEB_HEADER) == "1"
        self._request = request
        self._settings = settings
        if self.enabled:
            _refuse_cross_site(request)

    def token(self) -> str:
        """The refresh token from the cookie; 401 when there is none."""
        value = self._request.cookies.get(REFRESH_COOKIE, "")
        if not value or len(value) > REFRESH_TOKEN_MAX:
            raise NotAuthenticated(NO_COOKIE)
        return value

    def hand_out(self, pair: TokenPair, response: Response) -> TokenPair:
        """As the API returns it, or with its refresh token moved to the cookie."""
        if not self.enabled or pair.refresh_token is None:
            return pair
        response.set_cookie(
            REFRESH_COOKIE,
            pair.refresh_token,
            max_age=self._settings.refresh_token_expire_days * 24 * 60 * 60,
            path=COOKIE_PATH,
            secure=is_https(self._request, self._settings),
            httponly=True,
            samesite="strict",
        )
        return pair.model_copy(update={"refresh_token": None})

    def forget(self) -> dict[str, str]:
        """The header that clears the cookie (for a response or an error)."""
        response = Response()
        response.delete_cookie(
            REFRESH_COOKIE,
            path=COOKIE_PATH,
            secure=is_https(self._request, self._settings),
            httponly=True,
            samesite="strict",
        )
        return {"set-cookie": response.headers["set-cookie"]}


def _refuse_cross_site(request: Request) -> None:
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise PermissionDenied(CROSS_SITE)
    origin = request.headers.get("origin")
    if origin is None:
        return  # not a browser's cross-origin request (curl, or a same-origin GET)
    # Host names only: a proxy may pass on the host without its port (nginx's
    # $host), and another port of the same host is the same site anyway.
    host = urlsplit("//" + request.headers.get("host", "")).hostname
    if host is None or urlsplit(origin).hostname != host:
        raise PermissionDenied(CROSS_SITE)


def _web_login(request: Request, settings: SettingsDep) -> WebLogin:
    return WebLogin(request, settings)


WebLoginDep = Annotated[WebLogin, Depends(_web_login)]
