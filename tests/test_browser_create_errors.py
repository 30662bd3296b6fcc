"""The create page's refusals in a real browser: a file that is not an image,
a file too large, not enough credits, a fixed seed without a number. Each is
said next to its field as soon as the page can tell, and again by the server
after sending when the browser's checks are bypassed."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from jobs.models import Job, Upload
from tests import test_browser_pages as harness
from tests.factories import UserFactory, photo_bytes
from tests.test_browser_pages import log_in_as, shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
browser, page, phone, no_worker = harness.browser, harness.page, harness.phone, harness.no_worker  # fixtures


def open_create_page(page: Page, base_url: str, *, credits: int = 100) -> None:
    log_in_as(page, base_url, UserFactory(credits=credits))
    page.goto(base_url + "/")
    expect(page.get_by_role("heading", name="Make a video from a photo")).to_be_visible()


def send_without_checks(page: Page) -> None:
    """What a browser without the page script does: post the form as it is."""
    with page.expect_navigation():
        page.evaluate("HTMLFormElement.prototype.submit.call(document.getElementById('create-form'))")


def test_a_file_that_is_not_an_image_is_refused_before_and_after_sending(page, live_server, tmp_path):
    fake = tmp_path / "photo.png"
    fake.write_text("<!doctype html><html><body>not a picture</body></html>")
    open_create_page(page, live_server.url)

    page.get_by_label("Photo", exact=True).set_input_files(str(fake))
    error = page.locator("#image-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("not a JPEG or PNG")
    expect(page.locator("#preview")).to_be_hidden()
    page.get_by_role("button", name="Make the video").click()
    expect(page).to_have_url(live_server.url + "/")  # not sent
    assert page.evaluate("document.activeElement.id") == "id_image"
    shot(page, "errors", "01-not-an-image-before")

    send_without_checks(page)
    expect(error).to_be_visible()
    expect(error).to_contain_text("JPEG or PNG")
    expect(error).to_contain_text("web page")
    shot(page, "errors", "02-not-an-image-after")
    assert Job.objects.count() == 0


def test_a_damaged_jpeg_is_refused_before_and_after_sending(page, live_server, tmp_path):
    broken = tmp_path / "cut.jpg"
    broken.write_bytes(photo_bytes(800, 600)[:600])
    open_create_page(page, live_server.url)
    page.get_by_label("Photo", exact=True).set_input_files(str(broken))
    expect(page.locator("#image-error")).to_contain_text("cannot be read")
    send_without_checks(page)
    expect(page.locator("#image-error")).to_contain_text("incomplete")
    shot(page, "errors", "03-damaged-after")


def test_a_file_too_large_is_refused_before_and_after_sending(page, live_server, tmp_path):
    big = tmp_path / "huge.jpg"
    big.write_bytes(b"\xff\xd8\xff" + b"\0" * (11 * 1024 * 1024))
    open_create_page(page, live_server.url)

    page.get_by_label("Photo", exact=True).set_input_files(str(big))
    error = page.locator("#image-error")
    expect(error).to_have_text("The file is 11 MB; images must be 10 MB or smaller.")
    page.get_by_role("button", name="Make the video").click()
    expect(page).to_have_url(live_server.url + "/")
    shot(page, "errors", "04-too-large-before")

    send_without_checks(page)
    expect(error).to_contain_text("10 MB or smaller")
    shot(page, "errors", "05-too-large-after")
    assert Upload.objects.count() == 0


def test_not_enough_credits_is_said_next_to_the_provider_before_and_after_sending(page, live_server, tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(photo_bytes())
    open_create_page(page, live_server.url, credits=0)

    error = page.locator("#provider-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Not enough credits: this costs 1 credit and your balance is 0")
    expect(page.locator("#provider-local-facts")).to_contain_text("more than your balance")
    page.get_by_label("Photo", exact=True).set_input_files(str(photo))
    expect(page.locator("#preview")).to_be_visible()
    page.get_by_role("button", name="Make the video").click()
    expect(page).to_have_url(live_server.url + "/")
    shot(page, "errors", "06-credits-before")

    send_without_checks(page)
    expect(error).to_contain_text("Not enough credits")
    expect(page.locator("#image-again")).to_be_visible()  # the browser dropped the file
    shot(page, "errors", "07-credits-after")
    assert Job.objects.count() == 0 and Upload.objects.count() == 0


def test_a_fixed_seed_without_a_number_is_asked_for(page, live_server, tmp_path, no_worker):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(photo_bytes())
    open_create_page(page, live_server.url)
    page.get_by_label("Photo", exact=True).set_input_files(str(photo))
    page.get_by_label("Fixed").check()
    assert page.evaluate("document.activeElement.id") == "id_seed"
    page.get_by_role("button", name="Make the video").click()
    expect(page.locator("#seed-error")).to_contain_text("Enter a seed from 1 to")
    shot(page, "errors", "08-seed")
    page.get_by_label("Seed number").fill("12")
    page.get_by_role("button", name="Make the video").click()
    page.wait_for_url("**/jobs/*/")
    assert Job.objects.get().seed == 12


def test_the_errors_fit_a_phone(phone, live_server, tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("just some text")
    open_create_page(phone, live_server.url, credits=0)
    phone.get_by_label("Photo", exact=True).set_input_files(str(fake))
    expect(phone.locator("#image-error")).to_be_visible()
    harness.assert_no_horizontal_scroll(phone)
    shot(phone, "errors", "09-errors")
