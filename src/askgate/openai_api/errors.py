"""Every error under /v1 in OpenAI's shape, `{"error": {"message", "type",
"param", "code"}}`, with OpenAI's types and codes, so that the openai SDKs
raise the matching exception class.

The routes under /v1 are OpenAIRoutes: each answers its own errors, domain
errors, validation errors (a 400, as OpenAI answers them, never echoing the
input) and failures alike; askgate.errors keeps `{"detail": ...}` for the rest.
"""

import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import FastAPI, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from askgate.errors import UNAUTHORIZED_HEADERS, DomainError, status_for
from askgate.llm.registry import MaxTokensOverLimit, UnknownModel
from askgate.quota.service import QuotaExceeded

logger = logging.getLogger("askgate.openai_api")

PREFIX = "/v1/"

# OpenAI's `type` and `code` for each status askgate answers.
_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", None),
    405: ("invalid_request_error", None),
    409: ("invalid_request_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", "upstream_error"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "upstream_timeout"),
}


def error_body(
    message: str, *, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(
    status_code: int,
    message: str,
    *,
    param: str | None = None,
    headers: dict[str, str] | None = None,
    kind: tuple[str, str | None] | None = None,
) -> JSONResponse:
    type_, code = kind or _KINDS.get(status_code, ("invalid_request_error", None))
    headers = dict(headers or {})
    if status_code == status.HTTP_401_UNAUTHORIZED:
        headers.update(UNAUTHORIZED_HEADERS)
    return JSONResponse(
        error_body(message, type=type_, param=param, code=code),
        status_code=status_code,
        headers=headers,
    )


def _domain_error(exc: DomainError) -> JSONResponse:
    kind = None
    param = None
    if isinstance(exc, QuotaExceeded):  # the day's tokens, not the request rate
        kind = ("insufficient_quota", "insufficient_quota")
    elif isinstance(exc, UnknownModel):
        kind = ("invalid_request_error", "model_not_found")
        param = "model"
    elif isinstance(exc, MaxTokensOverLimit):
        param = "max_tokens"
    return error_response(
        status_for(exc), exc.detail, param=param, headers=exc.headers, kind=kind
    )


def _printable(value: str) -> str:
    # A key the client sent may hold a lone surrogate, which JSON output cannot.
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _param(loc: Sequence[Any]) -> str | None:
    """`messages[0].content` for ("body", "messages", 0, "content")."""
    path = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{_printable(str(part))}" if path else _printable(str(part))
    return path or None


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    """The first problem, as OpenAI words it; the rejected value is never
    quoted (it may be a secret)."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    kind = first.get("type")
    param = _param(first.get("loc", ()))
    message = _printable(str(first.get("msg", "Invalid request")))
    message = message.removeprefix("Value error, ")
    if kind == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
    elif kind == "missing":
        message = f"Missing required parameter: '{param}'."
    elif kind == "json_invalid":
        message = "We could not parse the JSON body of your request."
        param = None
    elif param is not None:  # else about the whole body: the message says it
        message = f"Invalid value for '{param}': {message}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problems)"
    return error_response(status.HTTP_400_BAD_REQUEST, message, param=param)


def openai_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, DomainError):
        return _domain_error(exc)
    if isinstance(exc, RequestValidationError):
        return _validation_error(exc)
    if isinstance(exc, HTTPException):
        return error_response(
            exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None)
        )
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "Internal server error")


class OpenAIRoute(APIRoute):
    """A route whose errors come in OpenAI's shape (see `openai_error`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer_in_openai_shape(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return openai_error(request, exc)

        return answer_in_openai_shape


def too_large(detail: str) -> JSONResponse:
    """The 413 of a body refused before any route ran (askgate.middleware)."""
    return error_response(status.HTTP_413_CONTENT_TOO_LARGE, detail)


def document_no_422(app: FastAPI) -> None:
    """Drop the 422 that FastAPI documents for every route with parameters from
    the /v1 routes, which answer invalid input with a 400 (documented by each)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            for path, operations in build()["paths"].items():
                if path.startswith(PREFIX):
                    for operation in operations.values():
                        operation["responses"].pop("422", None)
        return build()  # the schema FastAPI keeps, now without them

    app.openapi = openapi  # type: ignore[method-assign]
