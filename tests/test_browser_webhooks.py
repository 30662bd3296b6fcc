"""Webhooks in a real browser: add an endpoint and see its secret once, then
see a delivery and its attempts on the endpoint's page and the job's page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from standardwebhooks import Webhook

from jobs import pipeline
from jobs.models import WebhookEndpoint
from tests import test_browser_pages as harness
from tests.factories import UserFactory, make_job
from tests.fakes.callback_receiver import FakeCallbackReceiver
from tests.test_browser_pages import assert_no_horizontal_scroll, log_in_as, shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
browser, page, phone = harness.browser, harness.page, harness.phone  # fixtures


def test_add_an_endpoint_see_the_secret_once_then_a_delivery_with_its_attempts(page, live_server, settings):
    settings.LOCAL_FRAMES = 14
    settings.WEBHOOK_RETRY_SCHEDULE = [0.0, 0.0]
    with FakeCallbackReceiver() as receiver:
        settings.SAFE_FETCH_ALLOW = (receiver.address,)
        user = UserFactory()
        log_in_as(page, live_server.url, user)
        page.goto(live_server.url + "/")
        page.get_by_role("link", name="Webhooks").click()
        expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()

        # The URL field is as wide as the description (it once kept the browser's narrow default).
        url_box, description_box = (
            page.get_by_label("URL").bounding_box(),
            page.get_by_label("Description").bounding_box(),
        )
        assert url_box["width"] == description_box["width"]
        page.get_by_label("URL").fill(f"{receiver.base_url}/hooks")
        page.get_by_label("Description").fill("Order service")
        page.get_by_role("button", name="Add endpoint").click()
        secret_box = page.locator("#new-secret")
        expect(secret_box).to_have_value(WebhookEndpoint.objects.get(owner=user).secret)
        expect(page.locator("#new-secret-box")).to_contain_text("shown only this once")
        shot(page, "webhooks", "01-secret-once")
        secret = secret_box.input_value()

        page.goto(live_server.url + "/webhooks/")  # coming back: the secret is not shown again
        expect(page.locator("#new-secret")).to_have_count(0)
        expect(page.locator("#endpoints")).to_contain_text(f"{receiver.base_url}/hooks")

        receiver.answers.append(500)  # the first attempt fails; the retry (after 0 s) gets through
        job = make_job(user)
        pipeline.fail(job, "x", "No.")
        [first] = receiver.wait_for(1)
        assert Webhook(secret).verify(first.body, first.headers)["type"] == "job.failed"
        from jobs.webhooks import dispatch

        dispatch.dispatch()
        receiver.wait_for(2)

        page.get_by_role("link", name=f"{receiver.base_url}/hooks").click()
        delivery = page.locator(".delivery").first
        expect(delivery).to_contain_text("job.failed")
        expect(delivery).to_contain_text("Delivered")
        attempts = delivery.locator("tr.attempt")
        expect(attempts).to_have_count(2)
        expect(attempts.nth(0)).to_contain_text("HTTP 500")
        expect(attempts.nth(1)).to_contain_text("HTTP 200")
        shot(page, "webhooks", "02-endpoint-deliveries")

        page.goto(f"{live_server.url}/jobs/{job.pk}/")
        expect(page.locator("#job-webhooks")).to_contain_text("HTTP 200")


def test_the_webhooks_page_fits_a_phone(phone, live_server):
    log_in_as(phone, live_server.url, UserFactory())
    phone.goto(live_server.url + "/webhooks/")
    expect(phone.get_by_role("button", name="Add endpoint")).to_be_visible()
    assert_no_horizontal_scroll(phone)
