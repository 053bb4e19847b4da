"""The page's API keys, account and admin views (static/js/views/keys.js,
account.js, admin.js) in a real browser against `askgate serve`."""

import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, expect

from tests.web.conftest import WebServer

SignIn = Callable[[Page, dict[str, str]], None]
NEW_PASSWORD = "another long web passphrase"


def _as_key(web: WebServer, key: str) -> httpx.Response:
    return web.client.get("/users/me", headers={"Authorization": f"Bearer {key}"})


_admin_tokens: dict[str, str] = {}


def _admin_get_user(web: WebServer, username: str) -> dict[str, Any]:
    """The user as the admin API shows it (one admin login while it lasts)."""
    for fresh in (False, True):
        if fresh or web.base_url not in _admin_tokens:
            _admin_tokens[web.base_url] = web.token(web.admin)
        found = web.client.get(
            "/users",
            params={"q": username},
            headers={"Authorization": f"Bearer {_admin_tokens[web.base_url]}"},
        )
        if found.status_code != 401:
            break
    assert found.status_code == 200, found.text
    users: list[dict[str, Any]] = found.json()
    (user,) = [u for u in users if u["username"] == username]
    return user


def _ask(web: WebServer, creds: dict[str, str], content: str) -> dict[str, Any]:
    answer = web.call(
        "POST", "/questions", creds, json={"content": content, "model": "fake"}
    )
    assert answer.status_code == 201, answer.text
    question: dict[str, Any] = answer.json()
    return question


def _no_side_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.evaluate("window.innerWidth")
    assert width <= viewport, f"the page scrolls sideways: {width} > {viewport}"


def _search_user(page: Page, username: str) -> None:
    page.goto("/#/admin/users")
    page.get_by_label("Search users").fill(username)
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("table.users-table tbody tr")).to_have_count(1)
    expect(page.get_by_role("rowheader", name=username)).to_be_visible()


def test_create_key_shown_once_then_revoke(
    page: Page, web: WebServer, sign_in: SignIn
) -> None:
    creds = web.new_user("key")
    sign_in(page, creds)
    page.goto("/#/keys")
    expect(page.get_by_text("You have no API keys yet.")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("laptop scripts")
    page.get_by_role("button", name="Create key").click()

    shown = page.get_by_label("Your new key", exact=True)
    expect(shown).to_have_value(re.compile(r"^ag-"))
    expect(shown).to_have_attribute("readonly", "")
    expect(page.get_by_text("you will not see it again")).to_be_visible()
    key = shown.input_value()
    assert _as_key(web, key).status_code == 200
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy the new key").click()
    expect(page.get_by_text("Copied to the clipboard.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == key
    row = page.locator("table.keys-table tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("laptop scripts")
    expect(row).to_contain_text(key[:8])
    expect(row).to_contain_text("never")

    # Gone once the person leaves the page: only its prefix stays.
    page.get_by_role("link", name="Ask", exact=True).click()
    page.get_by_role("link", name="API keys").click()
    expect(row).to_have_count(1)
    expect(page.locator("#new-key")).to_have_count(0)
    assert key not in page.content()

    page.get_by_role("button", name="Revoke key laptop scripts").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("The key “laptop scripts” is revoked.")).to_be_visible()
    expect(page.get_by_text("You have no API keys yet.")).to_be_visible()
    assert _as_key(web, key).status_code == 401


def test_key_errors_in_words(page: Page, web: WebServer, sign_in: SignIn) -> None:
    creds = web.new_user("keyerr")
    sign_in(page, creds)
    page.goto("/#/keys")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("alert")).to_have_text(
        "Give the key a name, to recognize it later."
    )
    page.get_by_label("Name", exact=True).fill("x")
    page.get_by_label("Expires after (days, optional)").fill("0")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("alert")).to_contain_text("from 1 to 3650")

    # The API's refusal past the most keys allowed, in its words.
    headers = {"Authorization": f"Bearer {web.token(creds)}"}
    for n in range(50):
        made = web.client.post(
            "/users/me/api-keys", json={"name": f"k{n}"}, headers=headers
        )
        assert made.status_code == 201, made.text
    page.get_by_label("Expires after (days, optional)").fill("30")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("alert")).to_have_text(
        "Could not create the key: You have 50 live API keys, the most allowed: "
        "revoke one first"
    )
    expect(page.locator("#new-key")).to_have_count(0)


