"""Pieces shared by every feature's API schemas."""

from pydantic import AfterValidator, BaseModel, ConfigDict


def _reject_unstorable(value: str) -> str:
    # NUL crashes PostgreSQL inserts; a lone surrogate (valid in JSON as "\ud800")
    # cannot be encoded as UTF-8 and would fail on storage or on output.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


# Goes after any length constraints: `Annotated[str, StringConstraints(...), Storable]`.
Storable = AfterValidator(_reject_unstorable)


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True, allow_inf_nan=False)


class InputSchema(Schema):
    """Request bodies: unknown fields are an error, never silently dropped."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(Schema):
    """Every error response: FastAPI's shape, `{"detail": ...}`."""

    detail: str
