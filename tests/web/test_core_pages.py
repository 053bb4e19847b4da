"""The page's shell and its sign-in, register, ask, history and usage views
(static/js/app.js, api.js, views/signin.js ... usage.js) in a real browser against
`askgate serve` with the fake upstream."""

import re
import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, Request, Route, expect

from tests.web.conftest import PASSWORD, QUESTIONS_PER_MINUTE, WebServer

SignIn = Callable[[Page, dict[str, str]], None]


def _ask_api(web: WebServer, token: str, content: str) -> dict[str, Any]:
    answer = web.client.post(
        "/questions",
        json={"content": content},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 201, answer.text
    question: dict[str, Any] = answer.json()
    return question


def _my_questions(web: WebServer, token: str, **params: Any) -> list[dict[str, Any]]:
    answer = web.client.get(
        "/questions/me", params=params, headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    questions: list[dict[str, Any]] = answer.json()
    return questions


def _ask_in_page(page: Page, content: str) -> None:
    page.get_by_label("Your question").fill(content)
    page.get_by_role("button", name="Ask", exact=True).click()


def test_register_signs_in_and_a_taken_name_is_refused(
    page: Page, web: WebServer
) -> None:
    username = f"reg{time.monotonic_ns()}"[:32]
    page.goto("/")
    page.get_by_role("link", name="Register").first.click()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.get_by_role("heading", name="Ask")).to_be_visible()
    expect(page.get_by_role("navigation")).to_contain_text(username)

    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("form#signin-form")).to_be_visible()
    page.goto("/#/register")
    page.get_by_label("Username").fill(username.upper())
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_contain_text("This username is already taken")


def test_register_explains_a_weak_password(page: Page) -> None:
    page.goto("/#/register")
    page.get_by_label("Username").fill(f"weak{time.monotonic_ns()}"[:32])
    page.get_by_label("Password").fill("password")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Password is one of the most common passwords"
    )
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Password should have at least 8 characters"
    )
    page.get_by_label("Username").fill("no spaces here")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_have_text(
        "Username may only use letters, digits, dots, dashes and underscores."
    )


def test_wrong_password_then_a_reload_keeps_the_login(
    page: Page, web: WebServer, sign_in: SignIn
) -> None:
    creds = web.new_user("pw")
    page.goto("/")
    page.locator("input#username").fill(creds["username"])
    page.locator("input#password").fill("not the password at all")
    page.locator("form#signin-form button[type=submit]").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")

    sign_in(page, creds)
    page.reload()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.get_by_role("heading", name="Ask")).to_be_visible()
    # The access token (a JWT, "eyJ...") lives in memory only.
    stored = page.evaluate(
        "[JSON.stringify(localStorage), JSON.stringify(sessionStorage),"
        " document.cookie].join(' ')"
    )
    assert "eyJ" not in stored
    assert "askgate_refresh" not in stored  # HttpOnly: scripts never see it


def test_a_locked_account_says_how_long_to_wait(page: Page, web: WebServer) -> None:
    creds = web.new_user("lock")
    for _ in range(5):  # ASKGATE_LOGIN_FAILURES_PER_ACCOUNT's default
        web.client.post("/auth/token", data={**creds, "password": "wrong password!"})
    page.goto("/")
    page.locator("input#username").fill(creds["username"])
    page.locator("input#password").fill(creds["password"])
    page.locator("form#signin-form button[type=submit]").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Too many failed attempts: try again in 15 minutes"
    )


def test_two_tabs_refreshing_at_once_stay_signed_in(
    page: Page, web: WebServer, sign_in: SignIn
) -> None:
    # Refresh tokens work once: two tabs sending the same cookie at once would
    # revoke the login. Each refresh is held a moment here, so that without the
    # page's Web Lock the other tab's refresh would start meanwhile.
    sign_in(page, web.new_user("tabs"))
    other = page.context.new_page()
    other.goto("/")
    expect(other.get_by_role("button", name="Sign out")).to_be_visible()

    def slow_refresh(route: Route) -> None:
        answer = route.fetch()
        time.sleep(0.3)
        route.fulfill(response=answer)

    page.context.route("**/auth/refresh", slow_refresh)
    armed = """new Promise((ready) => {
      const go = new BroadcastChannel("test-go");
      go.onmessage = () => { window.refreshed = import("/web/js/api.js")
        .then((api) => Promise.all([api.refresh(), api.refresh()])); };
      ready();
    })"""
    page.evaluate(armed)
    other.evaluate(armed)
    page.evaluate('new BroadcastChannel("test-go").postMessage("go")')
    assert page.evaluate("window.refreshed") == [True, True]
    assert other.evaluate("window.refreshed") == [True, True]
    page.context.unroute("**/auth/refresh")
    # Still signed in: the access tokens work, and so does the next refresh.
    still = """import("/web/js/api.js").then(async (api) =>
      [(await api.reloadMe()) !== null, await api.refresh()])"""
    assert page.evaluate(still) == [True, True]
    assert other.evaluate(still) == [True, True]


