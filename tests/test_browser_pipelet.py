"""Pipelet on the create page, in a real browser: its own controls, each
model's cost, and its rule between duration and height said next to the field."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from jobs.models import Job
from tests import test_browser_pages as harness
from tests.factories import UserFactory, photo_bytes
from tests.test_browser_pages import log_in_as, set_slider, shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
browser, page, no_worker = harness.browser, harness.page, harness.no_worker  # fixtures


def test_pipelets_models_show_their_costs_and_its_controls_reach_the_job(
    page, live_server, no_worker, settings, tmp_path
):
    settings.PIPELET_API_KEY = "pl-key"
    user = UserFactory(credits=100)
    photo = tmp_path / "shop.jpg"
    photo.write_bytes(photo_bytes(1600, 900))
    log_in_as(page, live_server.url, user)
    page.goto(f"{live_server.url}/")
    expect(page.locator("#provider-pipelet-facts")).to_contain_text("10–25 credits by model")

    page.locator("#id_provider_pipelet").check()
    # Pipelet takes neither common slider: they are not offered while it is chosen.
    expect(page.locator("#id_motion_bucket_id")).to_be_hidden()
    expect(page.locator("#id_cfg_scale")).to_be_hidden()
    page.locator("#id_provider_local").check()
    expect(page.locator("#id_motion_bucket_id")).to_be_visible()
    expect(page.locator("#id_cfg_scale")).to_be_visible()
    page.locator("#id_provider_pipelet").check()
    expect(page.locator("#cost-now")).to_have_text("10 credits")
    page.locator("#id_model").select_option("wan22-fast-i2v-pro")
    expect(page.locator("#cost-now")).to_have_text("25 credits")
    duration, height = page.locator("#id_duration"), page.locator("#id_height")
    expect(duration).to_have_attribute("max", "7")
    expect(duration).to_have_attribute("step", "1")
    expect(height.locator("option")).to_have_text(["720", "480"])
    expect(page.locator("#id_priority")).to_be_visible()

    set_slider(page, "#id_duration", "7")
    height.select_option("480")
    page.get_by_label("Photo", exact=True).set_input_files(str(photo))
    page.locator("#id_prompt").fill("the shop's sign flickers on")
    shot(page, "pipelet", "01-own-controls")
    page.get_by_role("button", name="Make the video").click()
    page.wait_for_url("**/jobs/*/")

    job = Job.objects.get(owner=user)
    assert (job.provider, job.model, job.cost) == ("pipelet", "wan22-fast-i2v-pro", 25)
    assert job.extra_params == {"duration": 7, "height": 480, "priority": 0, "higher_quality_with_more_steps": "no"}


def test_seven_seconds_at_720p_is_refused_next_to_the_duration(page, live_server, no_worker, settings, tmp_path):
    settings.PIPELET_API_KEY = "pl-key"
    user = UserFactory(credits=100)
    photo = tmp_path / "shop.jpg"
    photo.write_bytes(photo_bytes(1600, 900))
    log_in_as(page, live_server.url, user)
    page.goto(f"{live_server.url}/")

    page.locator("#id_provider_pipelet").check()
    set_slider(page, "#id_duration", "7")
    page.get_by_label("Photo", exact=True).set_input_files(str(photo))
    page.locator("#id_prompt").fill("a fox")
    page.get_by_role("button", name="Make the video").click()

    expect(page.locator("#param-duration-error")).to_have_text(
        "At 720p Pipelet makes at most 5 s; choose 5 s or less, or 480p for up to 7 s."
    )
    shot(page, "pipelet", "02-rule-refused")
    assert not Job.objects.filter(owner=user).exists()
