"""The job page in a real browser: it polls less often while the tab is
hidden and stops at a final state; a failed job says why and what to do, and
one click tries again; a finished video fits a phone."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from jobs import pipeline
from jobs.models import Job
from tests import test_browser_pages as harness
from tests.factories import UserFactory, make_job
from tests.test_browser_pages import assert_no_horizontal_scroll, log_in_as, shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
browser, page, phone, no_worker = harness.browser, harness.page, harness.phone, harness.no_worker  # fixtures

SET_HIDDEN = """hidden => {
  Object.defineProperty(document, 'hidden', {get: () => hidden, configurable: true});
  Object.defineProperty(document, 'visibilityState', {get: () => hidden ? 'hidden' : 'visible', configurable: true});
  document.dispatchEvent(new Event('visibilitychange'));
}"""


def polls_during(page: Page, seconds: float) -> int:
    seen: list[str] = []

    def on_request(request):
        if request.url.endswith("/status.json"):
            seen.append(request.url)

    page.on("request", on_request)
    time.sleep(seconds)
    page.wait_for_timeout(50)  # let Playwright deliver the events
    page.remove_listener("request", on_request)
    return len(seen)


def test_it_polls_less_while_hidden_and_stops_at_a_final_state(page, live_server, no_worker):
    user = UserFactory()
    job = make_job(user)  # queued; no worker runs it
    log_in_as(page, live_server.url, user)
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    expect(page.locator("#job-status")).to_have_text("Queued")

    assert polls_during(page, 3.5) >= 2  # about one a second
    page.evaluate(SET_HIDDEN, True)
    assert polls_during(page, 4) <= 1
    page.evaluate(SET_HIDDEN, False)  # back to the tab: one look at once, then every second
    assert polls_during(page, 1.5) >= 1

    pipeline.fail(job, "render_failed", "The video could not be rendered on this machine.")
    expect(page.locator("#job-status")).to_have_text("Failed")
    expect(page.locator("#job-error")).to_have_text("The video could not be rendered on this machine.")
    expect(page.locator("#job-advice")).to_contain_text("You were not charged")
    expect(page.locator("#job-advice")).to_contain_text("Try again")
    expect(page.locator("#credit-balance")).to_have_text("100")  # the held credit came back
    expect(page.locator("#job-cancel")).to_be_hidden()
    assert polls_during(page, 3) == 0
    shot(page, "job", "01-failed")

    page.get_by_role("button", name="Try again").click()
    page.wait_for_url(lambda url: str(job.pk) not in url)
    new = Job.objects.exclude(pk=job.pk).get()
    assert new.upload_id == job.upload_id and new.status == Job.QUEUED
    expect(page.locator("#job-status")).to_have_text("Queued")
    shot(page, "job", "02-tried-again")

    page.get_by_role("button", name="Cancel this job").click()
    expect(page.get_by_role("status").first).to_contain_text("was cancelled")
    expect(page.locator("#job-status")).to_have_text("Cancelled")
    expect(page.locator("#job-advice")).to_contain_text("not charged")
    shot(page, "job", "03-cancelled")


def test_a_finished_video_fits_a_phone(phone, live_server, settings):
    settings.LOCAL_FRAMES = 14
    user = UserFactory()
    job = make_job(user)
    pipeline.advance(job.pk)
    log_in_as(phone, live_server.url, user)
    phone.goto(f"{live_server.url}/jobs/{job.pk}/")
    expect(phone.locator("#job-status")).to_have_text("Completed")
    phone.wait_for_function("() => document.querySelector('#job-video').readyState >= 1")
    assert phone.locator("#job-video").evaluate("v => v.duration") > 1
    box = phone.locator("#job-video").bounding_box()
    assert box["width"] <= 390
    assert_no_horizontal_scroll(phone)
    shot(phone, "job", "04-completed")
