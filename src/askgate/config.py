"""Settings, read from ASKGATE_* environment variables and `.env`."""

import contextlib
import ipaddress
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

logger = logging.getLogger("askgate.config")

SECRET_KEY_FILE = "secret_key"
PRIVATE_DIR_MODE, PRIVATE_FILE_MODE = 0o700, 0o600
# The database and the files SQLite keeps beside it while it is open.
SQLITE_FILE_SUFFIXES = ("", "-wal", "-shm", "-journal")
MIN_SECRET_KEY_BYTES = 32
PositiveFloat = Annotated[float, Field(gt=0)]


def check_key_length(key: str) -> None:
    if len(key.encode()) < MIN_SECRET_KEY_BYTES:
        raise ValueError(
            f"must be at least {MIN_SECRET_KEY_BYTES} bytes; generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )


class UpstreamConfig(BaseModel):
    """One fallback upstream: ASKGATE_LLM_FALLBACK_URLS is a JSON list of these."""

    base_url: str
    model: str
    api_key: SecretStr | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ASKGATE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    data_dir: Path = Path("./data")
    database_url: str | None = None
    secret_key: SecretStr | None = None
    access_token_expire_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_expire_days: int = Field(default=7, ge=1, le=365)

    # Issue 8: the models askgate offers (askgate.llm.models_file); without it,
    # the one model of ASKGATE_LLM_BASE_URL, _MODEL, _API_KEY, _FALLBACK_URLS.
    models_file: Path | None = None
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str | None = None
    llm_connect_timeout: PositiveFloat = 5.0
    llm_read_timeout: PositiveFloat = 60.0
    llm_default_max_tokens: int = Field(default=256, ge=1, le=32768)
    llm_system_prompt: str = ""

    local_model_path: Path | None = None
    local_model_startup_timeout: PositiveFloat = 120.0
    local_model_context: int = Field(default=2048, ge=256, le=131072)

    history_size: int = Field(default=3, ge=1, le=100)
    # Issue 9: questions older than this many days are deleted (0: kept forever);
    # see askgate.questions.retention (36,500: its MAX_DAYS).
    question_retention_days: int = Field(default=0, ge=0, le=36_500)

    admin_username: str | None = None
    admin_password: SecretStr | None = None

    log_level: str = "INFO"
    # On SIGTERM, how long running questions and streams may go on before they are
    # cut and stored as cancelled (askgate.shutdown).
    shutdown_grace_seconds: int = Field(default=30, ge=0, le=3600)
    # Issue 9: JSON lines for log shippers (askgate.logconfig); a Bearer token that
    # GET /metrics requires (None: open; keep it off the proxy).
    log_format: Literal["text", "json"] = "text"
    metrics_token: SecretStr | None = None

    # Issue 10: the web page at / (and its files under /web/).
    web_enabled: bool = True

    # Abuse limits (issue 3). Counters live in process, or in Redis when set.
    redis_url: str | None = None
    trusted_proxies: Annotated[list[str], NoDecode] = []
    login_failures_per_account: int = Field(default=5, ge=1)
    login_failures_per_ip: int = Field(default=30, ge=1)
    login_failure_window_seconds: int = Field(default=15 * 60, ge=1)
    questions_per_minute: int = Field(default=30, ge=1)
    registrations_per_hour: int = Field(default=10, ge=1)
    # Issue 7: PATCH /users/me attempts per user and hour; questions one user may
    # have answered at once; Argon2 computations at once in this process (None:
    # one per CPU core, at least 2; see askgate.auth.security).
    account_changes_per_hour: int = Field(default=10, ge=1)
    max_concurrent_questions_per_user: int = Field(default=4, ge=1)
    password_hash_concurrency: int | None = Field(default=None, ge=1)
    daily_token_quota: int = Field(default=0, ge=0)  # 0: unlimited
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    cors_origins: Annotated[list[str], NoDecode] = []

    # Upstream resilience (issue 3).
    llm_max_retries: int = Field(default=2, ge=0, le=10)
    llm_retry_after_cap: PositiveFloat = 10.0
    llm_max_concurrency: int = Field(default=16, ge=1)
    llm_queue_timeout: PositiveFloat = 30.0
    llm_breaker_failures: int = Field(default=5, ge=1)
    llm_breaker_cooldown: PositiveFloat = 30.0
    # JSON: [{"base_url": ..., "model": ..., "api_key": ...}, ...], tried in order.
    llm_fallback_urls: list[UpstreamConfig] = []
    llm_max_response_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # Issue 9: the longest askgate works on one question with the upstreams (every
    # attempt, backoff and fallback, and a stream's whole answer); past it the
    # question fails as timed out. It bounds how long a quota reservation counts
    # (askgate.quota.service), so a crashed process's reservation ends with it.
    llm_max_question_seconds: PositiveFloat = 600.0

    @field_validator("trusted_proxies", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # "a, b" in the environment; a list when built in code.
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("models_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("llm_base_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_key_length(value.get_secret_value())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in logging.getLevelNamesMapping():
            raise ValueError(f"unknown log level {value!r}")
        return level

    @field_validator("metrics_token")
    @classmethod
    def _not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty token would let `Authorization: Bearer ` in.
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty; unset it to leave /metrics open")
        return value

    @model_validator(mode="after")
    def _admin_pair(self) -> "Settings":
        if (self.admin_username is None) != (self.admin_password is None):
            raise ValueError(
                "ASKGATE_ADMIN_USERNAME and ASKGATE_ADMIN_PASSWORD must be set together"
            )
        if self.llm_base_url is not None and not self.llm_model:
            raise ValueError("ASKGATE_LLM_MODEL is required with ASKGATE_LLM_BASE_URL")
        if self.models_file is not None and self.llm_base_url is not None:
            raise ValueError(
                "ASKGATE_MODELS_FILE replaces ASKGATE_LLM_BASE_URL, "
                "ASKGATE_LLM_MODEL, ASKGATE_LLM_API_KEY and ASKGATE_LLM_FALLBACK_URLS: "
                "set one or the other"
            )
        return self

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'askgate.db'}"

    def signing_key(self) -> str:
        """The configured key, or the one generated on first start (see ensure)."""
        if self.secret_key is None:
            raise RuntimeError("secret key not loaded; call ensure_secret_key first")
        return self.secret_key.get_secret_value()


def ensure_data_dir(settings: Settings) -> None:
    """Create ASKGATE_DATA_DIR, private (0700), with any missing parents.

    Every directory created here is 0700 whatever the umask: under `umask 000` a
    world-writable parent would let any local user swap the data directory. A
    directory that already exists keeps its mode (it may be shared, such as
    /srv), with a warning if others may enter it. Failing to create it is a
    ValueError of one line naming the setting, for the CLI to print as it is.
    """
    path = settings.data_dir
    if path.is_dir():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            logger.warning(
                "ASKGATE_DATA_DIR=%s is open to other users (mode %o); chmod 700 it",
                path,
                mode,
            )
        return
    missing = [path, *(p for p in path.parents if not p.exists())]
    try:
        for directory in reversed(missing):
            # exist_ok: another worker starting at the same time may win the race.
            directory.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
            directory.chmod(PRIVATE_DIR_MODE)  # whatever the umask
    except FileExistsError:
        raise ValueError(f"ASKGATE_DATA_DIR={path}: not a directory") from None
    except OSError as exc:
        raise ValueError(f"ASKGATE_DATA_DIR={path}: {exc.strerror or exc}") from None


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite database URL; None for other databases and memory."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or database in (None, "", ":memory:"):
        return None
    if parsed.query.get("uri") or database.startswith("file:"):
        return None  # a URI names the file its own way: left to the operator
    return Path(database)


def ensure_private_database(settings: Settings) -> None:
    """Keep a SQLite database (password hashes, every question) private: 0600.

    SQLite creates a database 0644 less the umask, readable by every local user,
    and gives its -wal and -shm files the database's mode. So the file is created
    here first, empty (SQLite's empty database) and 0600 whatever the umask,
    before anything opens it; an existing one and the files beside it are
    tightened to 0600. Call it before opening the database, as the CLI and the
    app factory do. A failure is a ValueError of one line naming the setting.
    """
    path = sqlite_path(settings.sqlalchemy_url)
    if path is None:
        return
    setting = "ASKGATE_DATABASE_URL" if settings.database_url else "ASKGATE_DATA_DIR"
    try:
        # Exclusive: a database there already (or created by another worker
        # meanwhile) is never truncated.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        for suffix in SQLITE_FILE_SUFFIXES:
            _make_private(path.with_name(path.name + suffix))
    except OSError as exc:
        raise ValueError(f"{setting}: {path}: {exc.strerror or exc}") from None


def _make_private(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode != PRIVATE_FILE_MODE:
        path.chmod(PRIVATE_FILE_MODE)
        if mode & 0o077:
            logger.warning("%s was open to other users (mode %o); now 600", path, mode)


def ensure_secret_key(settings: Settings) -> None:
    """Load the signing key, generating and storing one on first start.

    The file is created atomically with mode 0600 (written aside, then hard-linked
    into place), so workers starting at once all end up with the same key.

    Before that, the data directory is created if the key file or the default
    SQLite database is to live in it (every caller of this function is about to
    open the database); with a configured key and ASKGATE_DATABASE_URL nothing
    is written, so a read-only deployment needs no data directory.
    """
    if settings.secret_key is None or settings.database_url is None:
        ensure_data_dir(settings)
    if settings.secret_key is not None:
        return
    path = settings.data_dir / SECRET_KEY_FILE
    if not path.exists():
        tmp = path.with_name(f".{SECRET_KEY_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)
            logger.warning(
                "ASKGATE_SECRET_KEY is not set: generated a signing key and stored "
                "it in %s (mode 0600); it is reused on later starts",
                path,
            )
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_text().strip()
    try:
        check_key_length(key)  # the file may have been edited by hand
    except ValueError as exc:
        raise ValueError(f"{path}: signing key {exc}") from None
    settings.secret_key = SecretStr(key)