def test_change_email(page: Page, web: WebServer, sign_in: SignIn) -> None:
    creds = web.new_user("mail")
    sign_in(page, creds)
    page.goto("/#/account")
    expect(page.locator(".account-username")).to_have_text(creds["username"])
    expect(page.locator(".account-role")).to_have_text("user")
    address = f"{creds['username']}@example.com"
    page.get_by_label("New email").fill(address)
    page.get_by_role("button", name="Save email").click()
    expect(page.get_by_text("Your email address is changed.")).to_be_visible()
    expect(page.locator(".account-email")).to_have_text(address)
    assert web.call("GET", "/users/me", creds).json()["email"] == address

    page.get_by_label("New email").fill("not an address")
    page.get_by_role("button", name="Save email").click()
    expect(page.get_by_role("alert")).to_contain_text("not a valid email address")


def test_change_password_then_sign_in_with_it(
    page: Page, web: WebServer, sign_in: SignIn
) -> None:
    creds = web.new_user("pass")
    sign_in(page, creds)
    page.goto("/#/account")
    page.get_by_label("Current password").fill(creds["password"])
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD + "x")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert")).to_have_text(
        "The two new passwords do not match."
    )

    page.get_by_label("Current password").fill("a wrong current password")
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert")).to_contain_text("Could not change the password")

    page.get_by_label("Current password").fill(creds["password"])
    page.get_by_role("button", name="Change password").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("sign in again with your new password")
    dialog.get_by_role("button", name="Sign in again").click()
    expect(page.locator("form#signin-form")).to_be_visible()

    old = web.client.post("/auth/token", data=creds)
    assert old.status_code == 401
    sign_in(page, {**creds, "password": NEW_PASSWORD})


def test_delete_account_with_confirmation(
    page: Page, web: WebServer, sign_in: SignIn
) -> None:
    creds = web.new_user("gone")
    sign_in(page, creds)
    page.goto("/#/account")
    page.get_by_role("button", name="Delete my account…").click()
    dialog = page.get_by_role("dialog")
    confirm = dialog.get_by_role("button", name="Delete account")
    expect(confirm).to_be_disabled()
    dialog.get_by_label("Type your username").fill(creds["username"] + "x")
    expect(confirm).to_be_disabled()
    dialog.get_by_label("Type your username").fill(creds["username"])
    confirm.click()
    page.get_by_role("dialog").get_by_role("button", name="OK").click()
    expect(page.locator("form#signin-form")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    assert web.client.post("/auth/token", data=creds).status_code == 401


def test_non_admin_sees_refusal(page: Page, web: WebServer, sign_in: SignIn) -> None:
    sign_in(page, web.new_user("notadmin"))
    expect(page.get_by_role("link", name="Leaderboard")).to_have_count(0)
    for slug in ("users", "questions", "leaderboard"):
        page.goto(f"/#/admin/{slug}")
        expect(page.get_by_text("Only administrators can see this.")).to_be_visible()
        expect(page.locator("table")).to_have_count(0)


def test_admin_searches_and_deactivates_a_user(
    page: Page, browser: Browser, web: WebServer, sign_in: SignIn
) -> None:
    target = web.new_user("deact")
    sign_in(page, web.admin)
    _search_user(page, target["username"])
    page.get_by_role("button", name=f"Deactivate {target['username']}").click()
    expect(page.get_by_text(f"{target['username']} is deactivated")).to_be_visible()
    expect(page.locator("td.user-active")).to_have_text("no")
    expect(
        page.get_by_role("button", name=f"Activate {target['username']}")
    ).to_be_visible()
    assert _admin_get_user(web, target["username"])["is_active"] is False

    # The deactivated user cannot sign in, in another browser context.
    other = browser.new_context(base_url=web.base_url)
    try:
        theirs = other.new_page()
        theirs.goto("/")
        form = theirs.locator("form#signin-form")
        form.locator("input#username").fill(target["username"])
        form.locator("input#password").fill(target["password"])
        form.locator("button[type=submit]").click()
        expect(form.get_by_role("alert")).to_be_visible()
        expect(theirs.get_by_role("button", name="Sign out")).to_have_count(0)
    finally:
        other.close()


def test_admin_refusals_in_words(page: Page, web: WebServer, sign_in: SignIn) -> None:
    sign_in(page, web.admin)
    _search_user(page, web.admin["username"])
    page.get_by_role("button", name=f"Make user: {web.admin['username']}").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Admins cannot demote or deactivate themselves"
    )
    assert _admin_get_user(web, web.admin["username"])["role"] == "admin"


