"""Deleting a user (their own DELETE /users/me, or an admin's DELETE
/users/{id}) leaves no row of theirs in any table, and changes no row of anyone
else's.

Every table of the metadata is read before and after, whole. A row is the
deleted user's when it references their `users` row, directly or through
another of their rows (a refresh token through its login, a question through a
key): whatever the foreign keys say, so a table added later is checked too.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event, inspect

from askgate.config import Settings
from askgate.db import Base, Database
from askgate.runtime import Runtime
from askgate.users import service as users_service
from askgate.users.models import Role
from tests.factories import (
    Account,
    auth_headers,
    create_api_key,
    create_user,
    key_headers,
    login,
)
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)
from tests.rows import Rows, days_ago, insert_questions, question_ids, snapshot

__all__ = ["postgres_server", "postgres_url"]  # fixtures used through `with_database`

# Columns that change by themselves, not by the deletion: the auth epoch's
# counter, bumped by the triggers of any deleted user or login (that is its job).
BACKGROUND_COLUMNS = {("auth_epoch", "value")}


@pytest.fixture(params=BACKENDS)
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return with_database(settings, request)


async def give_everything(
    client: httpx.AsyncClient, db: Database, account: Account
) -> None:
    """A row of the account in every table askgate has: two logins (one
    refreshed), a key, questions asked with each, old questions, usage."""
    tokens = await login(client, account)
    refreshed = await client.post(
        "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    headers = await auth_headers(client, account)
    key = await create_api_key(client, headers, name=f"{account.username}'s key")
    for credentials in (headers, key_headers(key["key"])):
        response = await client.post(
            "/questions",
            json={"content": f"from {account.username}"},
            headers=credentials,
        )
        assert response.status_code == 201, response.text
    await insert_questions(db, account.id, [days_ago(90), days_ago(2)])


async def settle(runtime: Runtime) -> None:
    """Every background write done: the stored questions, keys' last use."""
    await runtime.ledger.drain()
    await runtime.key_uses.drain()


def owned_rows(tables: dict[str, Rows], user_id: int) -> dict[str, set[Any]]:
    """table -> the primary keys of the user's rows (module doc)."""
    owned: dict[str, set[Any]] = {name: set() for name in tables}
    owned["users"] = {(user_id,)}
    changed = True
    while changed:
        changed = False
        for table in Base.metadata.sorted_tables:
            for key, row in tables[table.name].items():
                if key in owned[table.name]:
                    continue
                if any(
                    _references_owned(fk, row, tables, owned)
                    for fk in table.foreign_keys
                ):
                    owned[table.name].add(key)
                    changed = True
    return owned


def _references_owned(
    fk: Any, row: dict[str, Any], tables: dict[str, Rows], owned: dict[str, set[Any]]
) -> bool:
    value = row[fk.parent.name]
    if value is None:
        return False
    target = fk.column.table.name
    return any(tables[target][key][fk.column.name] == value for key in owned[target])


def without_background(rows: Rows, table: str) -> Rows:
    return {
        key: {
            column: value
            for column, value in row.items()
            if (table, column) not in BACKGROUND_COLUMNS
        }
        for key, row in rows.items()
    }


async def database_tables(db: Database) -> set[str]:
    async with db.engine.connect() as connection:
        names = await connection.run_sync(
            lambda sync: set(inspect(sync).get_table_names())
        )
    return names - {"alembic_version", "sqlite_sequence"}


@pytest.mark.parametrize("by", ["self", "admin"])
async def test_deleting_a_user_leaves_no_row_of_theirs_and_changes_no_other(
    client: httpx.AsyncClient,
    db: Database,
    runtime: Runtime,
    by: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(users_service, "QUESTIONS_PER_DELETE", 2)  # several batches
    leaving = await create_user(db)
    staying = await create_user(db)
    admin = await create_user(db, role=Role.ADMIN)
    for account in (leaving, staying):
        await give_everything(client, db, account)
    deleter_headers = await auth_headers(client, admin if by == "admin" else leaving)
    await settle(runtime)
    # Every table the migrations made is one the metadata knows, so none is
    # missed below.
    assert await database_tables(db) == set(Base.metadata.tables)
    before = await snapshot(db)
    owned = owned_rows(before, leaving.id)
    for table in ("auth_sessions", "refresh_tokens", "api_keys", "questions"):
        assert owned[table], f"the test gave the user no row in {table}"
    assert owned["usage_daily"]
    assert owned["token_usage"]

    path = "/users/me" if by == "self" else f"/users/{leaving.id}"
    response = await client.delete(path, headers=deleter_headers)
    assert response.status_code == 204, response.text
    await settle(runtime)
    after = await snapshot(db)

    for table, rows in after.items():
        left = owned[table] & set(rows)
        assert not left, f"{table} still holds rows of the deleted user: {left}"
        if "user_id" in Base.metadata.tables[table].columns:
            assert all(row["user_id"] != leaving.id for row in rows.values())
        expected = {
            key: row for key, row in before[table].items() if key not in owned[table]
        }
        assert without_background(rows, table) == without_background(expected, table), (
            f"{table}: other users' rows changed"
        )


async def test_questions_go_in_batches_of_short_transactions(
    client: httpx.AsyncClient,
    db: Database,
    user: Account,
    user_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(users_service, "QUESTIONS_PER_DELETE", 2)
    await insert_questions(db, user.id, [days_ago(1)] * 5)

    with statements(db, "DELETE FROM questions") as deletes:
        response = await client.delete("/users/me", headers=user_headers)

    assert response.status_code == 204, response.text
    assert len(deletes) == 3  # 2 + 2 + 1; the account then goes alone
    assert await question_ids(db) == set()


async def test_a_refused_deletion_deletes_no_question(
    client: httpx.AsyncClient, db: Database, admin: Account
) -> None:
    ids = await insert_questions(db, admin.id, [days_ago(1)] * 3)
    headers = await auth_headers(client, admin)

    response = await client.delete("/users/me", headers=headers)

    assert response.status_code == 409  # the last admin
    assert await question_ids(db) == set(ids)


@contextmanager
def statements(db: Database, start: str) -> Iterator[list[str]]:
    """The statements starting with `start` run meanwhile."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().startswith(start):
            seen.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
