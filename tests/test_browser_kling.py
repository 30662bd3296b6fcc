"""Kling on the create page, in a real browser: the End frame input appears only
for it, its duration is a choice of 5 or 10 s (the local provider's is a
slider under the same name), and the prompts, duration and end frame reach
the job; its page says Kling cannot stop a job once sent."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from jobs.creation import create_upload
from jobs.models import Job
from tests import test_browser_pages as harness
from tests.factories import UserFactory, make_job, photo_bytes
from tests.test_browser_pages import log_in_as, set_slider, shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
browser, page, no_worker = harness.browser, harness.page, harness.no_worker  # fixtures


@pytest.fixture
def kling_configured(settings):
    settings.AIMLAPI_KEY = "aiml-key"  # no call is made: the job stays queued (no_worker)
    settings.PUBLIC_BASE_URL = ""  # Kling needs none: it takes the frame inline


def test_choosing_kling_shows_the_end_frame_and_its_duration_and_they_reach_the_job(
    page, live_server, no_worker, kling_configured, tmp_path
):
    user = UserFactory(credits=100)
    photo, end = tmp_path / "harbour.jpg", tmp_path / "harbour-night.jpg"
    photo.write_bytes(photo_bytes(1600, 900))
    end.write_bytes(photo_bytes(1600, 900, seed=4))
    log_in_as(page, live_server.url, user)
    page.goto(f"{live_server.url}/")

    tail = page.locator("#id_tail_image")
    expect(page.locator("#tail-field")).to_be_hidden()
    expect(tail).to_be_disabled()
    expect(page.locator("#id_duration")).to_have_attribute("type", "range")  # the local provider's slider

    page.locator("#id_provider_kling").check()
    expect(page.locator("#tail-field")).to_be_visible()
    expect(tail).to_be_enabled()
    expect(page.get_by_label("End frame")).to_be_visible()
    duration = page.locator("select#id_duration")
    expect(duration.locator("option")).to_have_text(["5 s", "10 s"])
    expect(page.locator("#prompt-fields")).to_be_visible()
    expect(page.locator("#cost-now")).to_have_text("10 credits")

    page.get_by_label("Photo", exact=True).set_input_files(str(photo))
    tail.set_input_files(str(end))
    duration.select_option("10")
    page.locator("#id_prompt").fill("The boats light their lamps as night falls")
    page.locator("#id_negative_prompt").fill("blur")
    set_slider(page, "#id_kling_cfg_scale", "0.7")
    shot(page, "kling", "01-end-frame-and-duration")
    page.get_by_role("button", name="Make the video").click()
    page.wait_for_url("**/jobs/*/")

    job = Job.objects.get(owner=user)
    assert job.provider == "kling" and job.model == "kling-video/v1/standard/image-to-video"
    assert job.extra_params == {"duration": 10, "kling_cfg_scale": 0.7}
    assert (job.prompt, job.negative_prompt) == ("The boats light their lamps as night falls", "blur")
    assert job.tail_upload.original_name == "harbour-night.jpg"
    assert (job.tail_upload.width, job.tail_upload.height) == (1024, 576)

    expect(page.locator("#job-tail img")).to_be_visible()
    expect(page.locator("#job-end-frame")).to_have_text("harbour-night.jpg")
    expect(page.locator("#job-no-cancel")).to_contain_text("cannot stop a job once it is sent")
    shot(page, "kling", "02-job-page")


def test_going_back_to_the_local_provider_hides_the_end_frame_and_restores_the_slider(
    page, live_server, no_worker, kling_configured, tmp_path
):
    user = UserFactory(credits=100)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(photo_bytes(1200, 700))
    log_in_as(page, live_server.url, user)
    page.goto(f"{live_server.url}/")

    page.locator("#id_provider_kling").check()
    expect(page.locator("select#id_duration")).to_be_visible()
    page.locator("#id_provider_local").check()

    expect(page.locator("#tail-field")).to_be_hidden()
    expect(page.locator("#id_tail_image")).to_be_disabled()
    slider = page.locator("input#id_duration")
    expect(slider).to_have_attribute("type", "range")
    expect(slider).to_have_attribute("max", "10")
    set_slider(page, "#id_duration", "3")
    expect(page.locator("#param-duration-value")).to_have_text("3.0 s")
    page.get_by_label("Photo", exact=True).set_input_files(str(photo))
    page.get_by_role("button", name="Make the video").click()
    page.wait_for_url("**/jobs/*/")

    job = Job.objects.get(owner=user)
    assert job.provider == "local" and job.extra_params["duration"] == 3.0 and job.tail_upload is None


def test_run_again_with_changes_keeps_the_end_frame_until_another_provider_is_chosen(
    page, live_server, no_worker, kling_configured
):
    user = UserFactory(credits=100)
    end = create_upload(owner=user, source=photo_bytes(1600, 900, seed=4), filename="dusk.jpg", framing="1024x576")
    earlier = make_job(user, provider="kling", prompt="night falls", tail_upload=end)
    log_in_as(page, live_server.url, user)

    page.goto(f"{live_server.url}/jobs/{earlier.pk}/")
    page.locator("#job-rerun-changes").click()
    kept = page.locator("#reuse-tail")
    expect(kept).to_be_visible()
    expect(kept).to_contain_text("dusk.jpg")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=kept.locator("img").element_handle())
    expect(page.get_by_label("Another end frame")).to_be_enabled()
    shot(page, "kling", "03-run-again-keeps-the-end-frame")

    page.locator("#id_provider_local").check()  # takes no end frame: the kept one is not sent
    expect(page.locator("#tail-field")).to_be_hidden()
    page.locator("#id_provider_kling").check()
    page.get_by_role("button", name="Make the video").click()
    page.wait_for_url("**/jobs/*/")

    new = Job.objects.exclude(pk=earlier.pk).get(owner=user)
    assert new.tail_upload.original_name == "dusk.jpg" and new.upload_id == earlier.upload_id
    expect(page.locator("#job-tail img")).to_be_visible()
