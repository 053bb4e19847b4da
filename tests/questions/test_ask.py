import httpx

from tests.fake_upstream import MODEL, FakeUpstream, answer_for


async def test_ask_stores_and_returns_the_answer(
    client: httpx.AsyncClient,
    user_headers: dict[str, str],
    fake_upstream: FakeUpstream,
) -> None:
    response = await client.post(
        "/questions", json={"content": "  What is 2+2?  "}, headers=user_headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["content"] == "What is 2+2?"
    assert body["answer"] == answer_for("What is 2+2?")
    assert body["status"] == "answered"
    assert body["model"] == MODEL
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 5}
    assert fake_upstream.requests[-1]["messages"][-1]["content"] == "What is 2+2?"

    history = await client.get("/questions/me", headers=user_headers)
    assert history.status_code == 200
    assert [q["id"] for q in history.json()] == [body["id"]]
