"""Property-based fuzzing of every operation in the app's own OpenAPI schema.

Schemathesis generates valid and invalid requests from the schema and sends them
through its ASGI transport, as a user and as an admin, each with a login and with
a personal API key. Any 5xx, undocumented
status, content type or response shape, accepted invalid input or unenforced
authentication fails the test.

Schemathesis runs the app (and its lifespan) on its own event loop thread, so the
fake upstream gets a thread and loop of its own. Destructive operations stay in:
before every example the two fuzzing accounts, their logins and their keys are
put back as they were (a deleted account is re-created, a changed password, a
revoked login or key restored, keys made by the fuzzer removed) with a plain
synchronous SQLAlchemy session.
"""

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Receive, Scope, Send

from askgate.api_keys import keys
from askgate.api_keys.models import ApiKey
from askgate.app import create_app
from askgate.auth.models import AuthSession
from askgate.auth.security import create_access_token
from askgate.config import Settings
from askgate.db import utcnow
from askgate.users.models import Role, User
from askgate.users.names import canonical
from tests.conftest import TEST_SECRET_KEY
from tests.factories import PASSWORD
from tests.fake_upstream import MODEL, FakeUpstream

Case = schemathesis.Case[APIOperation[Any, Any, Any, Any]]

# Examples per operation and generation mode: ~25 operations, both modes, four
# callers (a login and an API key, of a user and of an admin): ~5,000 examples.
MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]
# High enough that rate limits never stand between the fuzzer and the handlers.
UNLIMITED = 1_000_000


@dataclass(frozen=True)
class FuzzAccount:
    id: int
    username: str
    role: Role
    session_id: str
    api_key: str  # its id is the account's


ACCOUNTS = {
    Role.USER: FuzzAccount(1, "fuzz-user", Role.USER, "f" * 32, "ag-" + "f" * 43),
    Role.ADMIN: FuzzAccount(2, "fuzz-admin", Role.ADMIN, "a" * 32, "ag-" + "a" * 43),
}


class ThreadedUpstream:
    """The fake upstream on an event loop of its own, in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.upstream: FakeUpstream | None = None

    def start(self) -> str:
        self.thread.start()

        async def start() -> FakeUpstream:
            upstream = FakeUpstream()
            await upstream.start()
            return upstream

        self.upstream = asyncio.run_coroutine_threadsafe(start(), self.loop).result()
        return self.upstream.base_url

    def stop(self) -> None:
        if self.upstream is not None:
            asyncio.run_coroutine_threadsafe(self.upstream.stop(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class Accounts:
    """The fuzzing user and admin, restored to a known state before each example."""

    def __init__(self, database_path: Path) -> None:
        self.engine = sa.create_engine(
            f"sqlite:///{database_path}", connect_args={"timeout": 30}
        )
        self.password_hash = PasswordHash((Argon2Hasher(),)).hash(PASSWORD)
        self.examples = 0

    def token(self, role: Role) -> str:
        account = ACCOUNTS[role]
        return create_access_token(
            user_id=account.id,
            session_id=account.session_id,
            key=TEST_SECRET_KEY,
            ttl=timedelta(hours=1),
        )

    def key(self, role: Role) -> str:
        return ACCOUNTS[role].api_key

    def reset(self) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(
                sa.delete(ApiKey).where(
                    ApiKey.id.not_in([a.id for a in ACCOUNTS.values()])
                )
            )
            for account in ACCOUNTS.values():
                # A fuzzed registration or rename may have taken the name.
                session.execute(
                    sa.delete(User).where(
                        User.username_canonical == canonical(account.username),
                        User.id != account.id,
                    )
                )
                session.merge(
                    User(
                        id=account.id,
                        username=account.username,
                        email=None,
                        password_hash=self.password_hash,
                        role=account.role,
                        is_active=True,
                    )
                )
                session.merge(
                    AuthSession(
                        id=account.session_id,
                        user_id=account.id,
                        expires_at=utcnow() + timedelta(days=1),
                        revoked_at=None,
                    )
                )
                session.merge(
                    ApiKey(
                        id=account.id,
                        user_id=account.id,
                        name="fuzz",
                        prefix=account.api_key[:8],
                        digest=keys.digest(account.api_key),
                        created_at=utcnow(),
                        expires_at=None,
                    )
                )

    def dispose(self) -> None:
        self.engine.dispose()


class CurrentApp:
    """The ASGI app schemathesis calls: each test's own app, started per test.

    The schema has to exist when pytest collects this module (one test per
    operation), before any test's database or upstream does.
    """

    def __init__(self) -> None:
        self.app: ASGIApp | None = None
        self.token = ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "no fuzzing app is running"
        await self.app(scope, receive, send)


CURRENT = CurrentApp()


class Bearer:
    """Every example is sent with the current test's access token."""

    def get(self, case: Case, ctx: schemathesis.AuthContext) -> str:
        return CURRENT.token

    def set(self, case: Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers["Authorization"] = f"Bearer {data}"


def _load_schema() -> schemathesis.BaseSchema:
    spec_app = create_app(Settings(_env_file=None, secret_key=TEST_SECRET_KEY))
    schema = schemathesis.openapi.from_dict(spec_app.openapi())
    schema.app = CURRENT
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        deterministic=True,
        database="none",
    )
    # A body over ASKGATE_MAX_BODY_BYTES is refused with a 413 before validation.
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    schema.auth(refresh_interval=None)(Bearer)
    return schema


