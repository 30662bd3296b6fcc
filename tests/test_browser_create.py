"""From sign-up to a playing video in a real browser, with a real worker.

Sign up, upload a real JPEG, see it framed, move the sliders (one by
keyboard), submit, watch the progress bar move without the page reloading,
and end with the <video> playing a clip of positive duration; then seek,
download, and make a variation with a new seed.
"""

from __future__ import annotations

import base64

import pytest
from playwright.sync_api import Page, expect

from jobs.models import Job
from tests import test_browser_pages as harness
from tests.factories import UserFactory, photo_bytes
from tests.test_browser_pages import assert_no_horizontal_scroll, log_in_as, set_slider, shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
browser, page, phone, no_worker = harness.browser, harness.page, harness.phone, harness.no_worker  # fixtures

SAMPLE_PROGRESS = """() => {
  window.__progress = [];
  const bar = document.querySelector('#job-progress');
  window.__sampler = setInterval(() => window.__progress.push(bar.value), 50);
}"""


def canvas_size(page: Page) -> list[int]:
    return page.locator("#preview").evaluate("c => [c.width, c.height, c.dataset.framing]")


def sign_up(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login/")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(f"{username}@example.com")
    page.get_by_label("Password", exact=True).fill("a long pass phrase 9")
    page.get_by_label("Password confirmation").fill("a long pass phrase 9")
    shot(page, "create", "01-sign-up")
    page.get_by_role("button", name="Create my account").click()
    expect(page.get_by_role("heading", name="Make a video from a photo")).to_be_visible()
    expect(page.get_by_role("status").first).to_contain_text("100 credits to start with")


def test_a_new_marketer_turns_a_photo_into_a_playing_video(page, live_server, cluster_factory, tmp_path):
    # Long enough (about 5 s of rendering on an idle machine) that the page's
    # one-second polls see the bar at several points, however fast the machine.
    # A render this long outlasts the cluster tests' short task timeout and lease on a
    # busy machine: give it room, or the job is killed and retried until quarantined.
    cluster = cluster_factory(
        LOCAL_FRAMES="1200", LOCAL_FPS="24", Q_TIMEOUT="150", Q_RETRY="180", JOB_LEASE_SECONDS="200"
    )
    cluster.start("worker")
    cluster.start("sweeper")
    photo = tmp_path / "beach.jpg"
    photo.write_bytes(photo_bytes(1600, 1000))

    sign_up(page, live_server.url, "maria")
    expect(page.locator("#credit-balance")).to_have_text("100")
    shot(page, "create", "02-empty-form")

    page.get_by_label("Photo", exact=True).set_input_files(str(photo))
    expect(page.locator("#preview")).to_be_visible()
    # 1600×1000 (1.6:1) is nearest 16:9, which is wider: 10% of the height is cut.
    assert canvas_size(page) == [1024, 576, "landscape"]
    expect(page.locator("#preview-caption")).to_contain_text("Landscape 1024×576")
    expect(page.locator("#preview-caption")).to_contain_text("10% of the height")
    page.get_by_label("Square").check()
    assert canvas_size(page) == [768, 768, "square"]
    page.get_by_label("Automatic").check()
    assert canvas_size(page) == [1024, 576, "landscape"]

    set_slider(page, "#id_motion_bucket_id", "220")
    expect(page.locator("#motion-value")).to_have_text("220")
    page.get_by_label("Fidelity (cfg_scale)").focus()
    page.keyboard.press("ArrowRight")  # sliders work from the keyboard
    page.keyboard.press("ArrowRight")
    expect(page.locator("#cfg-value")).to_have_text("2.0")
    page.get_by_label("Fixed").check()
    page.get_by_label("Seed number").fill("4242")
    shot(page, "create", "03-form-filled")

    page.get_by_role("button", name="Make the video").click()
    page.wait_for_url("**/jobs/*/")
    page.evaluate("window.__sameDocument = true")
    page.evaluate(SAMPLE_PROGRESS)
    job = Job.objects.get()
    assert (job.motion_bucket_id, job.cfg_scale, job.seed, job.width) == (220, 2.0, 4242, 1024)
    expect(page.locator("#job-status")).to_have_text("Running", timeout=30_000)
    page.wait_for_function("() => window.__progress.some(v => v > 0 && v < 1)", timeout=30_000)
    shot(page, "create", "04-progress")

    expect(page.locator("#job-status")).to_have_text("Completed", timeout=90_000)
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    seen = page.evaluate("clearInterval(window.__sampler), window.__progress")
    moving = sorted({round(v, 3) for v in seen if 0 < v < 1})
    assert len(moving) >= 2, f"the progress bar did not move: {moving}"
    expect(page.locator("#job-progress-box")).to_be_hidden()
    expect(page.locator("#job-cancel")).to_be_hidden()

    video = page.locator("#job-video")
    expect(video).to_be_visible()
    assert video.get_attribute("poster").endswith("/poster.jpg")
    page.wait_for_function("() => document.querySelector('#job-video').readyState >= 1", timeout=15_000)
    duration = video.evaluate("v => v.duration")
    assert duration > 45.0  # 1200 frames at 24 fps
    video.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function("() => document.querySelector('#job-video').currentTime > 0.2", timeout=15_000)
    shot(page, "create", "05-playing")

    # Seek: the server answers ranges, so the browser can jump ahead.
    video.evaluate("v => { v.currentTime = v.duration * 0.75; }")
    page.wait_for_function(
        "() => { const v = document.querySelector('#job-video'); return !v.seeking && v.currentTime > v.duration / 2 }",
        timeout=15_000,
    )
    expect(page.locator("#job-events li").first).to_contain_text("queued")
    expect(page.locator("#job-events li").last).to_contain_text("completed")
    expect(page.locator("#job-seed")).to_have_text("4242")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download MP4").click()
    assert download.value.suggested_filename == f"i2v-{job.pk}.mp4"
    assert download.value.path().stat().st_size > 10_000

    page.get_by_role("button", name="Try a new seed").click()
    page.wait_for_url(lambda url: str(job.pk) not in url and "/jobs/" in url)
    new = Job.objects.exclude(pk=job.pk).get()
    assert (new.seed, new.upload_id, new.motion_bucket_id) == (0, job.upload_id, 220)
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=90_000)
    shot(page, "create", "06-new-seed")