def test_admin_sets_a_quota_and_creates_a_user(
    page: Page, web: WebServer, sign_in: SignIn
) -> None:
    target = web.new_user("quota")
    name = target["username"]
    sign_in(page, web.admin)
    _search_user(page, name)
    expect(page.locator("td.user-quota .quota-now")).to_have_text("default")
    page.get_by_label(f"Daily token quota of {name}").fill("5000")
    page.get_by_role("button", name=f"Set the quota of {name}").click()
    expect(page.get_by_text(f"{name} may now use 5,000 tokens a day.")).to_be_visible()
    expect(page.locator("td.user-quota .quota-now")).to_have_text("5,000")
    assert _admin_get_user(web, name)["daily_token_quota"] == 5000
    usage = web.call("GET", "/users/me/usage", target).json()
    assert usage["quota"] == 5000, usage

    page.get_by_label(f"Daily token quota of {name}").fill("")
    page.get_by_role("button", name=f"Set the quota of {name}").click()
    expect(page.locator("td.user-quota .quota-now")).to_have_text("default")
    assert _admin_get_user(web, name)["daily_token_quota"] is None

    created = f"{name[:24]}new"
    page.get_by_label("Username", exact=True).fill(created)
    page.get_by_label("Password", exact=True).fill("a created user's passphrase")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_text(f"{created} is created.")).to_be_visible()
    assert (
        web.client.post(
            "/auth/token",
            data={"username": created, "password": "a created user's passphrase"},
        ).status_code
        == 200
    )
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("alert")).to_contain_text("A user needs a username")


def test_admin_deletes_a_user(page: Page, web: WebServer, sign_in: SignIn) -> None:
    target = web.new_user("del")
    sign_in(page, web.admin)
    _search_user(page, target["username"])
    page.get_by_role("button", name=f"Delete {target['username']}").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.get_by_text(f"{target['username']} is deleted.")).to_be_visible()
    expect(
        page.get_by_text(f"No username contains “{target['username']}”.")
    ).to_be_visible()
    assert web.client.post("/auth/token", data=target).status_code == 401


def test_admin_sees_another_users_question(
    page: Page, web: WebServer, sign_in: SignIn
) -> None:
    asker = web.new_user("asker")
    question = _ask(web, asker, f"What does {asker['username']} want to know?")
    sign_in(page, web.admin)
    page.goto("/#/admin/questions")
    newest = page.locator("li.admin-question").first
    expect(newest).to_contain_text(question["content"])
    expect(newest).to_contain_text(asker["username"])

    page.get_by_label("User", exact=True).fill(asker["username"])
    page.get_by_role("button", name="Filter").click()
    items = page.locator("li.admin-question")
    expect(items).to_have_count(1)
    expect(items).to_contain_text(question["content"])
    expect(items).to_contain_text("You asked")

    page.get_by_label("User", exact=True).fill(asker["username"] + "zz")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("alert")).to_contain_text("There is no user named")

    page.get_by_label("User", exact=True).fill(asker["username"])
    page.get_by_role("button", name="Filter").click()
    items.get_by_role("link", name=re.compile("^Open question")).click()
    expect(page).to_have_url(re.compile(rf"#/history/{question['id']}$"))
    expect(page.get_by_text(question["content"]).first).to_be_visible()