def test_other_tabs_follow_sign_out_and_sign_in(
    page: Page, web: WebServer, sign_in: SignIn
) -> None:
    creds = web.new_user("follow")
    sign_in(page, creds)
    other = page.context.new_page()
    other.goto("/#/history")
    expect(other.get_by_role("heading", name="History")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(other.locator("form#signin-form")).to_be_visible()
    expect(other.get_by_role("status")).to_contain_text("You are signed out")
    sign_in(page, creds)
    expect(other.get_by_role("button", name="Sign out")).to_be_visible()


def test_an_expired_access_token_is_refreshed_and_the_call_retried(
    page: Page, web: WebServer, sign_in: SignIn
) -> None:
    sign_in(page, web.new_user("retry"))
    refreshes: list[str] = []

    def seen(request: Request) -> None:
        if "/auth/refresh" in request.url:
            refreshes.append(request.url)

    page.on("request", seen)

    def expired(route: Route) -> None:
        route.fulfill(status=401, json={"detail": "Invalid or expired access token"})

    page.route("**/users/me/usage", expired, times=1)
    page.get_by_role("link", name="Usage").click()
    expect(page.locator(".meter-wrap")).to_contain_text("used today")
    assert len(refreshes) == 1
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_a_deactivated_account_is_signed_out(
    page: Page, web: WebServer, sign_in: SignIn
) -> None:
    creds = web.new_user("gone")
    sign_in(page, creds)
    user = web.call("GET", "/users/me", creds).json()
    off = {"is_active": False}
    assert web.call("PATCH", f"/users/{user['id']}", web.admin, json=off).is_success
    page.get_by_role("link", name="History").click()
    expect(page.locator("form#signin-form")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("You are signed out")


def test_sign_out_revokes_the_login(
    page: Page, web: WebServer, sign_in: SignIn
) -> None:
    sign_in(page, web.new_user("out"))
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "askgate_refresh"]
    assert cookie["httpOnly"]
    assert cookie["path"] == "/auth"
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("form#signin-form")).to_be_visible()
    # The login is revoked, not only forgotten by the browser.
    again = web.client.post("/auth/refresh", json={"refresh_token": cookie["value"]})
    assert again.status_code == 401, again.text
    page.reload()
    expect(page.locator("form#signin-form")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)


def test_ask_streams_the_answer(page: Page, web: WebServer, sign_in: SignIn) -> None:
    # Twelve " tickN" pieces 0.1 s apart (the fake's default), then the answer;
    # every test starts with the fake reset (tests/web/conftest.py).
    web.upstream.set(mode="slow_stream", slow_stream_ticks=lambda content: 12)
    sign_in(page, web.new_user("ask"))
    expect(page.locator("select#model option")).to_have_count(2)
    _ask_in_page(page, "what grows here")
    answer = page.locator("#answer")
    stop = page.get_by_role("button", name="Stop")
    expect(stop).to_be_visible()
    expect(answer).to_contain_text("tick2")
    assert "You asked" not in answer.inner_text()  # seen growing, not yet whole
    ticks = " ".join(f"tick{i}" for i in range(12))
    expect(answer).to_have_text(f"{ticks}You asked: what grows here")
    expect(stop).to_be_hidden()
    expect(page.get_by_role("status").filter(has_text="Answered")).to_be_visible()
    recent = page.locator(".recent-wrap .question-item")
    expect(recent.first).to_contain_text("what grows here")


