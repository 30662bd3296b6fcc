"""The create page: every control labelled, providers with cost and availability,
and each refusal next to its field."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from jobs.models import Job, Upload
from providers.local import LocalProvider
from tests.factories import UserFactory, photo_bytes

pytestmark = pytest.mark.django_db

FORM = {"framing": "auto", "provider": "local", "motion_bucket_id": "160", "cfg_scale": "2.0", "seed_mode": "random"}


def post(client, data: bytes | None = None, **fields):
    body = {**FORM, **fields}
    if data is not None:
        body["image"] = SimpleUploadedFile("photo.jpg", data, content_type="image/jpeg")
    return client.post(reverse("home"), body)


def error_next_to(html: str, field_id: str) -> str:
    match = re.search(rf'<p class="error" role="alert" id="{field_id}"\s*>(.*?)</p>', html, re.S)
    assert match, f"no visible #{field_id} in the page"
    return match.group(1)


def test_it_labels_every_control(logged_in):
    html = logged_in.get(reverse("home")).content.decode()
    ids = set(re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', html))
    labelled = set(re.findall(r'<label[^>]*\bfor="([^"]+)"', html))
    assert ids - labelled == set(), "controls without a <label for>"
    for control in ("id_image", "id_framing_portrait", "id_motion_bucket_id", "id_cfg_scale", "id_seed", "id_model"):
        assert control in ids


def test_it_explains_the_sliders_in_a_sentence_each(logged_in):
    html = logged_in.get(reverse("home")).content.decode()
    assert "How far the camera moves" in html
    assert "How closely the video keeps to your photo" in html
    assert 'min="1" max="255"' in html and 'min="0" max="10"' in html


def test_it_lists_providers_with_cost_and_availability(logged_in, settings):
    settings.STABILITY_API_KEY = ""
    html = logged_in.get(reverse("home")).content.decode()
    local = html[html.index('id="provider-local-facts"') :][:300]
    stability = html[html.index('id="provider-stability-facts"') :][:300]
    assert "1 credit" in local and "available" in local
    assert "20 credits" in stability and "not available here" in stability
    assert re.search(r'id="id_provider_stability"[^>]*disabled', html, re.S)


def test_it_hides_the_prompts_unless_the_provider_uses_them(logged_in, monkeypatch):
    html = logged_in.get(reverse("home")).content.decode()
    assert re.search(r'<div id="prompt-fields"\s+hidden', html)
    monkeypatch.setattr(LocalProvider, "needs_prompt", True)
    html = logged_in.get(reverse("home")).content.decode()
    assert re.search(r'<div id="prompt-fields"\s*>', html)
    assert 'for="id_prompt"' in html and 'for="id_negative_prompt"' in html


def test_it_answers_json_clients_with_the_api_information(client):
    response = client.get("/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response.json()["endpoints"]["jobs"] == "/api/v1/jobs"


def test_it_makes_a_job_with_the_chosen_framing_and_a_random_seed(logged_in, user):
    response = post(logged_in, photo_bytes(1200, 700), framing="square", seed="77", seed_mode="random")
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("job-detail", args=[job.pk])
    assert (job.width, job.height, job.seed, job.motion_bucket_id, job.owner) == (768, 768, 0, 160, user)


def test_it_keeps_a_fixed_seed(logged_in):
    post(logged_in, photo_bytes(), seed_mode="fixed", seed="4242")
    assert Job.objects.get().seed == 4242


def test_a_fixed_seed_needs_a_number(logged_in):
    response = post(logged_in, photo_bytes(), seed_mode="fixed", seed="")
    assert response.status_code == 400
    assert "Enter a seed" in error_next_to(response.content.decode(), "seed-error")
    assert Job.objects.count() == 0


def test_not_enough_credits_is_said_next_to_the_provider_and_nothing_is_stored(client):
    client.force_login(UserFactory(credits=0))
    response = post(client, photo_bytes())
    assert response.status_code == 402
    assert "Not enough credits" in error_next_to(response.content.decode(), "provider-error")
    assert Job.objects.count() == 0 and Upload.objects.count() == 0


def test_the_page_carries_the_balance_and_the_limit_for_the_checks_in_the_browser(client, settings):
    client.force_login(UserFactory(credits=7))
    html = client.get(reverse("home")).content.decode()
    assert 'data-balance="7"' in html
    assert f'data-max-bytes="{settings.MAX_UPLOAD_BYTES}"' in html
    assert '"cost": 1' in html  # the providers' costs, for the credit check


def test_a_disabled_provider_is_refused_next_to_the_provider(logged_in, settings):
    settings.STABILITY_API_KEY = ""
    response = post(logged_in, photo_bytes(), provider="stability")
    assert response.status_code == 400
    assert "not configured" in error_next_to(response.content.decode(), "provider-error")


def test_a_model_of_another_provider_is_refused(logged_in):
    response = post(logged_in, photo_bytes(), model="stable-video-diffusion")
    assert response.status_code == 400
    assert "Unknown model" in response.content.decode()


def test_a_missing_photo_is_asked_for_next_to_the_field(logged_in):
    response = post(logged_in)
    assert response.status_code == 400
    assert "Choose a photo" in error_next_to(response.content.decode(), "image-error")


def test_a_file_that_is_not_an_image_is_refused_next_to_the_field(logged_in):
    response = post(logged_in, b"GIF89a" + b"\x00" * 100)
    assert response.status_code == 400
    assert "only JPEG and PNG" in error_next_to(response.content.decode(), "image-error")


def test_an_oversized_photo_is_refused_next_to_the_field(logged_in):
    response = post(logged_in, b"\xff\xd8\xff" + b"0" * (11 * 1024 * 1024))
    assert response.status_code == 413
    assert "10 MB or smaller" in error_next_to(response.content.decode(), "image-error")


def test_the_settings_are_kept_after_an_error(logged_in):
    html = post(logged_in, None, motion_bucket_id="201", cfg_scale="3.3").content.decode()
    assert 'value="201"' in html and 'value="3.3"' in html
    assert "Choose your photo again" not in html  # the photo itself is what is wrong
    html = post(logged_in, photo_bytes(), seed_mode="fixed", seed="").content.decode()
    assert "Choose your photo again" in html


def test_the_latest_videos_are_shown_with_a_way_to_all_of_them(logged_in, user):
    html = logged_in.get(reverse("home")).content.decode()
    assert "No videos yet" in html
    post(logged_in, photo_bytes())
    html = logged_in.get(reverse("home")).content.decode()
    assert reverse("history") in html and "No videos yet" not in html
