"""The web page's files (askgate.web): served at / and /web/ with the page's own
strict Content-Security-Policy, revalidated on every load, nothing outside the
static folder, and nothing at all with ASKGATE_WEB_ENABLED=false. What the page
does is tested in a real browser (tests/web/)."""

import hashlib
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from askgate.app import create_app
from askgate.config import Settings
from askgate.middleware import API_CSP, WEB_CSP
from askgate.web.router import STATIC


def _csp(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    pairs = (part.strip().partition(" ") for part in policy.split(";"))
    return {name: value for name, _, value in pairs}


async def test_the_page_is_served_at_the_root(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == (STATIC / "index.html").read_text()
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["content-security-policy"] == WEB_CSP
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert (await client.head("/")).status_code == 200


def test_the_page_policy_allows_no_inline_code_eval_or_other_origins() -> None:
    policy = _csp(httpx.Response(200, headers={"content-security-policy": WEB_CSP}))
    assert policy["default-src"] == "'none'"
    for directive in ("script-src", "style-src", "connect-src", "font-src", "img-src"):
        assert policy[directive] == "'self'", directive
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert "unsafe" not in WEB_CSP
    assert "http" not in WEB_CSP


async def test_every_static_file_is_served_under_web_with_its_type(
    client: httpx.AsyncClient,
) -> None:
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    files = [path for path in STATIC.rglob("*") if path.suffix in types]
    assert any(path.suffix == ".js" for path in files)
    for path in files:
        url = "/web/" + path.relative_to(STATIC).as_posix()
        response = await client.get(url)
        assert response.status_code == 200, url
        assert response.content == path.read_bytes(), url
        assert response.headers["content-type"].startswith(types[path.suffix]), url
        assert response.headers["content-security-policy"] == WEB_CSP, url
        assert response.headers["cache-control"] == "no-cache", url
        assert "etag" in response.headers
        again = await client.get(
            url, headers={"If-None-Match": response.headers["etag"]}
        )
        assert again.status_code == 304, url


async def test_the_page_loads_only_its_own_files(client: httpx.AsyncClient) -> None:
    """Every script, style and icon index.html names exists under /web/, and it
    has no inline script, style or event handler (the CSP would block them)."""
    html = (await client.get("/")).text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert "<style" not in html
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)
    assets = re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', html)
    assert any(url.endswith(".js") for url in assets)
    assert any(url.endswith(".css") for url in assets)
    for url in assets:
        assert url.startswith("/web/"), url
    for url in re.findall(r'(?:src|href)="([^"#]+)"', html):
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        assert (await client.get(url)).status_code == 200, url


@pytest.mark.parametrize(
    "path",
    [
        "/web/",
        "/web/missing.js",
        "/web/../config.py",
        "/web/%2e%2e/config.py",
        "/web/..%2fconfig.py",
        "/web/js/../../router.py",
    ],
)
async def test_nothing_outside_the_static_folder_is_served(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "Not Found"}


async def test_api_responses_keep_the_api_policy(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.headers["content-security-policy"] == API_CSP


@pytest.fixture
async def no_web(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings.model_copy(update={"web_enabled": False}))
    async with application.router.lifespan_context(application):
        yield application


async def test_the_page_can_be_turned_off(no_web: FastAPI) -> None:
    transport = httpx.ASGITransport(app=no_web)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        assert (await c.get("/")).status_code == 404
        assert (await c.get("/web/js/app.js")).status_code == 404
        assert (await c.get("/health/live")).status_code == 200


def test_web_enabled_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).web_enabled is True
    monkeypatch.setenv("ASKGATE_WEB_ENABLED", "false")
    assert Settings(_env_file=None).web_enabled is False


def test_the_vendored_libraries_are_the_files_their_readme_names() -> None:
    """vendor/README.md gives each file's sha256 (and its package, version and
    licence): a file changed by hand, or added without a note, fails here."""
    vendor = STATIC / "vendor"
    listed = {
        name: digest
        for digest, name in re.findall(
            r"^([0-9a-f]{64})  (\S+)$", (vendor / "README.md").read_text(), re.M
        )
    }
    present = {path.name for path in vendor.iterdir() if path.name != "README.md"}
    assert set(listed) == present
    for name, digest in listed.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name


def test_the_readme_shows_screenshots_that_exist() -> None:
    """`make screenshots` writes docs/screenshots/; the README links each one."""
    root = STATIC.parents[3]
    linked = set(
        re.findall(
            r"\(docs/screenshots/([\w-]+\.png)\)", (root / "README.md").read_text()
        )
    )
    taken = {path.name for path in (root / "docs" / "screenshots").glob("*.png")}
    assert linked
    assert linked == taken
