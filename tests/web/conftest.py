"""The web page's tests: a real `askgate serve`, a real fake upstream, and Debian's
Chromium driven by Playwright (its sync API; the tests are plain functions).

Fixtures:
- `web` (session): the running server. `web.base_url`, `web.admin` (an admin's
  credentials), `web.upstream` (the fake upstream, run in a thread of its own:
  `web.upstream.set(mode="slow_stream")`; every test starts with it reset),
  `web.new_user()` (registers fresh credentials through the API), `web.token(creds)`,
  `web.client` (an httpx.Client on the server) and `web.call(...)`.
- `page` / `mobile_page`: a new browser context at 1280x800 / 360x740 whose test
  fails at teardown on any console error, uncaught page error, Content-Security-
  Policy violation, or request for anything but the server itself (such requests
  are also blocked).
- `sign_in(page, creds)`: signs in through the page's form.
- `screenshots`: the folder screenshots go to (ASKGATE_SCREENSHOTS_DIR, which
  `make screenshots` sets to docs/screenshots, or a temporary one).
"""

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Route,
    expect,
    sync_playwright,
)

from tests.fake_upstream import FakeUpstream

MODELS = ("fake", "fake-b")
ADMIN = {"username": "webadmin", "password": "an admin web passphrase"}
PASSWORD = "a long web test passphrase"
# Per user: low enough that a test reaches it in a few calls, high enough that
# no other test does.
QUESTIONS_PER_MINUTE = 12
STARTUP_LIMIT = 120  # seconds: a guard against hanging, not a speed
DESKTOP = {"width": 1280, "height": 800}
MOBILE = {"width": 360, "height": 740}
# Debian's Chromium (`make chromium` installs it); never a downloaded browser.
CHROMIUM = os.environ.get("ASKGATE_TEST_CHROMIUM", "/usr/bin/chromium")
# What keeps Chromium off the network (this machine's network is closed anyway).
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
]
# Reported by the page as console errors (Chromium adds its own CSP messages).
REPORT_CSP = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(
    "CSP violation: " + event.violatedDirective + " blocked " + event.blockedURI
  );
});
"""
DEFAULT_UPSTREAM: dict[str, Any] = {
    "mode": "ok",
    "slow_stream_interval": 0.1,
    "first_chunk_delay": 0.0,
    "fail_times": 0,
    "retry_after": None,
    "usage": "counted",
    "slow_stream_ticks": lambda content: 10_000,
}


class UpstreamThread:
    """A FakeUpstream served from a thread with its own event loop, so that the
    synchronous browser tests can drive it."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fake-upstream", daemon=True
        )
        self._fake: FakeUpstream | None = None

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    def start(self) -> None:
        self._thread.start()

        async def start() -> FakeUpstream:
            fake = FakeUpstream()
            await fake.start()
            return fake

        self._fake = self._run(start())

    @property
    def fake(self) -> FakeUpstream:
        assert self._fake is not None
        return self._fake

    @property
    def base_url(self) -> str:
        return self.fake.base_url

    def set(self, **attributes: Any) -> None:
        """Set the fake's knobs (mode, slow_stream_interval...) on its loop."""

        async def apply() -> None:
            for name, value in attributes.items():
                assert hasattr(self.fake, name), name
                setattr(self.fake, name, value)

        self._run(apply())

    def requests(self) -> list[dict[str, Any]]:
        async def copy() -> list[dict[str, Any]]:
            return list(self.fake.requests)

        result: list[dict[str, Any]] = self._run(copy())
        return result

    def stop(self) -> None:
        if self._fake is not None:
            self._run(self.fake.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@dataclass
class WebServer:
    base_url: str
    upstream: UpstreamThread
    admin: dict[str, str] = field(default_factory=lambda: dict(ADMIN))
    client: httpx.Client = field(init=False)
    _count: int = 0

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.base_url, timeout=30)

    def new_user(self, prefix: str = "web") -> dict[str, str]:
        """Fresh credentials, registered through the API."""
        self._count += 1
        creds = {
            "username": f"{prefix}{os.getpid()}x{self._count}x{time.monotonic_ns()}"[
                :32
            ],
            "password": PASSWORD,
        }
        registered = self.client.post("/auth/register", json=creds)
        assert registered.status_code == 201, registered.text
        return creds

    def token(self, creds: dict[str, str]) -> str:
        answer = self.client.post("/auth/token", data=creds)
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    def call(
        self, method: str, path: str, creds: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        """An API call, as `creds` when given (a fresh login each time)."""
        headers = dict(kw.pop("headers", {}))
        if creds is not None:
            headers["Authorization"] = f"Bearer {self.token(creds)}"
        return self.client.request(method, path, headers=headers, **kw)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_ready(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT
    while time.monotonic() < deadline:
        assert process.poll() is None, "askgate serve stopped"
        try:
            if httpx.get(f"{base_url}/health/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("askgate serve did not get ready")


@pytest.fixture(scope="session")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    home = tmp_path_factory.mktemp("web-server")
    upstream = UpstreamThread()
    upstream.start()
    (home / "models.json").write_text(
        json.dumps(
            {
                "models": [
                    {
                        "name": name,
                        "base_url": upstream.base_url,
                        "api_key": "",
                        "model": f"{name}-upstream",
                    }
                    for name in MODELS
                ]
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASKGATE_")}
    env.update(
        ASKGATE_DATA_DIR=str(home / "data"),
        ASKGATE_MODELS_FILE=str(home / "models.json"),
        ASKGATE_ADMIN_USERNAME=ADMIN["username"],
        ASKGATE_ADMIN_PASSWORD=ADMIN["password"],
        # Every test registers and signs in from 127.0.0.1.
        ASKGATE_REGISTRATIONS_PER_HOUR="100000",
        ASKGATE_LOGIN_FAILURES_PER_IP="100000",
        ASKGATE_ACCOUNT_CHANGES_PER_HOUR="1000",
        ASKGATE_QUESTIONS_PER_MINUTE=str(QUESTIONS_PER_MINUTE),
        # Failures in one test must not open the circuit for the next.
        ASKGATE_LLM_BREAKER_FAILURES="1000",
        ASKGATE_LLM_MAX_RETRIES="0",
    )
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = (home / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "askgate.cli", "serve", "--port", str(port)],
        cwd=home,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = WebServer(base_url=base_url, upstream=upstream)
    try:
        _wait_until_ready(base_url, process)
        yield server
    finally:
        server.client.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        upstream.stop()
    output = (home / "serve.log").read_text(errors="replace")
    assert "Traceback" not in output, output[-4000:]


@pytest.fixture(autouse=True)
def _reset_upstream(request: pytest.FixtureRequest) -> None:
    if "web" in request.fixturenames:
        web: WebServer = request.getfixturevalue("web")
        web.upstream.set(**DEFAULT_UPSTREAM)


# Per module, not per session: while Playwright's sync API is open, its event loop
# counts as running in this thread, and an async test (or asyncio.run) after it
# would fail.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs Debian's")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


@dataclass
class PageWatch:
    """What went wrong in a page: the test fails at teardown if anything did."""

    problems: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        # Chromium logs every 4xx/5xx the API answers; the page shows them in
        # words (the tests check that). A failed page asset is still a problem.
        url = message.location.get("url", "")
        path = urlsplit(url).path
        api_refusal = message.text.startswith(
            "Failed to load resource: the server responded"
        )
        if api_refusal and path != "/" and not path.startswith("/web/"):
            return
        self.problems.append(f"console error: {message.text} ({url})")

    def page_error(self, error: Exception) -> None:
        self.problems.append(f"page error: {error}")


@contextlib.contextmanager
def open_page(
    browser: Browser, web: WebServer, viewport: dict[str, int]
) -> Iterator[Page]:
    """A page in a new context; raises on leaving if anything went wrong in it."""
    watch = PageWatch()
    context = browser.new_context(
        viewport=viewport,  # type: ignore[arg-type]
        base_url=web.base_url,
        service_workers="block",
    )
    context.add_init_script(REPORT_CSP)
    origin = urlsplit(web.base_url).netloc

    def only_askgate(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).netloc == origin:
            route.continue_()
            return
        watch.problems.append(f"request leaving askgate: {url}")
        route.abort()

    context.route("**/*", only_askgate)
    page = context.new_page()
    page.on("console", watch.console)
    page.on("pageerror", watch.page_error)
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        context.close()
    assert watch.problems == []


@pytest.fixture
def page(browser: Browser, web: WebServer) -> Iterator[Page]:
    with open_page(browser, web, DESKTOP) as opened:
        yield opened


@pytest.fixture
def mobile_page(browser: Browser, web: WebServer) -> Iterator[Page]:
    with open_page(browser, web, MOBILE) as opened:
        yield opened


def sign_in_through_form(page: Page, creds: dict[str, str]) -> None:
    """Open the page and sign in with its form; returns once signed in."""
    page.goto("/")
    form = page.locator("form#signin-form")
    form.locator("input#username").fill(creds["username"])
    form.locator("input#password").fill(creds["password"])
    form.locator("button[type=submit]").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


@pytest.fixture
def sign_in() -> Callable[[Page, dict[str, str]], None]:
    return sign_in_through_form


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("ASKGATE_SCREENSHOTS_DIR")
    if not folder:
        return tmp_path_factory.mktemp("screenshots")
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path
