"""Reading, paging and deleting questions: own history, single questions, admin."""

from typing import Any

import httpx
import pytest

from askgate.config import Settings
from askgate.db import Database
from tests.factories import Account, auth_headers, create_user
from tests.fake_upstream import FakeUpstream


async def ask(
    client: httpx.AsyncClient, headers: dict[str, str], content: str
) -> dict[str, Any]:
    response = await client.post(
        "/questions", json={"content": content}, headers=headers
    )
    assert response.status_code == 201, response.text
    question: dict[str, Any] = response.json()
    return question


async def ask_many(
    client: httpx.AsyncClient, headers: dict[str, str], count: int, prefix: str = "q"
) -> list[int]:
    """Asks `count` questions; their ids, oldest first."""
    return [(await ask(client, headers, f"{prefix}{n}"))["id"] for n in range(count)]


async def my_ids(
    client: httpx.AsyncClient, headers: dict[str, str], **params: int
) -> list[int]:
    response = await client.get("/questions/me", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [question["id"] for question in response.json()]


@pytest.fixture
async def other_headers(client: httpx.AsyncClient, db: Database) -> dict[str, str]:
    return await auth_headers(client, await create_user(db))


async def test_history_defaults_to_the_three_newest_and_keeps_all(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    ids = await ask_many(client, user_headers, 5)

    assert await my_ids(client, user_headers) == ids[::-1][:3]
    assert await my_ids(client, user_headers, limit=10) == ids[::-1]


async def test_history_contents_are_the_questions_asked(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    await ask_many(client, user_headers, 2, prefix="topic ")

    response = await client.get("/questions/me", headers=user_headers)

    assert [q["content"] for q in response.json()] == ["topic 1", "topic 0"]


async def test_history_pages_back_with_before_id(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    ids = await ask_many(client, user_headers, 5)
    newest_first = ids[::-1]

    first = await my_ids(client, user_headers, limit=2)
    second = await my_ids(client, user_headers, limit=2, before_id=first[-1])
    third = await my_ids(client, user_headers, limit=2, before_id=second[-1])
    end = await my_ids(client, user_headers, limit=2, before_id=third[-1])

    assert first + second + third == newest_first
    assert end == []


async def test_history_size_setting_sets_the_default(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    settings: Settings,
) -> None:
    settings.history_size = 4  # the app holds this very object
    ids = await ask_many(client, user_headers, 5)

    assert await my_ids(client, user_headers) == ids[::-1][:4]


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"limit": 0}, id="limit-0"),
        pytest.param({"limit": 101}, id="limit-101"),
        pytest.param({"limit": "many"}, id="limit-text"),
        pytest.param({"before_id": 0}, id="before-0"),
        pytest.param({"before_id": 2**63}, id="before-overflow"),
    ],
)
async def test_history_rejects_bad_paging(
    client: httpx.AsyncClient, user_headers: dict[str, str], params: dict[str, Any]
) -> None:
    response = await client.get("/questions/me", params=params, headers=user_headers)

    assert response.status_code == 422, response.text


async def test_history_allows_a_limit_of_100(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    ids = await ask_many(client, user_headers, 2)

    assert await my_ids(client, user_headers, limit=100) == ids[::-1]


async def test_history_holds_only_the_callers_questions(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    other_headers: dict[str, str],
) -> None:
    mine = await ask_many(client, user_headers, 2, prefix="mine ")
    theirs = await ask_many(client, other_headers, 2, prefix="theirs ")

    assert await my_ids(client, user_headers, limit=10) == mine[::-1]
    assert await my_ids(client, other_headers, limit=10) == theirs[::-1]


async def test_history_requires_authentication(client: httpx.AsyncClient) -> None:
    response = await client.get("/questions/me")

    assert response.status_code == 401


async def test_owner_and_admin_read_a_question(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    asked = await ask(client, user_headers, "Mine")

    for headers in (user_headers, admin_headers):
        response = await client.get(f"/questions/{asked['id']}", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json() == {**asked, "messages": None}  # not a /v1 call


async def test_another_user_gets_404_as_for_a_missing_question(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    other_headers: dict[str, str],
) -> None:
    asked = await ask(client, user_headers, "Private")

    hidden = await client.get(f"/questions/{asked['id']}", headers=other_headers)
    missing = await client.get("/questions/999999", headers=other_headers)
    delete = await client.delete(f"/questions/{asked['id']}", headers=other_headers)

    assert hidden.status_code == 404
    assert hidden.json() == missing.json() == {"detail": "Question not found"}
    assert delete.status_code == 404
    still_there = await client.get(f"/questions/{asked['id']}", headers=user_headers)
    assert still_there.status_code == 200


@pytest.mark.parametrize("question_id", ["0", "abc", str(2**63)])
async def test_invalid_question_id_is_422(
    client: httpx.AsyncClient, user_headers: dict[str, str], question_id: str
) -> None:
    response = await client.get(f"/questions/{question_id}", headers=user_headers)

    assert response.status_code == 422


@pytest.mark.parametrize("deleter", ["owner", "admin"])
async def test_owner_or_admin_deletes_a_question(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
    deleter: str,
) -> None:
    kept, doomed = await ask_many(client, user_headers, 2)
    headers = user_headers if deleter == "owner" else admin_headers

    deleted = await client.delete(f"/questions/{doomed}", headers=headers)
    again = await client.delete(f"/questions/{doomed}", headers=headers)
    read = await client.get(f"/questions/{doomed}", headers=user_headers)

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert again.status_code == 404
    assert read.status_code == 404
    assert await my_ids(client, user_headers, limit=10) == [kept]


async def test_admin_lists_all_questions_newest_first_with_total(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    other_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    first = await ask(client, user_headers, "one")
    second = await ask(client, other_headers, "two")
    third = await ask(client, user_headers, "three")

    response = await client.get("/questions", headers=admin_headers)

    assert response.status_code == 200, response.text
    assert [q["id"] for q in response.json()] == [
        third["id"],
        second["id"],
        first["id"],
    ]
    assert response.headers["X-Total-Count"] == "3"


async def test_admin_filters_by_user_and_pages(
    client: httpx.AsyncClient,
    user: Account,
    user_headers: dict[str, str],
    other_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    ids = await ask_many(client, user_headers, 5)
    await ask_many(client, other_headers, 2)

    response = await client.get(
        "/questions",
        params={"user_id": user.id, "limit": 2, "offset": 1},
        headers=admin_headers,
    )
    nobody = await client.get(
        "/questions", params={"user_id": 999999}, headers=admin_headers
    )

    assert response.status_code == 200, response.text
    assert [q["id"] for q in response.json()] == ids[::-1][1:3]
    assert {q["user_id"] for q in response.json()} == {user.id}
    assert response.headers["X-Total-Count"] == "5"
    assert nobody.json() == []
    assert nobody.headers["X-Total-Count"] == "0"


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"user_id": 0}],
    ids=["limit-0", "limit-101", "offset-negative", "user-0"],
)
async def test_admin_list_rejects_bad_paging(
    client: httpx.AsyncClient, admin_headers: dict[str, str], params: dict[str, int]
) -> None:
    response = await client.get("/questions", params=params, headers=admin_headers)

    assert response.status_code == 422, response.text


async def test_admin_list_is_forbidden_to_users(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    await ask(client, user_headers, "Can I see everything?")

    forbidden = await client.get("/questions", headers=user_headers)
    anonymous = await client.get("/questions")

    assert forbidden.status_code == 403
    assert "X-Total-Count" not in forbidden.headers
    assert anonymous.status_code == 401
