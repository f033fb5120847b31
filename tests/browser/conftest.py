"""A real browser for the gateway's pages: Debian's ``chromium`` driven by Playwright
(the system binary, never a downloaded one), and a real stack behind it (redis-server,
a ``celery worker`` and the gateway with a token), each on a free loopback port.

Every page's context refuses requests that leave loopback and records them, so a test
proves a page works offline; screenshots go to the test's ``tmp_path``, on demand
(``screenshot``) and when a test fails.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from producer.stack.launch import start_gateway, start_redis
from producer.stack.processes import ManagedProcess, free_port
from tests.support import REPO, Runtime

BROWSERS = ("chromium", "chromium-browser", "/usr/bin/chromium")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
TOKEN = "tok-browser-5d21"
TIMEOUT_MS = 15_000
LAUNCH_ARGS = (
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE ::1",
)
"""Chromium's own traffic (updates, sync, lookups of Google's hosts) is off, and a name
other than localhost resolves to nothing: what routing does not see cannot leave either."""


def chromium_binary() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep each phase's report on the item, so ``page`` knows the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Package-scoped: Playwright's sync API runs an event loop on this thread while it
    is open, so it must be closed before other tests start event loops of their own."""
    binary = chromium_binary()
    if binary is None:
        pytest.skip(
            "no chromium binary (looked for chromium, chromium-browser, /usr/bin/chromium): "
            "apt-get install chromium (make test does it as root)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=binary, headless=True, args=list(LAUNCH_ARGS)
        )
        yield browser
        browser.close()


@dataclass
class PageLog:
    """What a page did that a test may assert never happened."""

    offsite: list[str] = field(default_factory=list)
    """URLs refused because they were not to loopback."""
    errors: list[str] = field(default_factory=list)
    """Uncaught exceptions in the page's scripts."""


def _is_loopback(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname in LOOPBACK


@pytest.fixture
def page_log() -> PageLog:
    return PageLog()


@pytest.fixture
def page(browser: Browser, page_log: PageLog, request, tmp_path: Path) -> Iterator[Page]:
    """A fresh context and page; requests off loopback are aborted and logged."""

    def only_loopback(route: Route) -> None:
        if _is_loopback(route.request.url):
            route.continue_()
        else:
            page_log.offsite.append(route.request.url)
            route.abort("blockedbyclient")

    context = browser.new_context(service_workers="block", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    context.route("**/*", only_loopback)
    page = context.new_page()
    page.on("pageerror", lambda error: page_log.errors.append(str(error)))
    try:
        yield page
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            shot = tmp_path / "failure.png"
            with contextlib.suppress(PlaywrightError):  # a crashed page has none to give
                page.screenshot(path=shot, full_page=True)
                print(f"screenshot of the failed page: {shot}")
        context.close()


@pytest.fixture
def screenshot(page: Page, tmp_path: Path) -> Callable[..., Path]:
    """``screenshot(name, full_page=True)`` saves the page (or only what the viewport
    shows) as ``tmp_path/name.png``; returns its path."""

    def take(name: str, full_page: bool = True) -> Path:
        shot = tmp_path / f"{name}.png"
        page.screenshot(path=shot, full_page=full_page)
        return shot

    return take


@dataclass
class BrowserStack:
    """A runtime with a worker, and the gateway in front of it requiring ``token``."""

    runtime: Runtime
    gateway: ManagedProcess
    base_url: str
    token: str = TOKEN

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60)


@pytest.fixture(scope="package")
def browser_stack(tmp_path_factory) -> Iterator[BrowserStack]:
    directory = tmp_path_factory.mktemp("browser-stack")
    redis_process, redis_url = start_redis(directory / "redis")
    runtime = Runtime(redis_url, directory)
    gateway = None
    try:
        runtime.start_worker(concurrency=2)
        port = free_port()
        env = {**runtime.env, "FENCE_API_TOKENS": TOKEN}
        gateway = start_gateway(env, port, cwd=REPO, log_path=directory / "gateway.log")
        yield BrowserStack(runtime, gateway, f"http://127.0.0.1:{port}")
    finally:
        if gateway is not None:
            gateway.stop()
        runtime.stop()
        redis_process.stop()