def test_ctrl_enter_asks_with_the_picked_model(
    page: Page, web: WebServer, sign_in: SignIn
) -> None:
    creds = web.new_user("model")
    sign_in(page, creds)
    page.locator("select#model").select_option("fake-b")
    page.get_by_label("Your question").fill("which model")
    page.get_by_label("Your question").press("Control+Enter")
    expect(page.locator("#answer")).to_have_text("You asked: which model")
    (question,) = _my_questions(web, web.token(creds))
    assert question["model"] == "fake-b"


def test_keyboard_only_sign_in_and_ask(page: Page, web: WebServer) -> None:
    creds = web.new_user("keys")
    page.goto("/")
    expect(page.locator("input#username")).to_be_focused()
    page.keyboard.type(creds["username"])
    page.keyboard.press("Tab")
    page.keyboard.type(creds["password"])
    page.keyboard.press("Enter")
    expect(page.get_by_label("Your question")).to_be_focused()
    page.keyboard.type("typed, not clicked")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#answer")).to_have_text("You asked: typed, not clicked")


def test_stop_cancels_the_question(page: Page, web: WebServer, sign_in: SignIn) -> None:
    web.upstream.set(mode="slow_stream")  # " tick0", " tick1"... until stopped
    creds = web.new_user("stop")
    sign_in(page, creds)
    _ask_in_page(page, "a long answer please")
    expect(page.locator("#answer")).to_contain_text("tick1")
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_text("Stopped", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Ask", exact=True)).to_be_enabled()
    token = web.token(creds)
    deadline = time.monotonic() + 5
    while not (questions := _my_questions(web, token)) and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    (question,) = questions
    assert question["status"] == "cancelled", question
    assert "tick1" in question["answer"]


def test_upstream_down_says_what_to_do(
    page: Page, web: WebServer, sign_in: SignIn
) -> None:
    web.upstream.set(mode="status_500")
    sign_in(page, web.new_user("down"))
    _ask_in_page(page, "anyone there")
    expect(page.get_by_role("alert")).to_contain_text(
        "The model is not answering right now; try again in a minute."
    )
    expect(page.get_by_label("Your question")).to_have_value("anyone there")


def test_quota_used_up_says_when_it_resets(
    page: Page, web: WebServer, sign_in: SignIn
) -> None:
    creds = web.new_user("quota")
    user = web.call("GET", "/users/me", creds).json()
    # A question reserves its max_tokens (256) plus its prompt's bound: one
    # charged in full leaves less than the next one needs.
    quota = {"daily_token_quota": 600}
    assert web.call("PATCH", f"/users/{user['id']}", web.admin, json=quota).is_success
    web.upstream.set(usage={"prompt_tokens": 900, "completion_tokens": 500})
    _ask_api(web, web.token(creds), "a costly question")
    sign_in(page, creds)
    _ask_in_page(page, "one more")
    expect(page.get_by_role("alert")).to_contain_text(
        "Your daily quota is used up; it resets at midnight UTC"
    )
    page.get_by_role("link", name="Usage").click()
    expect(page.locator(".meter-wrap")).to_contain_text(
        re.compile(r"\d+ of 600 tokens")
    )
    expect(page.locator("progress#quota-meter")).to_have_attribute("max", "600")


def test_rate_limit_message(page: Page, web: WebServer, sign_in: SignIn) -> None:
    creds = web.new_user("rate")
    token = web.token(creds)
    for i in range(QUESTIONS_PER_MINUTE):
        _ask_api(web, token, f"question {i}")
    sign_in(page, creds)
    _ask_in_page(page, "one more")
    expect(page.get_by_role("alert")).to_contain_text(
        "You are asking too fast: try again in"
    )
    expect(page.get_by_label("Your question")).to_have_value("one more")


def test_model_html_is_shown_as_text(
    page: Page, web: WebServer, sign_in: SignIn
) -> None:
    sign_in(page, web.new_user("xss"))
    payload = (
        "<img src=x onerror=alert(1)> and <script>alert(2)</script> **bold**"
        " [click](javascript:alert(3))"
    )
    _ask_in_page(page, payload)
    answer = page.locator("#answer")
    expect(answer).to_contain_text("<img src=x onerror=alert(1)>")
    expect(answer).to_contain_text("<script>alert(2)</script>")
    expect(answer.locator("strong")).to_have_text("bold")  # Markdown still renders
    assert answer.locator("img, script, iframe").count() == 0
    assert answer.locator("[href^='javascript' i], [onerror]").count() == 0
    page.get_by_role("link", name="Open question").first.click()
    detail = page.locator("#answer")
    expect(detail).to_contain_text("<script>alert(2)</script>")
    assert detail.locator("img, script").count() == 0


def test_markdown_code_blocks_lists_and_links(
    page: Page, web: WebServer, sign_in: SignIn
) -> None:
    creds = web.new_user("md")
    text = "\n\n".join(
        [
            "list:",
            "- one\n- two",
            "```\nprint('hi')\n```",
            "[site](https://example.org/x)",
            "![pixel](https://tracker.example/p.png)",
        ]
    )
    question = _ask_api(web, web.token(creds), text)
    sign_in(page, creds)
    page.goto(f"/#/history/{question['id']}")
    answer = page.locator("#answer")
    expect(answer.locator("li")).to_have_count(2)
    expect(answer.locator("pre code")).to_have_text("print('hi')")
    link = answer.get_by_role("link", name="site")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    # An image would be a request leaving askgate (a tracking pixel): a link instead.
    expect(answer.get_by_role("link", name="pixel")).to_have_attribute(
        "href", "https://tracker.example/p.png"
    )
    assert answer.locator("img").count() == 0


def test_history_pages_back_opens_and_deletes(
    page: Page, web: WebServer, sign_in: SignIn
) -> None:
    creds = web.new_user("hist")
    token = web.token(creds)
    for i in range(1, 6):
        _ask_api(web, token, f"history question {i}")
    sign_in(page, creds)
    page.get_by_role("link", name="History").click()
    items = page.locator(".view-history .question-item")
    expect(items).to_have_count(3)
    expect(items.first).to_contain_text("history question 5")
    page.get_by_role("button", name="Older").click()
    expect(items).to_have_count(5)
    expect(items.last).to_contain_text("history question 1")
    expect(page.get_by_role("button", name="Older")).to_be_hidden()

    items.nth(3).get_by_role("link", name="Open").click()
    expect(page.get_by_role("heading", name="Question")).to_be_visible()
    expect(page.locator(".question-text")).to_have_text("history question 2")
    expect(page.locator("#answer")).to_have_text("You asked: history question 2")
    expect(page.locator(".question-detail")).to_contain_text("answered")
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(items).to_have_count(3)
    remaining = [q["content"] for q in _my_questions(web, token, limit=10)]
    assert "history question 2" not in remaining
    assert len(remaining) == 4


def test_usage_meter_and_chart(page: Page, web: WebServer, sign_in: SignIn) -> None:
    creds = web.new_user("use")
    sign_in(page, creds)
    page.get_by_role("link", name="Usage").click()
    expect(page.get_by_text("No questions in the last 30 days").first).to_be_visible()
    expect(page.locator("svg.chart")).to_be_visible()
    expect(page.locator("svg.chart rect.bar")).to_have_count(0)

    _ask_api(web, web.token(creds), "count my tokens")
    page.reload()
    bar = page.locator("svg.chart rect.bar")
    expect(bar).to_have_count(1)
    expect(bar.locator("title")).to_contain_text("1 question")
    expect(page.locator(".meter-wrap")).to_contain_text("used today")


def test_ask_fits_a_360px_screen(
    mobile_page: Page, web: WebServer, sign_in: SignIn
) -> None:
    sign_in(mobile_page, web.new_user("narrow"))
    # Long lines: a code block scrolls by itself, a long word wraps.
    code = "```\n" + "x = 1; " * 40 + "\n```"
    _ask_in_page(mobile_page, f"a small screen {'word ' * 40}\n\n{code}\n\n{'y' * 120}")
    answer = mobile_page.locator("#answer")
    expect(answer).to_contain_text("You asked: a small screen")
    expect(answer.locator("pre code")).to_contain_text("x = 1;")
    mobile_page.get_by_role("status").filter(has_text="Answered").wait_for()
    width = mobile_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, width
    brand = mobile_page.locator(".brand").bounding_box()
    sign_out = mobile_page.get_by_role("button", name="Sign out").bounding_box()
    assert brand is not None
    assert sign_out is not None
    assert abs(brand["y"] - sign_out["y"]) < 20  # the nav's first row holds both
