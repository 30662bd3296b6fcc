"""The history gallery in a real browser: posters, status, provider and
date; filters; cancel from the list; pages; empty states; a phone's width."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from jobs import pipeline
from jobs.models import Job
from tests import test_browser_pages as harness
from tests.factories import UserFactory, make_job, make_upload
from tests.test_browser_pages import assert_no_horizontal_scroll, log_in_as, shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
browser, page, phone = harness.browser, harness.page, harness.phone  # fixtures


@pytest.fixture
def marketer(settings):
    """A user with two finished videos, one failed and one waiting."""
    settings.LOCAL_FRAMES = 14
    user = UserFactory()
    upload = make_upload(user)
    for _ in range(2):
        pipeline.advance(make_job(user, upload=upload).pk)
    pipeline.fail(make_job(user, upload=upload), "render_failed", "It broke.")
    make_job(user, upload=make_upload(user, width=700, height=1200))
    return user


def test_the_gallery_filters_and_cancels(page, live_server, marketer):
    log_in_as(page, live_server.url, marketer)
    page.goto(live_server.url + "/")
    page.get_by_role("link", name="My videos").click()
    cards = page.locator("#gallery > li")
    expect(cards).to_have_count(4)
    expect(page.locator("#gallery img.thumb")).to_have_count(2)  # the posters
    page.wait_for_function("() => [...document.querySelectorAll('#gallery img')].every(i => i.naturalWidth > 0)")
    expect(cards.first).to_contain_text("Queued")
    expect(cards.first).to_contain_text("Local (embedded, offline)")
    shot(page, "history", "01-gallery")

    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(cards).to_have_count(1)
    expect(cards.first).to_contain_text("Failed")
    shot(page, "history", "02-filtered")

    page.get_by_label("Provider").select_option("stability")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No videos match these filters")).to_be_visible()
    page.get_by_role("link", name="Clear filters").click()
    expect(cards).to_have_count(4)

    page.get_by_role("button", name="Cancel the video").click()
    expect(page.get_by_role("status").first).to_contain_text("was cancelled")
    expect(page).to_have_url(live_server.url + "/videos/")
    expect(cards.first).to_contain_text("Cancelled")
    expect(page.get_by_role("button", name="Cancel the video")).to_have_count(0)
    assert Job.objects.filter(status=Job.CANCELLED).count() == 1
    shot(page, "history", "03-cancelled")

    cards.nth(2).get_by_role("link").click()  # newest first: cancelled, failed, completed…
    expect(page.locator("#job-status")).to_have_text("Completed")


def test_the_gallery_has_pages(page, live_server):
    user = UserFactory()
    upload = make_upload(user)
    for _ in range(14):
        make_job(user, upload=upload)
    log_in_as(page, live_server.url, user)
    page.goto(live_server.url + "/videos/?status=queued")
    expect(page.locator("#gallery > li")).to_have_count(12)
    page.get_by_role("link", name="Older").click()
    expect(page.locator("#gallery > li")).to_have_count(2)
    expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    assert "status=queued" in page.url


def test_an_empty_history_says_what_to_do(page, live_server):
    log_in_as(page, live_server.url, UserFactory())
    page.goto(live_server.url + "/videos/")
    expect(page.get_by_text("No videos yet.")).to_be_visible()
    shot(page, "history", "04-empty")
    page.get_by_role("link", name="Make your first video").click()
    expect(page.get_by_role("heading", name="Make a video from a photo")).to_be_visible()


def test_the_gallery_fits_a_phone(phone, live_server, marketer):
    log_in_as(phone, live_server.url, marketer)
    phone.goto(live_server.url + "/videos/")
    expect(phone.locator("#gallery > li")).to_have_count(4)
    assert_no_horizontal_scroll(phone)
    shot(phone, "history", "05-gallery")
