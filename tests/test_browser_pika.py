"""Pika on the create page, in a real browser: why it cannot be chosen, and its
own controls (made from its declaration) when it can."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from jobs.models import Job
from tests import test_browser_pages as harness
from tests.factories import UserFactory, photo_bytes
from tests.test_browser_pages import log_in_as, set_slider, shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
browser, page, no_worker = harness.browser, harness.page, harness.no_worker  # fixtures


def test_pika_without_a_public_address_is_shown_unavailable_with_the_reason(page, live_server, settings):
    settings.PIKAPI_BEARER_TOKEN = "tok"
    settings.PUBLIC_BASE_URL = ""
    log_in_as(page, live_server.url, UserFactory())
    page.goto(f"{live_server.url}/")

    expect(page.locator("#id_provider_pika")).to_be_disabled()
    expect(page.locator("#provider-pika-facts")).to_contain_text(
        "not available here: Pika fetches the image by URL and this server has no public address: "
        "an operator must set PUBLIC_BASE_URL"
    )
    shot(page, "pika", "01-unavailable-with-reason")


def test_choosing_pika_shows_its_own_controls_and_they_reach_the_job(page, live_server, no_worker, settings, tmp_path):
    settings.PIKAPI_BEARER_TOKEN = "tok"
    settings.PUBLIC_BASE_URL = live_server.url
    user = UserFactory(credits=100)
    photo = tmp_path / "shop.jpg"
    photo.write_bytes(photo_bytes(900, 1600))
    log_in_as(page, live_server.url, user)
    page.goto(f"{live_server.url}/")
    expect(page.locator("[data-param=motion]")).to_be_hidden()

    page.locator("#id_provider_pika").check()
    motion, aspect = page.locator("#id_motion"), page.locator("#id_aspectRatio")
    expect(motion).to_be_visible()
    expect(motion).to_have_attribute("min", "1")
    expect(motion).to_have_attribute("max", "4")
    expect(page.locator("#param-motion-value")).to_have_text("2")
    expect(page.locator("#motion-value")).to_have_text("127")  # the common motion is its own control
    expect(aspect.locator("option")).to_have_text(["auto", "16:9", "9:16", "1:1", "5:2", "4:5", "4:3"])
    expect(page.locator("[data-param=duration]")).to_be_hidden()

    set_slider(page, "#id_motion", "4")
    aspect.select_option("4:5")
    page.get_by_label("Photo", exact=True).set_input_files(str(photo))
    page.locator("#id_prompt").fill("a slow pan over the shop")
    shot(page, "pika", "02-own-controls")
    page.get_by_role("button", name="Make the video").click()
    page.wait_for_url("**/jobs/*/")

    job = Job.objects.get(owner=user)
    assert job.provider == "pika"
    assert job.extra_params == {"motion": 4, "guidanceScale": 16, "frameRate": 24, "aspectRatio": "4:5"}
