"""Accounts in a real browser: sign up, log out, log in, change the password;
the credits page with its chart; API keys created (shown once), renamed and
revoked; each page at a phone's width too."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from jobs import ledger, pipeline
from jobs.apikeys import authenticate_key
from jobs.models import ApiKey
from tests import test_browser_pages as harness
from tests.factories import UserFactory, make_job
from tests.test_browser_pages import assert_no_horizontal_scroll, log_in_as, shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
browser, page, phone = harness.browser, harness.page, harness.phone  # fixtures


def log_in_with_form(page: Page, base_url: str, username: str, password: str) -> None:
    page.goto(base_url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_sign_up_log_out_log_in_and_change_the_password(page, live_server, settings):
    settings.STARTING_CREDITS = 25
    page.goto(live_server.url + "/signup/")
    page.get_by_label("Username").fill("sam")
    page.get_by_label("Email").fill("sam@example.com")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Password confirmation").fill("short")
    page.get_by_role("button", name="Create my account").click()
    expect(page.locator("#id_password2-error")).to_contain_text("too short")
    shot(page, "account", "01-sign-up-refused")

    page.get_by_label("Password", exact=True).fill("a long pass phrase 9")
    page.get_by_label("Password confirmation").fill("a long pass phrase 9")
    page.get_by_role("button", name="Create my account").click()
    expect(page.get_by_role("status").first).to_contain_text("25 credits to start with")
    expect(page.locator("#credit-balance")).to_have_text("25")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(live_server.url + "/login/")
    log_in_with_form(page, live_server.url, "sam", "a long pass phrase 9")
    expect(page.get_by_role("heading", name="Make a video from a photo")).to_be_visible()

    page.get_by_role("link", name="sam").click()
    page.get_by_label("Old password").fill("a long pass phrase 9")
    page.get_by_label("New password", exact=True).fill("another phrase 42")
    page.get_by_label("New password confirmation").fill("another phrase 42")
    shot(page, "account", "02-password")
    page.get_by_role("button", name="Change my password").click()
    expect(page.get_by_role("status").first).to_contain_text("Your password was changed")

    page.get_by_role("button", name="Log out").click()
    log_in_with_form(page, live_server.url, "sam", "a long pass phrase 9")
    expect(page.get_by_role("alert")).to_contain_text("didn't match")
    log_in_with_form(page, live_server.url, "sam", "another phrase 42")
    expect(page.locator("#credit-balance")).to_have_text("25")


def test_the_credits_page_shows_the_ledger_and_the_spending(page, live_server, settings):
    settings.LOCAL_FRAMES = 14
    user = UserFactory(credits=40)
    for _ in range(2):
        pipeline.advance(make_job(user).pk)
    ledger.grant(user=user, amount=10, reason="Welcome bonus")
    log_in_as(page, live_server.url, user)
    page.goto(live_server.url + "/")
    page.get_by_role("link", name="48 credits").click()
    expect(page.get_by_role("heading", name="Credits", exact=True)).to_be_visible()
    rows = page.locator("#ledger tbody tr")
    expect(rows).to_have_count(4)  # grant, one line per video, bonus
    expect(rows.first).to_contain_text("Welcome bonus")
    expect(rows.first).to_contain_text("+10")
    for row in (rows.nth(1), rows.nth(2)):
        expect(row.locator(".outcome")).to_have_text("Charged")
        expect(row.locator("td.num")).to_have_text("-1")
    expect(page.locator("#ledger")).not_to_contain_text("Held")
    bars = page.locator("#spending-chart rect.bar:not(.empty-bar)")
    expect(bars).to_have_count(1)
    assert bars.first.get_attribute("data-spent") == "2"
    assert page.locator("#spending-chart rect").count() == 30
    shot(page, "account", "03-credits")


def test_api_keys_are_shown_once_renamed_and_revoked(page, live_server):
    user = UserFactory()
    log_in_as(page, live_server.url, user)
    page.goto(live_server.url + "/")
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_text("You have no API keys yet")).to_be_visible()

    page.get_by_label("Name", exact=True).fill("CMS plugin")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("New API key").input_value()
    assert secret.startswith("i2v_") and authenticate_key(secret).user == user
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#copy-done")).to_be_visible()
    shot(page, "account", "04-key-created")

    page.goto(live_server.url + "/keys/")
    expect(page.get_by_label("New API key")).to_have_count(0)
    assert secret not in page.content()

    key = ApiKey.objects.get()
    page.get_by_label(f"Name of key i2v_{key.prefix}").fill("Zapier")
    page.get_by_role("button", name="Rename").click()
    expect(page.get_by_role("status").first).to_contain_text("is now called “Zapier”")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Revoke the key Zapier").click()
    expect(page.get_by_role("status").first).to_contain_text("was revoked")
    expect(page.locator(f"#key-{key.pk}")).to_contain_text("Revoked")
    assert authenticate_key(secret) is None
    shot(page, "account", "05-key-revoked")


@pytest.mark.parametrize("path", ["/login/", "/signup/", "/account/password/", "/credits/", "/keys/"])
def test_the_account_pages_fit_a_phone(phone, live_server, path):
    user = UserFactory()
    ApiKey.objects.create(user=user, name="A rather long key name for a phone", prefix="abcd1234", key_hash="x")
    if path not in ("/login/", "/signup/"):
        log_in_as(phone, live_server.url, user)
    phone.goto(live_server.url + path)
    assert_no_horizontal_scroll(phone)
    shot(phone, "account", "06-" + path.strip("/").replace("/", "-"))
