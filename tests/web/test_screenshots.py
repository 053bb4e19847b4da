"""A screenshot of every page at 1280 and 360 px wide (what the README shows:
`make screenshots` writes them to docs/screenshots/). Each page must render
without console errors, and at 360 px none may scroll sideways."""

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.web.conftest import DESKTOP, MOBILE, PASSWORD, WebServer, open_page

QUESTIONS = [
    "What does askgate keep of my questions?",
    "How do I list files?\n\n```sh\nls -la\n```\n\n- one\n- two",
    "Which **model** answered?",
]
SIGNED_OUT = {"signin": "#/signin", "register": "#/register"}
ASKED_IN_THE_PAGE = (
    "Show me a Python function that adds two numbers\n\n"
    "```python\ndef add(a, b):\n    return a + b\n```"
)
SIGNED_IN = {
    "history": "#/history",
    "usage": "#/usage",
    "keys": "#/keys",
    "account": "#/account",
}
ADMIN = {
    "admin-users": "#/admin/users",
    "admin-questions": "#/admin/questions",
    "admin-leaderboard": "#/admin/leaderboard",
}
WIDTHS = {"1280": DESKTOP, "360": MOBILE}


@pytest.fixture(scope="module")
def person(web: WebServer) -> dict[str, str]:
    """A user with a few answered questions and an API key to show."""
    creds = {"username": "dana", "password": PASSWORD}
    if web.client.post("/auth/register", json=creds).status_code != 201:
        return creds  # registered by the other width's run of this module
    headers = {"Authorization": f"Bearer {web.token(creds)}"}
    for content in QUESTIONS:
        asked = web.client.post(
            "/questions", json={"content": content}, headers=headers
        )
        assert asked.status_code == 201, asked.text
    key = web.client.post(
        "/users/me/api-keys", json={"name": "laptop"}, headers=headers
    )
    assert key.status_code == 201, key.text
    me = web.client.get("/users/me", headers=headers).json()
    quota = web.call(
        "PATCH", f"/users/{me['id']}", web.admin, json={"daily_token_quota": 2000}
    )
    assert quota.status_code == 200, quota.text
    return creds


def _shoot(page: Page, folder: Path, name: str, width: str) -> None:
    page.wait_for_load_state("networkidle")
    expect(page.locator("main")).not_to_contain_text("Loading")
    if width == "360":
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0, f"{name} scrolls sideways by {overflow} px at 360 px"
    path = folder / f"{name}-{width}.png"
    page.screenshot(path=path, full_page=True)
    assert path.stat().st_size > 5_000, path  # not a blank page


@pytest.mark.parametrize("width", list(WIDTHS))
def test_every_page_renders_at_both_widths(
    browser: Browser,
    web: WebServer,
    person: dict[str, str],
    sign_in: Callable[[Page, dict[str, str]], None],
    screenshots: Path,
    width: str,
) -> None:
    with open_page(browser, web, WIDTHS[width]) as page:
        for name, route in SIGNED_OUT.items():
            page.goto(f"/{route}")
            _shoot(page, screenshots, name, width)
        sign_in(page, person)
        page.goto("/#/ask")
        page.get_by_label("Your question").fill(ASKED_IN_THE_PAGE)
        page.get_by_role("button", name="Ask", exact=True).click()
        expect(page.locator("#answer")).to_contain_text("You asked: Show me")
        expect(page.locator("#answer pre code")).to_contain_text("return a + b")
        _shoot(page, screenshots, "ask", width)
        for name, route in SIGNED_IN.items():
            page.goto(f"/{route}")
            _shoot(page, screenshots, name, width)
        question_id = web.call("GET", "/questions/me", person).json()[0]["id"]
        page.goto(f"/#/history/{question_id}")
        _shoot(page, screenshots, "question", width)
        page.context.clear_cookies()
        sign_in(page, web.admin)
        for name, route in ADMIN.items():
            page.goto(f"/{route}")
            _shoot(page, screenshots, name, width)
