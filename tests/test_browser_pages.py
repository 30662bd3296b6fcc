"""The pages in a real browser (Debian's chromium, headless).

This module also holds the browser harness the other ``test_browser_*``
files import: the ``browser``, ``page`` (desktop) and ``phone`` (390×844)
fixtures, logging in by session cookie, screenshots into tests/artifacts/
named by feature and step, and the no-horizontal-scroll check.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections
from django.test import Client
from django_q.conf import Conf
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.factories import UserFactory

# expect() waits 5 s unless told, the pages' own calls 15 s (_context): on a CI host
# running three suites side by side, a page can take longer than 5 s to settle.
expect.set_options(timeout=15_000)
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without these Chromium keeps trying to reach outside hosts, which this
# machine refuses; the tests stay on 127.0.0.1.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PASSWORD = "correct horse battery"

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM calls
    # the test makes between steps are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install chromium (.ci/run does)"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _context(browser: Browser, viewport: dict, **options) -> BrowserContext:
    context = browser.new_context(viewport=viewport, **options)
    context.set_default_timeout(15_000)
    return context


@pytest.fixture
def page(browser):
    context = _context(browser, DESKTOP)
    yield context.new_page()
    context.close()
    _close_test_connections()


@pytest.fixture
def phone(browser):
    context = _context(browser, PHONE, is_mobile=True, has_touch=True)
    yield context.new_page()
    context.close()
    _close_test_connections()


def _close_test_connections() -> None:
    # With Playwright's loop running, the test's ORM calls get a connection of
    # their own that pytest-django's teardown cannot see; left open, it kept
    # PostgreSQL from dropping the test database at the end of the run.
    connections.close_all()


@pytest.fixture
def no_worker(monkeypatch):
    """Jobs are queued for a worker that is not running: they stay queued
    (conftest would otherwise run them inside the live server's request)."""
    monkeypatch.setattr(Conf, "SYNC", False)


def shot(page: Page, feature: str, step: str) -> None:
    suffix = "-phone" if page.viewport_size["width"] < 600 else ""
    page.screenshot(path=str(ARTIFACTS / f"{feature}-{step}{suffix}.png"), full_page=True)


def log_in_as(page: Page, base_url: str, user) -> None:
    """Log ``user`` in by giving the browser a session cookie (the login form has its own test)."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": base_url}])


def assert_no_horizontal_scroll(page: Page) -> None:
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page scrolls sideways: {widths[0]}px wide in a {widths[1]}px window"


def set_slider(page: Page, selector: str, value: str) -> None:
    page.locator(selector).evaluate(
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }", value
    )


def test_a_visitor_logs_in_with_the_form(page, live_server):
    user = UserFactory()
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(f"{live_server.url}/login/?next=/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    shot(page, "pages", "01-login")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Make a video from a photo")).to_be_visible()
    expect(page.locator("#credit-balance")).to_have_text("100")


def test_a_wrong_password_is_said_on_the_login_page(page, live_server):
    user = UserFactory()
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill("not it")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("didn't match")
