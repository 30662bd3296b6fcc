"""The job page in a real browser while CLIP writes the prompt, and after: the
stage has its own label, and the prompt says where it came from."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from jobs.models import Job
from tests import test_browser_pages as harness
from tests.factories import UserFactory, make_job
from tests.test_browser_pages import log_in_as, shot
from tests.test_prompt_stage import drive
from tests.test_prompt_stage import prompted_provider as prompted_provider  # an autouse fixture
from tests.test_prompt_stage import replicate_fake as fake_replicate_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
browser, page, no_worker = harness.browser, harness.page, harness.no_worker  # fixtures
replicate = fake_replicate_server


def test_the_job_page_shows_the_prompt_being_written_then_whose_it_is(page, live_server, no_worker, replicate):
    user = UserFactory()
    job = drive(make_job(user, provider="prompted"), until=lambda job: job.status == Job.DESCRIBING)
    log_in_as(page, live_server.url, user)

    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    expect(page.locator("#job-status")).to_have_text("Writing a prompt")
    expect(page.locator("#job-prompt")).to_have_text("Being written from your photo…")
    expect(page.get_by_role("button", name="Cancel this job")).to_be_visible()
    shot(page, "prompt", "01-describing")

    drive(job)
    page.reload()
    expect(page.locator("#job-status")).to_have_text("Completed")
    expect(page.locator("#job-prompt")).to_have_text(f"{replicate.script.clip_text} (written by CLIP from your photo)")
    shot(page, "prompt", "02-written-by-clip")