def test_a_dropped_photo_is_previewed_and_sent(page, live_server, no_worker):
    log_in_as(page, live_server.url, UserFactory())
    page.goto(live_server.url + "/")
    data = base64.b64encode(photo_bytes(900, 1500)).decode()
    page.locator("#dropzone").evaluate(
        """(zone, b64) => {
          const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
          const dt = new DataTransfer();
          dt.items.add(new File([bytes], "tall.jpg", {type: "image/jpeg"}));
          zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true, cancelable: true}));
          zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
        }""",
        data,
    )
    expect(page.locator("#preview")).to_be_visible()
    assert canvas_size(page) == [576, 1024, "portrait"]
    shot(page, "create", "07-dropped-portrait")
    page.get_by_role("button", name="Make the video").click()
    page.wait_for_url("**/jobs/*/")
    job = Job.objects.get()
    assert (job.width, job.height, job.upload.original_name) == (576, 1024, "tall.jpg")


def test_every_control_has_a_label_and_works_from_the_keyboard(page, live_server):
    log_in_as(page, live_server.url, UserFactory())
    page.goto(live_server.url + "/")
    for label in (
        "Photo",
        "Automatic",
        "Landscape",
        "Portrait",
        "Square",
        "Motion",
        "Fidelity (cfg_scale)",
        "Random",
        "Fixed",
        "Seed number",
        "Local (embedded, offline)",
        "Model",
    ):
        expect(page.get_by_label(label, exact=False).first).to_be_attached()
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
              .filter(el => !el.labels || el.labels.length === 0).map(el => el.name || el.id)"""
    )
    assert unlabelled == []

    # Tab from the photo to the motion slider, then move it with the arrow keys.
    page.get_by_label("Photo", exact=True).focus()
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "id_motion_bucket_id":
            break
    assert page.evaluate("document.activeElement.id") == "id_motion_bucket_id"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("End")
    expect(page.locator("#motion-value")).to_have_text("255")
    page.keyboard.press("Home")
    expect(page.locator("#motion-value")).to_have_text("1")
    # The framing choice is a radio group: arrow keys move through it.
    page.get_by_label("Automatic").focus()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_label("Landscape")).to_be_checked()
    shot(page, "create", "08-keyboard")


def test_the_create_page_fits_a_phone(phone, live_server, tmp_path):
    log_in_as(phone, live_server.url, UserFactory())
    phone.goto(live_server.url + "/")
    assert_no_horizontal_scroll(phone)
    photo = tmp_path / "wide.jpg"
    photo.write_bytes(photo_bytes(2000, 900))
    phone.get_by_label("Photo", exact=True).set_input_files(str(photo))
    expect(phone.locator("#preview")).to_be_visible()
    box = phone.locator("#preview").bounding_box()
    assert box["width"] <= 390 and abs(box["width"] / box["height"] - 1024 / 576) < 0.02
    assert_no_horizontal_scroll(phone)
    shot(phone, "create", "09-form")