def test_admin_questions_older_paging(
    page: Page, web: WebServer, sign_in: SignIn
) -> None:
    # 22 questions of two users (each stays under the per-minute limit), found
    # by a word only they contain: 20 a page, then Older.
    marker = f"m{uuid.uuid4().hex[:12]}"
    askers = [web.new_user("pga"), web.new_user("pgb")]
    tokens = [web.token(creds) for creds in askers]
    for n in range(22):
        answer = web.client.post(
            "/questions",
            json={"content": f"{marker} question {n}"},
            headers={"Authorization": f"Bearer {tokens[n % 2]}"},
        )
        assert answer.status_code == 201, answer.text
    sign_in(page, web.admin)
    page.goto("/#/admin/questions")
    page.get_by_label("Text", exact=True).fill(marker)
    page.get_by_role("button", name="Filter").click()
    items = page.locator("li.admin-question")
    expect(items).to_have_count(20)
    expect(page.get_by_text("20 of 22 questions")).to_be_visible()
    expect(items.first).to_contain_text(f"{marker} question 21")
    expect(items.first).to_contain_text(askers[1]["username"])
    page.get_by_role("button", name="Older").click()
    expect(items).to_have_count(22)
    expect(page.get_by_text("22 of 22 questions")).to_be_visible()
    expect(items.last).to_contain_text(f"{marker} question 0")
    expect(items.last).to_contain_text(askers[0]["username"])
    expect(page.get_by_role("button", name="Older")).to_have_count(0)


def test_leaderboard_shows_a_user_who_asked(
    page: Page, web: WebServer, sign_in: SignIn
) -> None:
    asker = web.new_user("lead")
    _ask(web, asker, "Count me on the leaderboard")
    sign_in(page, web.admin)
    page.goto("/#/admin/leaderboard")
    row = page.locator("table.leaderboard-table tr", has_text=asker["username"])
    expect(row).to_have_count(1)
    page.get_by_label("Period").select_option(label="Today")
    page.get_by_label("Rank by").select_option("questions")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(2)).to_have_text("1")


def test_narrow_screen_no_side_scroll(
    mobile_page: Page, web: WebServer, sign_in: SignIn
) -> None:
    page = mobile_page
    asker = web.new_user("narrow")
    _ask(web, asker, "A question to fill the admin pages")
    sign_in(page, web.admin)
    page.goto("/#/admin/users")
    expect(page.locator("table.users-table tbody tr").first).to_be_visible()
    _no_side_scroll(page)

    page.goto("/#/keys")
    page.get_by_label("Name", exact=True).fill("phone")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_label("Your new key", exact=True)).to_have_value(
        re.compile(r"^ag-")
    )
    expect(page.locator("table.keys-table tbody tr").first).to_be_visible()
    _no_side_scroll(page)
    key_id = page.locator("table.keys-table tbody tr").first.get_attribute(
        "data-key-id"
    )
    revoked = web.call("DELETE", f"/users/me/api-keys/{key_id}", web.admin)
    assert revoked.status_code == 204

    loaded = {
        "#/admin/questions": "li.admin-question",
        "#/admin/leaderboard": "table.leaderboard-table",
        "#/account": ".account-username",
    }
    for route, selector in loaded.items():
        page.goto(f"/{route}")
        expect(page.locator(selector).first).to_be_visible()
        _no_side_scroll(page)