schema = _load_schema()


@pytest.fixture
def upstream_url() -> Iterator[str]:
    upstream = ThreadedUpstream()
    try:
        yield upstream.start()
    finally:
        upstream.stop()


@pytest.fixture
def accounts(database_path: Path) -> Iterator[Accounts]:
    value = Accounts(database_path)
    value.reset()
    yield value
    value.dispose()


@pytest.fixture
def fuzz_app(
    database_path: Path,
    tmp_path: Path,
    upstream_url: str,
    accounts: Accounts,
    request: pytest.FixtureRequest,
) -> Iterator[None]:
    CURRENT.app = create_app(
        Settings(
            _env_file=None,
            data_dir=tmp_path,
            database_url=f"sqlite+aiosqlite:///{database_path}",
            secret_key=TEST_SECRET_KEY,
            llm_base_url=upstream_url,
            llm_model=MODEL,
            llm_read_timeout=1.0,
            llm_connect_timeout=1.0,
            registrations_per_hour=UNLIMITED,
            questions_per_minute=UNLIMITED,
            login_failures_per_account=UNLIMITED,
            login_failures_per_ip=UNLIMITED,
            account_changes_per_hour=UNLIMITED,
            max_concurrent_questions_per_user=UNLIMITED,
        )
    )
    try:
        yield
    finally:
        shutdown_lifespans()  # the app's lifespan, started by the first request
        CURRENT.app = None
        EXAMPLES_RUN[request.node.name] = accounts.examples


@pytest.fixture
def as_user(fuzz_app: None, accounts: Accounts) -> None:
    CURRENT.token = accounts.token(Role.USER)


@pytest.fixture
def as_admin(fuzz_app: None, accounts: Accounts) -> None:
    CURRENT.token = accounts.token(Role.ADMIN)


@pytest.fixture
def as_user_key(fuzz_app: None, accounts: Accounts) -> None:
    CURRENT.token = accounts.key(Role.USER)


@pytest.fixture
def as_admin_key(fuzz_app: None, accounts: Accounts) -> None:
    CURRENT.token = accounts.key(Role.ADMIN)


EXAMPLES_RUN: dict[str, int] = {}
FUZZ_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        # On purpose: `accounts.reset()` restores the state before every example.
        HealthCheck.function_scoped_fixture,
    ],
)


@pytest.fixture(scope="module", autouse=True)
def _report_examples(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    assert capture is not None
    with capture.global_and_fixture_disabled():
        print(
            f"\nschemathesis: {sum(EXAMPLES_RUN.values())} examples run over "
            f"{len(EXAMPLES_RUN)} operation/role pairs"
        )


def _run(case: Case, accounts: Accounts) -> None:
    accounts.reset()
    accounts.examples += 1
    case.call_and_validate(checks=CHECKS)


@schema.parametrize()
@FUZZ_SETTINGS
def test_fuzz_as_user(case: Case, as_user: None, accounts: Accounts) -> None:
    _run(case, accounts)


@schema.parametrize()
@FUZZ_SETTINGS
def test_fuzz_as_admin(case: Case, as_admin: None, accounts: Accounts) -> None:
    _run(case, accounts)


@schema.parametrize()
@FUZZ_SETTINGS
def test_fuzz_with_a_users_key(
    case: Case, as_user_key: None, accounts: Accounts
) -> None:
    _run(case, accounts)


@schema.parametrize()
@FUZZ_SETTINGS
def test_fuzz_with_an_admins_key(
    case: Case, as_admin_key: None, accounts: Accounts
) -> None:
    _run(case, accounts)
