"""Finding an old question: `q`, `since`, `until`, `status` and `model` on
GET /questions/me and the admin's GET /questions, on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from askgate.config import Settings
from askgate.db import Database
from askgate.questions.models import Question
from tests.factories import auth_headers, create_api_key, create_user, key_headers
from tests.fake_upstream import FakeUpstream
from tests.postgres_server import (
    BACKENDS,
    postgres_server,
    postgres_url,
    with_database,
)
from tests.questions.test_models import BETA_KEY, models_file

__all__ = ["postgres_server", "postgres_url"]  # fixtures used through `with_database`

Params = dict[str, Any]


@pytest.fixture(params=BACKENDS)
def settings(
    request: pytest.FixtureRequest,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_upstream: FakeUpstream,
    second_upstream: FakeUpstream,
) -> Settings:
    """Two models, alpha (the default) and beta, on each backend."""
    monkeypatch.setenv("ASKGATE_TEST_BETA_KEY", BETA_KEY)
    settings = with_database(settings, request)
    return settings.model_copy(
        update={
            "llm_base_url": None,
            "llm_model": None,
            "models_file": models_file(
                tmp_path, ".yaml", fake_upstream, second_upstream
            ),
            "llm_max_retries": 0,
            "questions_per_minute": 10_000,
        }
    )


async def ask(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    content: str,
    model: str | None = None,
) -> int:
    """Asks; the question's id (stored as failed when the upstream fails)."""
    body: Params = {"content": content}
    if model is not None:
        body["model"] = model
    response = await client.post("/questions", json=body, headers=headers)
    if response.status_code == 201:
        question_id: int = response.json()["id"]
        return question_id
    assert response.status_code == 502, response.text
    mine = await client.get("/questions/me", params={"limit": 1}, headers=headers)
    question_id = mine.json()[0]["id"]
    return question_id


