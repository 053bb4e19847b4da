"""The models file (ASKGATE_MODELS_FILE): the models askgate offers, read and
checked once, at startup.

A mapping with one key, `models`: a list of entries, the first being the
default model. JSON when the file's name ends in `.json`, YAML otherwise (YAML
reads JSON too). An invalid file is one ModelsFileError, a line per problem,
each naming the entry (its number, and its name when it has a valid one) and
the field. No line quotes a value from the file other than an entry's name, so
an API key never reaches the message, whatever field it was put in.
"""

import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

NAME_MAX = 200  # the width of questions.model
# What a public name may hold: it travels in JSON, URLs (/v1/models/{name}) and
# CSV, and appears in error messages.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$"
_NAME = re.compile(NAME_PATTERN)
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

ModelName = Annotated[
    str, StringConstraints(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)
]


class ModelsFileError(ValueError):
    """The models file cannot be used; the message names the entry and field."""


def check_base_url(value: str) -> str:
    """An http(s) URL with a host and nothing a key could hide in."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError("must be a valid http:// or https:// URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        # The URL is shown in logs and reprs; the key is not.
        raise ValueError("must not hold credentials: use api_key or api_key_env")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or a fragment")
    return value.rstrip("/")


class ModelEntry(BaseModel):
    """One model: its public name and the upstream that answers for it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: ModelName
    base_url: str
    api_key: SecretStr | None = None
    api_key_env: Annotated[str, StringConstraints(pattern=_ENV_NAME)] | None = None
    model: Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX)]
    fallbacks: list[ModelName] = []
    max_tokens_limit: Annotated[int, Field(ge=1)] | None = None
    _key: str | None = PrivateAttr(default=None)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return check_base_url(value)

    @model_validator(mode="after")
    def _one_key_source(self) -> "ModelEntry":
        given = {"api_key", "api_key_env"} & self.model_fields_set
        if len(given) == 2:
            raise ValueError("api_key, api_key_env: give one of them, not both")
        if not given:
            raise ValueError(
                'api_key or api_key_env is required (api_key: "" for an upstream '
                "that takes no key)"
            )
        if self.api_key_env is not None:
            value = os.environ.get(self.api_key_env)
            if not value:
                raise ValueError(
                    f"api_key_env: the environment variable {self.api_key_env} "
                    "is not set"
                )
            self._key = value
        elif self.api_key is not None:
            self._key = self.api_key.get_secret_value() or None
        return self

    def key(self) -> str | None:
        """The upstream's API key, from the file or the environment; None: none."""
        return self._key


class ModelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    models: Annotated[list[ModelEntry], Field(min_length=1)]


def load_models_file(path: Path) -> list[ModelEntry]:
    """The file's entries, the default first; raises ModelsFileError."""
    prefix = f"ASKGATE_MODELS_FILE={path}"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ModelsFileError(f"{prefix}: not UTF-8 text") from None
    except OSError as exc:
        raise ModelsFileError(f"{prefix}: {exc.strerror or exc}") from None
    data = _parse(text, as_json=path.suffix.lower() == ".json", prefix=prefix)
    try:
        models = ModelsFile.model_validate(data).models
    except ValidationError as exc:
        raise ModelsFileError(_describe(exc, data, prefix)) from None
    problems = _cross_check(models)
    if problems:
        raise ModelsFileError("\n".join(f"{prefix}: {line}" for line in problems))
    return models


def _parse(text: str, *, as_json: bool, prefix: str) -> Any:
    # Only positions and the parser's own words: its excerpt of the offending
    # line could hold a key.
    if as_json:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelsFileError(
                f"{prefix}: invalid JSON at line {exc.lineno}, column {exc.colno}: "
                f"{exc.msg}"
            ) from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ModelsFileError(f"{prefix}: invalid YAML{where}: {exc.problem}") from None
    except yaml.YAMLError:
        raise ModelsFileError(f"{prefix}: invalid YAML") from None


def _entry(data: Any, index: int) -> str:
    """`entry 2 (fast)`: the number counts from 1; the name only if valid."""
    label = f"entry {index + 1}"
    try:
        name = data["models"][index]["name"]
    except (TypeError, KeyError, IndexError):
        return label
    if isinstance(name, str) and len(name) <= NAME_MAX and _NAME.match(name):
        return f"{label} ({name})"
    return label


def _describe(error: ValidationError, data: Any, prefix: str) -> str:
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        loc = item["loc"]
        message = str(item["msg"]).removeprefix("Value error, ")
        if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
            where = _entry(data, loc[1])
            field = ".".join(str(part) for part in loc[2:])
        else:
            where = ""
            field = ".".join(str(part) for part in loc)
        kind = item["type"]
        if kind == "missing":
            message = "is required"
        elif kind == "extra_forbidden":
            message = "is not a known field"
        elif kind == "too_short" and loc == ("models",):
            message = "must list at least one model"
        elif kind == "model_type" and not loc:
            message = "must hold a mapping with a `models` list"
        parts = [prefix, where, field, message]
        lines.append(": ".join(part for part in parts if part))
    return "\n".join(lines)


def _cross_check(models: Sequence[ModelEntry]) -> list[str]:
    """What only the whole file shows: duplicate names, fallbacks that name no
    entry, the entry itself, or one entry twice."""
    problems = []
    names = {entry.name for entry in models}
    seen: set[str] = set()
    for index, entry in enumerate(models):
        where = f"entry {index + 1} ({entry.name})"
        if entry.name in seen:
            problems.append(f"{where}: name: an earlier entry has the same name")
        seen.add(entry.name)
        for fallback in entry.fallbacks:
            if fallback == entry.name:
                problems.append(f"{where}: fallbacks: {fallback} is the entry itself")
            elif fallback not in names:
                problems.append(f"{where}: fallbacks: no entry is named {fallback}")
        repeated = sorted(n for n, c in Counter(entry.fallbacks).items() if c > 1)
        if repeated:
            problems.append(f"{where}: fallbacks: {', '.join(repeated)} named twice")
    return problems
