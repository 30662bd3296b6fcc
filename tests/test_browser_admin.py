"""The support admin's job page in a real browser: staff see the upload, the
poster and a video that plays and seeks; the same links refuse everyone else."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.urls import reverse
from playwright.sync_api import expect

from jobs import pipeline
from tests import test_browser_pages as harness
from tests.factories import UserFactory, make_job
from tests.storage_harness import storage_is_remote
from tests.test_browser_pages import log_in_as, shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
browser, page = harness.browser, harness.page  # fixtures

PICTURES = (".field-original_preview img", ".field-image_preview img", ".field-poster_preview img")


def completed_job():
    job = make_job(UserFactory(username="dora"), seed=42, prompt="a slow pan")
    pipeline.advance(job.pk)
    job.refresh_from_db()
    assert job.video and job.poster
    return job


def file_links(page) -> list[str]:
    """Every staff file the page links to: images, the video, its poster."""
    return page.evaluate(
        """() => [...new Set([
            ...[...document.querySelectorAll('img[src*="/staff/files/"]')].map(i => i.src),
            ...[...document.querySelectorAll('video')].flatMap(v => [v.src, v.poster]),
        ])]"""
    )


def test_staff_see_the_upload_the_poster_and_a_video_that_plays_and_seeks(page, live_server):
    job = completed_job()
    log_in_as(page, live_server.url, UserFactory(is_staff=True, is_superuser=True, username="support"))
    ranges: list[int] = []
    page.on("response", lambda r: ranges.append(r.status) if is_the_video(r.url) else None)

    page.goto(live_server.url + reverse("admin:jobs_job_change", args=[job.pk]))

    for selector in PICTURES:
        image = page.locator(selector)
        expect(image).to_have_count(1)
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert page.locator(".field-image_preview img").evaluate("i => [i.naturalWidth, i.naturalHeight]") == [
        job.width,
        job.height,
    ]

    video = page.locator("video#job-video")
    video.evaluate("v => v.play()")
    page.wait_for_function("v => v.currentTime > 0.3", arg=video.element_handle())
    # Seeking asks for a byte range and lands where it was asked to.
    video.evaluate("v => { v.pause(); v.currentTime = 1.5; }")
    page.wait_for_function("v => !v.seeking && Math.abs(v.currentTime - 1.5) < 0.1", arg=video.element_handle())
    assert 206 in ranges
    assert video.evaluate("v => v.seekable.length && v.seekable.end(0)") > 1.5

    # What the page reads: one timeline header, a readable provider job, no server path.
    expect(page.locator("#job-timeline thead tr")).to_have_count(1)
    expect(page.locator("#job-timeline tbody tr").first).to_contain_text("— → queued")
    expect(page.locator(".field-provider_job .readonly")).to_contain_text("Rendered on this server")
    assert "/work/" not in page.content() and '"image"' not in page.content()
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)  # completed: nothing to retry
    shot(page, "admin", "01-completed-job")


def is_the_video(url: str) -> bool:
    """Our staff link to the video, or (on S3 storage) the presigned URL it redirected to."""
    if storage_is_remote() and url.startswith(settings.AWS_S3_ENDPOINT_URL):
        return "/videos/" in url
    return "/staff/files/staff-video/" in url


def test_the_staff_links_refuse_visitors_and_plain_users(browser, page, live_server):
    job = completed_job()
    log_in_as(page, live_server.url, UserFactory(is_staff=True, is_superuser=True))
    page.goto(live_server.url + reverse("admin:jobs_job_change", args=[job.pk]))
    links = file_links(page)
    assert len(links) == 4  # original, normalised, poster, video
    for link in links:  # they work for staff
        assert page.request.get(link).status in (200, 206)

    visitor = browser.new_context()
    user = browser.new_context()
    log_in_as(user.new_page(), live_server.url, job.owner)  # even the job's owner is not staff
    try:
        for context in (visitor, user):
            for link in links:
                assert context.request.get(link).status == 404, link
    # (Raw /media/ URLs are checked in test_admin_files: Django's live test
    # server serves MEDIA_ROOT by itself, which the app never does.)
    finally:
        visitor.close()
        user.close()


def test_the_upload_list_and_page_show_the_images_to_staff(page, live_server):
    job = completed_job()
    log_in_as(page, live_server.url, UserFactory(is_staff=True, is_superuser=True))

    page.goto(live_server.url + reverse("admin:jobs_upload_changelist"))
    thumb = page.locator(".field-preview img")
    expect(thumb).to_have_count(1)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
    shot(page, "admin", "02-upload-list")

    page.goto(live_server.url + reverse("admin:jobs_upload_change", args=[job.upload.pk]))
    for selector in (".field-original_link img", ".field-large_preview img"):
        image = page.locator(selector)
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert page.locator(".field-original_link img").evaluate("i => i.naturalWidth") == job.upload.source_width
    expect(page.locator(".field-original_link")).to_contain_text("photo.jpg, JPEG, 1200×700")
    shot(page, "admin", "03-upload-page")


def test_a_failed_job_offers_retry_and_says_why_there_is_no_video(page, live_server):
    job = make_job(UserFactory())
    pipeline.fail(job, "render_failed", "The video could not be rendered on this machine.")
    log_in_as(page, live_server.url, UserFactory(is_staff=True, is_superuser=True))

    page.goto(live_server.url + reverse("admin:jobs_job_change", args=[job.pk]))

    expect(page.locator(".field-video_player .readonly")).to_have_text("— (no video: the job is failed)")
    image = page.locator(".field-image_preview img")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    shot(page, "admin", "04-failed-job")
    # The Retry button (a form, it POSTs) looks like the History link beside it.
    retry = page.get_by_role("button", name="Retry").bounding_box()
    history = page.locator(".object-tools a.historylink").bounding_box()
    assert abs(retry["height"] - history["height"]) <= 1 and abs(retry["y"] - history["y"]) <= 1
    page.get_by_role("button", name="Retry").click()
    expect(page.locator(".messagelist")).to_contain_text("retried as job")
    expect(page.get_by_role("button", name="Retry")).to_have_count(1)  # still the failed job's page
