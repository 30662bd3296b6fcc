"""What a new user met on the first day, in a real browser: the job page's
times read the same live and after a reload, the seed keeps its "picked at
random" note, the finished clip plays muted in a loop on its own, "Run again
with changes" opens the form filled in with the same photo; the credits page,
the sign-up's one-account-per-email rule and the login page's demo hint."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect, sync_playwright

from jobs import actions, ledger, pipeline
from jobs.models import Job
from tests import test_browser_pages as harness
from tests.factories import UserFactory, make_job, make_upload
from tests.test_browser_pages import log_in_as, shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
browser, page, no_worker = harness.browser, harness.page, harness.no_worker  # fixtures
TIME = re.compile(r"^\d\d:\d\d:\d\d$")


@pytest.fixture
def far_away(browser):
    """A page whose browser lives nine hours from the server's UTC."""
    context = browser.new_context(viewport=harness.DESKTOP, timezone_id="Asia/Tokyo", locale="en-US")
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()
    harness._close_test_connections()


@pytest.fixture
def strict_page(monkeypatch):
    """A page in a Chromium with its default autoplay policy (the harness's
    browser allows sound without a gesture): only a muted video may start by itself."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    args = [a for a in harness.CHROMIUM_ARGS if not a.startswith("--autoplay-policy")]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=harness.CHROMIUM, args=args)
        context = browser.new_context(viewport=harness.DESKTOP)
        context.set_default_timeout(15_000)
        yield context.new_page()
        browser.close()
    harness._close_test_connections()


def timeline(page: Page) -> list[str]:
    return page.locator("#job-events time").all_inner_texts()


def test_times_and_the_seed_note_read_the_same_live_and_after_a_reload(far_away, live_server, no_worker, settings):
    settings.LOCAL_FRAMES = 10
    user = UserFactory()
    job = make_job(user, upload=make_upload(user, width=640, height=360))  # random seed, queued
    page = far_away
    log_in_as(page, live_server.url, user)
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    expect(page.locator("#job-seed")).to_have_text("random")

    pipeline.advance(job.pk)  # the worker's part, while the page watches
    expect(page.locator("#job-status")).to_have_text("Completed")
    expect(page.locator("#job-seed")).to_contain_text("(picked at random)")
    live_seed = page.locator("#job-seed").inner_text()
    live_times = timeline(page)
    assert len(live_times) == Job.objects.get(pk=job.pk).events.count() >= 5
    assert all(TIME.match(t) for t in live_times), live_times
    shot(page, "first-day", "01-job-live")

    page.reload()
    expect(page.locator("#job-status")).to_have_text("Completed")
    assert timeline(page) == live_times
    assert page.locator("#job-seed").inner_text() == live_seed
    expect(page.locator("#job-time-zone")).to_have_text("Times are in UTC.")
    # The times are the server's (UTC), not the browser's Tokyo clock.
    first = Job.objects.get(pk=job.pk).events.first().at
    assert live_times[0] == first.strftime("%H:%M:%S")


def assert_plays_muted_in_a_loop(page: Page) -> None:
    video = page.locator("#job-video")
    for attribute in ("autoplay", "muted", "loop", "playsinline", "controls"):
        assert video.get_attribute(attribute) is not None, f"the video lacks {attribute}"
    assert video.evaluate("v => v.muted && v.loop && v.autoplay")
    # Playing on its own: its clock moves without anybody pressing play ...
    page.wait_for_function("() => document.querySelector('#job-video').currentTime > 0.3")
    # ... and round again after the end (the clip is about 1 s long).
    page.wait_for_function(
        """() => { const v = document.querySelector('#job-video');
                   v.dataset.seenLate = v.dataset.seenLate || (v.currentTime > v.duration * 0.6 ? '1' : '');
                   return v.dataset.seenLate && v.currentTime < v.duration * 0.4 && !v.paused; }""",
        polling=50,
    )


def test_the_finished_clip_plays_muted_in_a_loop_live_and_after_a_reload(strict_page, live_server, no_worker, settings):
    page = strict_page
    settings.LOCAL_FRAMES = 24
    user = UserFactory()
    job = make_job(user, upload=make_upload(user, width=640, height=360))
    log_in_as(page, live_server.url, user)
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    expect(page.locator("#job-status")).to_have_text("Queued")
    pipeline.advance(job.pk)
    expect(page.locator("#job-status")).to_have_text("Completed")
    assert_plays_muted_in_a_loop(page)
    page.reload()
    assert_plays_muted_in_a_loop(page)
    shot(page, "first-day", "02-job-playing")


def test_run_again_with_changes_opens_the_form_filled_in_with_the_same_photo(page, live_server, settings):
    settings.LOCAL_FRAMES = 8
    user = UserFactory()
    job = make_job(
        user, upload=make_upload(user, width=600, height=600, framing="square"), motion_bucket_id=40, cfg_scale=3.5
    )
    pipeline.advance(job.pk)
    job.refresh_from_db()
    log_in_as(page, live_server.url, user)
    page.goto(f"{live_server.url}/jobs/{job.pk}/")
    page.get_by_role("link", name="Run again with changes").click()

    expect(page.locator("#id_provider_local")).to_be_checked()
    expect(page.locator("#id_framing_square")).to_be_checked()
    expect(page.locator("#id_motion_bucket_id")).to_have_value("40")
    expect(page.locator("#motion-value")).to_have_text("40")
    expect(page.locator("#id_cfg_scale")).to_have_value("3.5")
    expect(page.locator("#id_seed_mode_fixed")).to_be_checked()
    expect(page.locator("#id_seed")).to_have_value(str(job.seed_used))
    expect(page.locator("#reuse-photo")).to_contain_text("Using the photo of your video")
    page.wait_for_function("() => document.querySelector('#reuse-photo img').naturalWidth === 768")
    shot(page, "first-day", "03-run-again-with-changes")

    harness.set_slider(page, "#id_motion_bucket_id", "180")
    page.get_by_role("button", name="Make the video").click()  # no file chosen: the same photo
    page.wait_for_url(lambda url: "/jobs/" in url and str(job.pk) not in url)
    new = Job.objects.exclude(pk=job.pk).get()
    assert new.upload_id == job.upload_id
    assert (new.motion_bucket_id, new.cfg_scale, new.seed) == (180, 3.5, job.seed_used)
    expect(page.locator("#job-status")).to_be_visible()


def test_the_credits_page_tells_what_each_video_cost(page, live_server, settings):
    settings.LOCAL_FRAMES = 8
    user = UserFactory(credits=20)
    upload = make_upload(user, width=320, height=180)
    pipeline.advance(make_job(user, upload=upload).pk)
    pipeline.fail(make_job(user, upload=upload), "render_failed", "x")
    refunded = make_job(user, upload=upload)
    pipeline.advance(refunded.pk)
    actions.refund_job(refunded, staff=UserFactory(is_staff=True), reason="The clip stuttered")
    make_job(user, upload=upload)  # still waiting
    log_in_as(page, live_server.url, user)
    page.goto(f"{live_server.url}/credits/")
    outcomes = page.locator("#ledger .outcome").all_inner_texts()
    assert outcomes == ["Held", "Refunded", "Charged", "Not charged", "Charged", "Added"]
    changes = page.locator("#ledger td.num").all_inner_texts()
    assert changes == ["-1", "+1", "-1", "0", "-1", "+20"]
    assert sum(int(c) for c in changes) == ledger.balance_of(user) == 18
    expect(page.locator("#credit-balance")).to_have_text("18")
    shot(page, "first-day", "04-credits")


def test_sign_up_with_an_email_taken_in_other_letters_is_refused(page, live_server):
    UserFactory(username="marketer1", email="marketer1@example.com")
    page.goto(live_server.url + "/signup/")
    page.get_by_label("Username").fill("marketer-two")
    page.get_by_label("Email").fill("MARKETER1@example.com")
    page.get_by_label("Password", exact=True).fill("a long pass phrase 9")
    page.get_by_label("Password confirmation").fill("a long pass phrase 9")
    page.get_by_role("button", name="Create my account").click()
    expect(page.locator("#id_email-error")).to_contain_text("An account with this email address already exists")
    shot(page, "first-day", "05-sign-up-email-taken")


def test_the_login_page_mentions_the_demo_login_only_after_demouser(page, live_server, settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    page.goto(live_server.url + "/login/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.locator("#demo-login-hint")).to_have_count(0)
    shot(page, "first-day", "06-login-production")
    call_command("demouser", verbosity=0)
    page.reload()
    expect(page.locator("#demo-login-hint")).to_contain_text("make run printed a demo login")
    shot(page, "first-day", "07-login-local")
