"""Pure ASGI middlewares, so streamed responses pass through untouched: request id,
timing headers, one log line and the request metrics per request; the request
body limit; security headers."""

import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping

from fastapi import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from askgate.metrics import UNMATCHED_ROUTE, observe_request

logger = logging.getLogger("askgate.access")
# An access line; in JSON (askgate.logconfig) its arguments are these fields,
# and the route template is the record's `route`.
ACCESS_FORMAT = "%s %s %s %.1fms request_id=%s user_id=%s"
ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "request_id", "user_id")

REQUEST_ID_HEADER = "X-Request-ID"
# Response headers a cross-origin browser client may read (CORS).
EXPOSED_HEADERS = [
    REQUEST_ID_HEADER,
    "X-Process-Time-ms",
    "X-Total-Count",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
]
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            # Only echo ids that are safe in a header and a log line.
            return candidate if _VALID_REQUEST_ID.match(candidate) else None
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        started_response = False
        counted = False
        template = UNMATCHED_ROUTE

        def count() -> None:
            nonlocal counted, template
            counted = True
            route = scope.get("route")
            # The template, never the raw path: a label per path is unbounded.
            if route is not None:
                template = route.path_format
            observe_request(
                template, scope["method"], status, time.perf_counter() - started
            )

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = message["status"]
                elapsed_ms = (time.perf_counter() - started) * 1000
                # Appended raw: nothing inside sets these two headers.
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id.encode()),
                    (b"x-process-time-ms", b"%.1f" % elapsed_ms),
                ]
            elif not (counted or message.get("more_body", False)):
                # Counted before the response's last bytes leave: a client that
                # has its answer finds it in the metrics of any worker.
                count()
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Starlette's ServerErrorMiddleware, outside this one, would answer the
            # 500 without the request id; answer here, and re-raise so that it still
            # logs the error (it sends nothing once a response has started).
            if not started_response:
                error = JSONResponse({"detail": "Internal server error"}, 500)
                await error(scope, receive, send_with_headers)
            raise
        finally:
            if not counted:  # the response never ended (the client left)
                count()
            logger.info(
                ACCESS_FORMAT,
                scope["method"],
                # escaped: a decoded path may hold newlines (forged log lines)
                scope["path"].encode("unicode_escape").decode("ascii"),
                status,
                (time.perf_counter() - started) * 1000,
                request_id,
                state.get("user_id", "-"),
                extra={"route": template},
            )


# --- request body limit -----------------------------------------------------------


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body outgrows the limit.

    A FastAPI `HTTPException`, so the request-body parser re-raises it (instead of
    turning it into a 400) and the app's error handlers answer the 413.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            status_code=413,
            detail=f"Request body too large: the limit is {max_bytes} bytes",
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimitMiddleware:
    """413 for request bodies over `max_bytes`, without ever buffering them.

    A declared Content-Length over the limit is refused before the app runs;
    otherwise (chunked uploads, or a client that lies) the bytes are counted as the
    app receives them. Starlette's RequestBodyLimitMiddleware (FastAPI's
    `max_body_size`) runs outside the user middlewares and answers a route that
    never reads its body with a bare text/plain 413, without the request id or the
    security headers, hence this one.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        refusals: Mapping[str, Callable[[str], Response]] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # The 413 in another shape under a path prefix (the OpenAI API's).
        self.refusals = dict(refusals or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            # Read outside FastAPI's body parsing, past its error handlers.
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        too_large = BodyTooLarge(self.max_bytes)
        response: Response = JSONResponse(
            {"detail": too_large.detail}, too_large.status_code
        )
        for prefix, refusal in self.refusals.items():
            if scope["path"].startswith(prefix):
                response = refusal(too_large.detail)
        await response(scope, receive, send)


# --- security headers -------------------------------------------------------------

# The API serves JSON only: nothing may load, frame or run.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
# Swagger UI and ReDoc (served from this origin by fastapi-offline) start with an
# inline script, style themselves inline, fetch /openapi.json and ReDoc runs its
# search in a blob: worker. Their HTML holds no caller-supplied data.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "connect-src 'self'; worker-src 'self' blob:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# The web page (askgate.web): its own scripts, styles and images only, and calls to
# this origin; still no inline script or style, no eval, no framing.
WEB_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; font-src 'self'; connect-src 'self'; "
    "manifest-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
WEB_PAGE_PATH = "/"
WEB_ASSETS_PREFIX = "/web/"
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
DOCS_ASSETS_PREFIX = "/static-offline-docs/"
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _raw_headers(csp: str) -> list[tuple[bytes, bytes]]:
    headers = {**_SECURITY_HEADERS, "Content-Security-Policy": csp}
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


# Encoded once: every response gets one of these lists appended.
_API_HEADERS = _raw_headers(API_CSP)
_DOCS_HEADERS = _raw_headers(DOCS_CSP)
_WEB_HEADERS = _raw_headers(WEB_CSP)


def _headers_for(path: str) -> list[tuple[bytes, bytes]]:
    if path == WEB_PAGE_PATH or path.startswith(WEB_ASSETS_PREFIX):
        return _WEB_HEADERS
    if path in DOCS_PATHS or path.startswith(DOCS_ASSETS_PREFIX):
        return _DOCS_HEADERS
    return _API_HEADERS


class SecurityHeadersMiddleware:
    """Browser hardening headers on every response, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = _headers_for(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Appended raw: no response of askgate's sets these itself.
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
