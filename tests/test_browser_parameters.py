"""The provider's own parameters on the create page, in a real browser.

The local provider's duration and frame rate appear as sliders made from its
declaration, with their meaning under each; they are sent with the job, and
disappear (and are not sent) when a provider that does not take them is chosen.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from jobs.models import Job
from tests import test_browser_pages as harness
from tests.factories import UserFactory, photo_bytes
from tests.test_browser_pages import log_in_as, set_slider, shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
browser, page, no_worker = harness.browser, harness.page, harness.no_worker  # fixtures


def test_duration_and_frame_rate_are_chosen_on_the_form_and_reach_the_job(page, live_server, no_worker, tmp_path):
    user = UserFactory()
    photo = tmp_path / "shop.jpg"
    photo.write_bytes(photo_bytes(1600, 900))
    log_in_as(page, live_server.url, user)
    page.goto(f"{live_server.url}/")

    duration, fps = page.get_by_label("Duration"), page.get_by_label("Frame rate")
    expect(duration).to_be_visible()
    expect(duration).to_have_attribute("min", "1")
    expect(duration).to_have_attribute("max", "10")
    expect(fps).to_have_attribute("min", "12")
    expect(fps).to_have_attribute("max", "30")
    expect(page.locator("#param-duration-value")).to_have_text("5.0 s")
    expect(page.locator("#param-fps-value")).to_have_text("24 fps")
    expect(page.locator("#param-duration-help")).to_have_text("How long the video lasts, in seconds.")
    expect(page.locator("#param-fps-help")).to_contain_text("Frames per second")

    set_slider(page, "#id_duration", "3")
    set_slider(page, "#id_fps", "30")
    expect(page.locator("#param-duration-value")).to_have_text("3.0 s")
    expect(page.locator("#param-fps-value")).to_have_text("30 fps")
    page.get_by_label("Photo", exact=True).set_input_files(str(photo))
    shot(page, "parameters", "01-duration-and-fps")
    page.get_by_role("button", name="Make the video").click()
    page.wait_for_url("**/jobs/*/")

    job = Job.objects.get(owner=user)
    assert job.extra_params == {"duration": 3.0, "fps": 30}


def test_controls_follow_the_chosen_provider(page, live_server, no_worker, settings):
    settings.STABILITY_API_KEY = "sk-test"  # makes the second provider available
    log_in_as(page, live_server.url, UserFactory(credits=100))
    page.goto(f"{live_server.url}/")
    expect(page.get_by_label("Duration")).to_be_visible()

    page.locator("#id_provider_stability").check()
    expect(page.locator("[data-param=duration]")).to_be_hidden()
    expect(page.locator("#id_duration")).to_be_disabled()
    expect(page.locator("#id_fps")).to_be_disabled()
    shot(page, "parameters", "02-stability-has-none")

    page.locator("#id_provider_local").check()
    expect(page.get_by_label("Duration")).to_be_visible()
    expect(page.locator("#id_duration")).to_be_enabled()
    expect(page.locator("#param-duration-help")).to_have_text("How long the video lasts, in seconds.")