async def found(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[int]:
    """The ids GET /questions/me answers (newest first)."""
    response = await client.get(
        "/questions/me", params={"limit": 100, **params}, headers=headers
    )
    assert response.status_code == 200, response.text
    return [question["id"] for question in response.json()]


async def listed(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> tuple[list[int], int]:
    """The ids of the admin's GET /questions, and its X-Total-Count."""
    response = await client.get(
        "/questions", params={"limit": 100, **params}, headers=headers
    )
    assert response.status_code == 200, response.text
    ids = [question["id"] for question in response.json()]
    return ids, int(response.headers["X-Total-Count"])


async def set_created_at(db: Database, question_id: int, when: datetime) -> None:
    async with db.write() as session:
        await session.execute(
            update(Question).where(Question.id == question_id).values(created_at=when)
        )


@pytest.fixture
async def other_headers(client: httpx.AsyncClient, db: Database) -> dict[str, str]:
    return await auth_headers(client, await create_user(db))


# --- q ----------------------------------------------------------------------------


async def test_q_finds_text_in_the_question_or_the_answer_ignoring_case(
    client: httpx.AsyncClient, user_headers: dict[str, str], fake_upstream: FakeUpstream
) -> None:
    capital = await ask(client, user_headers, "What is the Capital of France?")
    sqlite = await ask(client, user_headers, "Tell me about SQLite")
    fake_upstream.mode = "status_400"
    failed = await ask(client, user_headers, "Why did the CAPITAL move?")

    assert await found(client, user_headers, q="capital") == [failed, capital]
    assert await found(client, user_headers, q="sqlITE") == [sqlite]
    # "You asked: ..." is in each answer; the failed question has none.
    assert await found(client, user_headers, q="YOU ASKED") == [sqlite, capital]
    assert await found(client, user_headers, q="nowhere") == []
    # Empty: no filter.
    assert await found(client, user_headers, q="") == [failed, sqlite, capital]


async def test_q_folds_non_ascii_case_and_compatibility_forms(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    summer = await ask(client, user_headers, "Un été à Paris")
    street = await ask(client, user_headers, "Die Straße ist lang")
    wide = await ask(client, user_headers, "ＦＵＬＬＷＩＤＴＨ letters")
    await ask(client, user_headers, "Un ete sans accents")

    assert await found(client, user_headers, q="ÉTÉ") == [summer]
    assert await found(client, user_headers, q="STRASSE") == [street]
    assert await found(client, user_headers, q="straße") == [street]
    assert await found(client, user_headers, q="fullwidth") == [wide]


async def test_q_matches_like_wildcards_literally(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    percent = await ask(client, user_headers, "Am I 100% sure?")
    underscore = await ask(client, user_headers, "snake_case names")
    backslash = await ask(client, user_headers, "C:\\temp path")
    await ask(client, user_headers, "Am I 1000 sure? snakeXcase C:temp")

    assert await found(client, user_headers, q="%") == [percent]
    assert await found(client, user_headers, q="100%") == [percent]
    assert await found(client, user_headers, q="_") == [underscore]
    assert await found(client, user_headers, q="e_c") == [underscore]
    assert await found(client, user_headers, q="\\") == [backslash]
    assert await found(client, user_headers, q=":\\t") == [backslash]
    assert await found(client, user_headers, q="\\%") == []


# --- since / until ----------------------------------------------------------------

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def test_since_is_inclusive_and_until_exclusive(
    client: httpx.AsyncClient, user_headers: dict[str, str], db: Database
) -> None:
    ids = [await ask(client, user_headers, f"day {n}") for n in range(3)]
    for n, question_id in enumerate(ids):
        await set_created_at(db, question_id, T0 + timedelta(days=n))
    first, second, third = ids
    t1 = (T0 + timedelta(days=1)).isoformat()
    t2 = (T0 + timedelta(days=2)).isoformat()

    assert await found(client, user_headers, since=t1) == [third, second]
    assert await found(client, user_headers, until=t1) == [first]
    assert await found(client, user_headers, since=t1, until=t2) == [second]
    assert await found(client, user_headers, since=t1, until=t1) == []
    # A microsecond either side of the boundary.
    just_after = (T0 + timedelta(days=1, microseconds=1)).isoformat()
    assert await found(client, user_headers, since=just_after) == [third]
    assert await found(client, user_headers, until=just_after) == [second, first]


async def test_a_window_holds_questions_stored_out_of_asking_order(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
    db: Database,
) -> None:
    """Ids follow the stores: a long answer is stored after a later question's
    short one. The window is on the asking times all the same."""
    ids = [await ask(client, user_headers, f"asked {n}") for n in range(4)]
    late, early, middle, last = ids
    for question_id, days in ((late, 2), (early, 0), (middle, 1), (last, 3)):
        await set_created_at(db, question_id, T0 + timedelta(days=days))
    day = [(T0 + timedelta(days=n)).isoformat() for n in range(4)]
    user_id = (await client.get("/users/me", headers=user_headers)).json()["id"]

    assert await found(client, user_headers, since=day[1]) == [last, middle, late]
    assert await found(client, user_headers, until=day[1]) == [early]
    assert await found(client, user_headers, until=day[3]) == [middle, early, late]
    assert await found(client, user_headers, since=day[1], until=day[3]) == [
        middle,
        late,
    ]
    assert await found(
        client, user_headers, since=day[1], until=day[3], before_id=middle
    ) == [late]
    assert await listed(
        client, admin_headers, user_id=user_id, since=day[1], until=day[3]
    ) == ([middle, late], 2)
    assert await listed(client, admin_headers, since=day[1], until=day[3]) == (
        [middle, late],
        2,
    )


async def test_timestamps_without_an_offset_are_utc(
    client: httpx.AsyncClient, user_headers: dict[str, str], db: Database
) -> None:
    question_id = await ask(client, user_headers, "at noon UTC")
    await set_created_at(db, question_id, T0)

    assert await found(client, user_headers, since="2026-03-01T12:00:00") == [
        question_id
    ]
    assert await found(client, user_headers, since="2026-03-01T12:00:01") == []
    # The same instant in another zone; a bare date is its midnight, UTC.
    assert await found(client, user_headers, since="2026-03-01T14:00:00+02:00") == [
        question_id
    ]
    assert await found(client, user_headers, until="2026-03-01T13:00:00+02:00") == []
    assert await found(client, user_headers, since="2026-03-01") == [question_id]
    assert await found(client, user_headers, since="2026-03-02") == []


async def test_since_after_until_is_a_400(
    client: httpx.AsyncClient, user_headers: dict[str, str], admin_headers: Any
) -> None:
    window = {"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"}
    for path, headers in (
        ("/questions/me", user_headers),
        ("/questions", admin_headers),
    ):
        response = await client.get(path, params=window, headers=headers)

        assert response.status_code == 400
        assert response.json() == {"detail": "since must not be after until"}


# --- status, model ----------------------------------------------------------------


async def test_status_filter(
    client: httpx.AsyncClient, user_headers: dict[str, str], fake_upstream: FakeUpstream
) -> None:
    answered = await ask(client, user_headers, "fine")
    fake_upstream.mode = "status_500"
    failed = await ask(client, user_headers, "broken")

    assert await found(client, user_headers, status="answered") == [answered]
    assert await found(client, user_headers, status="failed") == [failed]
    assert await found(client, user_headers, status="cancelled") == []


async def test_unknown_status_lists_the_statuses(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    response = await client.get(
        "/questions/me", params={"status": "done"}, headers=user_headers
    )

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", "status"]
    assert error["ctx"]["expected"] == "'answered', 'failed' or 'cancelled'"


async def test_model_filter_by_public_name(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    alpha = await ask(client, user_headers, "first")
    beta = await ask(client, user_headers, "second", model="beta")
    alpha_again = await ask(client, user_headers, "third", model="alpha")

    assert await found(client, user_headers, model="alpha") == [alpha_again, alpha]
    assert await found(client, user_headers, model="beta") == [beta]
    # The upstream's name, or a model not offered: nothing, not an error.
    assert await found(client, user_headers, model="beta-upstream") == []
    assert await found(client, user_headers, model="retired") == []


# --- combined, paging, admin ------------------------------------------------------


async def test_filters_combine_with_and(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
    db: Database,
) -> None:
    old = await ask(client, user_headers, "apple pie", model="beta")
    await set_created_at(db, old, T0)
    beta_apple = await ask(client, user_headers, "apple tart", model="beta")
    await ask(client, user_headers, "apple juice")  # alpha
    await ask(client, user_headers, "pear tart", model="beta")
    fake_upstream.mode = "status_500"
    await ask(client, user_headers, "apple crumble", model="alpha")

    assert await found(
        client,
        user_headers,
        q="APPLE",
        model="beta",
        status="answered",
        since="2026-06-01T00:00:00Z",
    ) == [beta_apple]
    assert await found(client, user_headers, q="apple", model="beta") == [
        beta_apple,
        old,
    ]
    assert await found(client, user_headers, q="tart", until="2026-06-01") == []


async def test_before_id_pages_back_under_a_filter(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    apples = []
    for n in range(5):
        apples.append(await ask(client, user_headers, f"apple {n}"))
        await ask(client, user_headers, f"pear {n}")
    pages: list[list[int]] = []
    before_id: int | None = None
    while True:
        params: Params = {"q": "apple", "limit": 2}
        if before_id is not None:
            params["before_id"] = before_id
        page = await found(client, user_headers, **params)
        if not page:
            break
        pages.append(page)
        before_id = page[-1]

    assert pages == [apples[:2:-1], apples[2:0:-1], apples[:1]]


async def test_admin_list_filters_and_counts_the_matches(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    other_headers: dict[str, str],
    admin_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    mine = [await ask(client, user_headers, f"apple {n}") for n in range(3)]
    await ask(client, user_headers, "pear")
    theirs = await ask(client, other_headers, "Apple too", model="beta")
    fake_upstream.mode = "status_500"
    failed = await ask(client, other_headers, "apple failed")
    user_id = (await client.get("/users/me", headers=user_headers)).json()["id"]

    assert await listed(client, admin_headers, q="apple") == (
        [failed, theirs, *mine[::-1]],
        5,
    )
    assert await listed(client, admin_headers, q="apple", limit=2, offset=1) == (
        [theirs, mine[2]],
        5,
    )
    assert await listed(client, admin_headers, q="apple", user_id=user_id) == (
        mine[::-1],
        3,
    )
    assert await listed(client, admin_headers, model="beta") == ([theirs], 1)
    assert await listed(client, admin_headers, status="failed") == ([failed], 1)
    assert await listed(client, admin_headers, q="nothing like it") == ([], 0)


async def test_no_filter_reaches_another_users_questions(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    other_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    await ask(client, other_headers, "secret apple", model="beta")
    fake_upstream.mode = "status_500"
    await ask(client, other_headers, "secret failure")
    fake_upstream.mode = "ok"
    own = await ask(client, user_headers, "my own question")

    for params in (
        {"q": "secret"},
        {"q": "you asked"},
        {"model": "beta"},
        {"status": "failed"},
        {"since": "2000-01-01T00:00:00Z"},
        {"until": "2999-01-01T00:00:00Z"},
        {"q": "", "before_id": 2**62},
    ):
        assert await found(client, user_headers, **params) in ([], [own]), params


# --- API keys and /v1 -------------------------------------------------------------


async def test_a_key_reads_its_users_history_with_filters(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    kiwi = await ask(client, user_headers, "kiwi")
    await ask(client, user_headers, "lemon")
    key = (await create_api_key(client, user_headers))["key"]

    assert await found(client, key_headers(key), q="KIWI", status="answered") == [kiwi]


async def test_a_question_asked_through_v1_is_found_by_q_and_model(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    key = (await create_api_key(client, user_headers))["key"]
    await ask(client, user_headers, "A plain Mango question")
    response = await client.post(
        "/v1/chat/completions",
        json={
            "model": "beta",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Où pousse la MANGUE ?"},
            ],
        },
        headers=key_headers(key),
    )
    assert response.status_code == 200, response.text

    (through_v1,) = await found(client, user_headers, q="mangue")
    assert await found(client, user_headers, q="MANGUE", model="beta") == [through_v1]
    assert await found(client, user_headers, q="mangue", model="alpha") == []
    question = (
        await client.get(f"/questions/{through_v1}", headers=user_headers)
    ).json()
    assert question["content"] == "Où pousse la MANGUE ?"


# --- bad values -------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"q": "a" * 201},
        {"q": "\x00"},
        {"since": "yesterday"},
        {"since": "2026-13-01"},
        {"until": "\x00"},
        {"until": "99999-01-01T00:00:00Z"},
        {"status": "Answered"},
        {"status": ""},
        {"model": ""},
        {"model": "m" * 201},
        {"model": "a\x00b"},
    ],
    ids=lambda params: repr(params)[:40],
)
async def test_bad_filter_values_are_422_naming_the_parameter(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
    params: Params,
) -> None:
    for path, headers in (
        ("/questions/me", user_headers),
        ("/questions", admin_headers),
    ):
        response = await client.get(path, params=params, headers=headers)

        assert response.status_code == 422, response.text
        (error,) = response.json()["detail"]
        assert error["loc"] == ["query", next(iter(params))]


@pytest.mark.parametrize(
    "when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]
)
async def test_timestamps_beyond_the_calendar_in_utc_are_a_400(
    client: httpx.AsyncClient, user_headers: dict[str, str], when: str
) -> None:
    for name in ("since", "until"):
        response = await client.get(
            "/questions/me", params={name: when}, headers=user_headers
        )

        assert response.status_code == 400, response.text
        assert response.json() == {"detail": f"{name} is out of range once in UTC"}


async def test_the_longest_q_and_the_calendar_edges_are_accepted(
    client: httpx.AsyncClient, user_headers: dict[str, str]
) -> None:
    await ask(client, user_headers, "edge")

    assert await found(client, user_headers, q="é" * 200) == []
    assert await found(
        client,
        user_headers,
        since="0001-01-01T00:00:00Z",
        until="9999-12-31T23:59:59.999999Z",
    )


async def test_ids_beyond_32_bits_page_and_filter_on_every_backend(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    """Ids are INTEGER on PostgreSQL, but the API takes any 63-bit id: binding
    a larger one as INTEGER failed there (a 500)."""
    own = await ask(client, user_headers, "mine")
    big = 2**62

    assert await found(client, user_headers, before_id=big) == [own]
    assert await found(client, user_headers, before_id=big, q="mine") == [own]
    assert await listed(client, admin_headers, user_id=big) == ([], 0)
    response = await client.get(f"/questions/{big}", headers=user_headers)
    assert response.status_code == 404
