"""Domain errors, the one table that maps them to HTTP, and the error handlers."""

import logging
import math
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from askgate.schemas import ErrorDetail

logger = logging.getLogger("askgate.errors")


class DomainError(Exception):
    """An expected failure; `detail` is safe to show to the caller."""

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class InvalidInput(DomainError):
    pass


class NotAuthenticated(DomainError):
    pass


class PermissionDenied(DomainError):
    pass


ADMIN_REQUIRED = "Administrator role required"


class NotFound(DomainError):
    pass


class Conflict(DomainError):
    pass


class TooManyRequests(DomainError):
    """A rate limit or login throttle; `headers` carry Retry-After."""


class ServiceUnavailable(DomainError):
    """A dependency other than the LLM (such as the rate-limit store) is down."""


class UpstreamUnavailable(DomainError):
    """No LLM upstream is configured or reachable right now."""


class UpstreamFailed(DomainError):
    pass


class UpstreamTimedOut(DomainError):
    pass


STATUS_BY_ERROR: dict[type[DomainError], int] = {
    InvalidInput: status.HTTP_400_BAD_REQUEST,
    NotAuthenticated: status.HTTP_401_UNAUTHORIZED,
    PermissionDenied: status.HTTP_403_FORBIDDEN,
    NotFound: status.HTTP_404_NOT_FOUND,
    Conflict: status.HTTP_409_CONFLICT,
    TooManyRequests: status.HTTP_429_TOO_MANY_REQUESTS,
    ServiceUnavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
    UpstreamFailed: status.HTTP_502_BAD_GATEWAY,
    UpstreamUnavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
    UpstreamTimedOut: status.HTTP_504_GATEWAY_TIMEOUT,
}

UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}


def status_for(error: DomainError) -> int:
    for kind in type(error).__mro__:
        if kind in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[kind]
    return status.HTTP_400_BAD_REQUEST


def _printable(value: str) -> str:
    # Lone surrogates cannot be encoded in the JSON response.
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _safe_ctx_value(value: Any) -> Any:
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return _printable(str(value))


def _safe_validation_errors(errors: Any) -> list[dict[str, Any]]:
    """FastAPI's validation errors without the rejected input.

    The default body echoes `input`, which would send a password back to the
    caller (and can hold NaN or lone surrogates that break the JSON encoder).
    """
    cleaned = []
    for error in errors:
        item: dict[str, Any] = {
            "type": error.get("type"),
            "loc": [
                part if isinstance(part, int) else _printable(str(part))
                for part in error.get("loc", ())
            ],
            "msg": _printable(str(error.get("msg", ""))),
        }
        ctx = error.get("ctx")
        if isinstance(ctx, dict):
            item["ctx"] = {str(k): _safe_ctx_value(v) for k, v in ctx.items()}
        cleaned.append(item)
    return cleaned


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    code = status_for(exc)
    headers = dict(exc.headers or {})
    if code == status.HTTP_401_UNAUTHORIZED:
        headers.update(UNAUTHORIZED_HEADERS)
    return JSONResponse({"detail": exc.detail}, status_code=code, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(
        {"detail": _safe_validation_errors(exc.errors())},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        {"detail": exc.detail},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        {"detail": "Internal server error"},
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


RETRY_AFTER_HEADER: dict[str, Any] = {
    "description": "Seconds to wait before trying again",
    "schema": {"type": "integer", "minimum": 1},
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the documented error statuses."""
    descriptions = {
        400: "Bad request",
        401: "Missing, invalid or expired credentials",
        403: "Authenticated, but not allowed",
        404: "Not found",
        409: "Conflict with the current state",
        429: "Too many requests: wait `Retry-After` seconds",
        502: "The LLM upstream failed",
        503: "The LLM upstream is unavailable",
        504: "The LLM upstream timed out",
    }
    responses: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorDetail, "description": descriptions[code]}
        for code in codes
    }
    if 429 in responses:
        responses[429]["headers"] = {"Retry-After": RETRY_AFTER_HEADER}
    return responses
