"""The end frame ("tail image"): a second photo where the video should finish,
for the providers that take one, through the API and the dashboard form."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from jobs import sweeper
from jobs.creation import discard_upload
from jobs.ledger import balance_of
from jobs.models import Job, LedgerEntry, Upload
from tests.api_helpers import image_file, key_client
from tests.factories import UserFactory, photo_bytes
from tests.fakes.fixtures import aiml_server_fixture  # noqa: F401 (the aiml_server fixture)
from tests.pipeline_helpers import run_until_final

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_public_address(settings):
    settings.PUBLIC_BASE_URL = ""


def assert_nothing_kept(user) -> None:
    assert not Job.objects.exists() and not Upload.objects.exists()
    assert not LedgerEntry.objects.filter(user=user).exclude(kind="grant").exists()
    assert balance_of(user) == 100


# --- the API ----------------------------------------------------------------------


def test_an_end_frame_uploaded_through_the_api_is_fitted_to_the_photos_framing_and_sent(aiml_server):
    client = key_client()
    response = client.post(
        "/api/v1/jobs",
        {
            "image": image_file(),  # 1200x700: landscape
            "tail_image": image_file("end.jpg", width=700, height=1200, seed=3),  # a portrait photo
            "provider": "kling",
            "prompt": "Night falls",
        },
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    job = Job.objects.get(pk=response.json()["id"])
    assert (job.tail_upload.width, job.tail_upload.height) == (1024, 576)
    assert job.tail_upload.original_name == "end.jpg"

    job = run_until_final(job)

    assert job.status == Job.COMPLETED
    generation = aiml_server.generations[job.provider_job_id]
    assert generation.images["tail_image_url"] == (1024, 576)
    assert response.json()["parameters"]["tail_image"] is True


def test_an_end_frame_may_come_as_a_data_uri_in_json(aiml_server):
    client = key_client()
    encoded = base64.b64encode(photo_bytes(800, 800, fmt="PNG")).decode()
    body = {
        "data_uri": encoded,
        "tail_image_url": f"data:image/png;base64,{encoded}",
        "provider": "kling",
        "prompt": "x",
    }
    response = client.post("/api/v1/jobs", body, format="json")

    assert response.status_code == 201, response.json()
    job = Job.objects.get(pk=response.json()["id"])
    assert (job.tail_upload.width, job.tail_upload.height) == (768, 768)


@pytest.mark.parametrize(
    ("body", "fmt", "field"),
    [
        ({"image": "FILE", "tail_image": "FILE"}, "multipart", "tail_image"),
        (
            {"image_url": "https://example.com/a.jpg", "tail_image_url": "https://example.com/b.jpg"},
            "json",
            "tail_image_url",
        ),
    ],
)
def test_an_end_frame_for_a_provider_that_takes_none_is_refused_naming_the_field(body, fmt, field):
    client = key_client()
    body = {name: image_file() if value == "FILE" else value for name, value in body.items()}
    response = client.post("/api/v1/jobs", {**body, "provider": "local"}, format=fmt)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "not_supported" and list(error["fields"]) == [field]
    assert f"does not take an end frame ({field}); providers that do: pipelet, kling." in error["message"]
    assert_nothing_kept(client.user)


def test_an_end_frame_that_is_not_an_image_is_refused_and_the_photo_is_not_kept(aiml_server):
    client = key_client()
    bad = SimpleUploadedFile("end.jpg", b"<html>not a photo</html>", content_type="image/jpeg")
    response = client.post(
        "/api/v1/jobs",
        {"image": image_file(), "tail_image": bad, "provider": "kling", "prompt": "x"},
        format="multipart",
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert list(error["fields"]) == ["tail_image"] and error["message"].startswith("tail_image: This file is not")
    assert_nothing_kept(client.user)


def test_both_a_file_and_a_url_for_the_end_frame_is_refused():
    client = key_client()
    response = client.post(
        "/api/v1/jobs",
        {"image": image_file(), "tail_image": image_file(), "tail_image_url": "https://example.com/b.jpg"},
        format="multipart",
    )
    assert response.status_code == 400 and "not both" in response.json()["error"]["message"]


def test_an_upload_used_only_as_an_end_frame_is_no_orphan(aiml_server):
    client = key_client()
    response = client.post(
        "/api/v1/jobs",
        {"image": image_file(), "tail_image": image_file("end.jpg"), "provider": "kling", "prompt": "x"},
        format="multipart",
    )
    job = Job.objects.get(pk=response.json()["id"])
    Upload.objects.update(created_at=timezone.now() - timedelta(days=2))

    assert not discard_upload(job.tail_upload)
    sweeper.discard_orphan_uploads()

    assert Upload.objects.count() == 2


def test_an_orphan_end_frame_upload_is_swept(aiml_server):
    from jobs.creation import create_upload

    orphan = create_upload(owner=UserFactory(), source=photo_bytes())
    Upload.objects.filter(pk=orphan.pk).update(created_at=timezone.now() - timedelta(days=2))

    sweeper.discard_orphan_uploads()

    assert not Upload.objects.filter(pk=orphan.pk).exists()


# --- the dashboard ----------------------------------------------------------------

FORM = {"framing": "auto", "motion_bucket_id": "127", "cfg_scale": "1.8", "seed_mode": "random"}


def post(client, **fields):
    body = {**FORM, "image": SimpleUploadedFile("photo.jpg", photo_bytes(), content_type="image/jpeg"), **fields}
    return client.post(reverse("home"), body)


def provider_data(html: str) -> dict:
    raw = re.search(r'<script id="provider-data" type="application/json">(.*?)</script>', html, re.S).group(1)
    return {p["name"]: p for p in json.loads(raw)}


def test_the_create_page_offers_an_end_frame_only_for_providers_that_take_one(logged_in, aiml_server):
    html = logged_in.get(reverse("home")).content.decode()

    assert re.search(r'<div class="field" id="tail-field"\s+hidden', html), "hidden for the default, local"
    assert re.search(r'<input type="file" name="tail_image" id="id_tail_image"[^>]*disabled', html, re.S)
    assert '<label for="id_tail_image">End frame' in html
    data = provider_data(html)
    assert data["kling"]["accepts_tail_image"] is True and data["local"]["accepts_tail_image"] is False


def test_an_end_frame_chosen_on_the_dashboard_reaches_the_job_and_its_page(logged_in, user, aiml_server):
    end = SimpleUploadedFile("sunset.jpg", photo_bytes(seed=5), content_type="image/jpeg")
    response = post(logged_in, provider="kling", prompt="The sun sets", duration="10", tail_image=end)

    assert response.status_code == 302, response.content.decode()[:2000]
    job = Job.objects.get(owner=user)
    assert job.tail_upload.original_name == "sunset.jpg" and job.extra_params["duration"] == 10

    page = logged_in.get(reverse("job-detail", args=[job.pk])).content.decode()
    assert reverse("job-tail-image", args=[job.pk]) in page and "sunset.jpg" in page
    assert "cannot stop a job once it is sent" in page
    image = logged_in.get(reverse("job-tail-image", args=[job.pk]))
    assert image.status_code == 200 and image["Content-Type"] == "image/png"

    stranger = logged_in.__class__()
    stranger.force_login(UserFactory())
    assert stranger.get(reverse("job-tail-image", args=[job.pk])).status_code == 404


def test_an_end_frame_sent_for_the_local_provider_is_refused_next_to_its_field(logged_in, user):
    end = SimpleUploadedFile("end.jpg", photo_bytes(), content_type="image/jpeg")
    response = post(logged_in, provider="local", tail_image=end)

    assert response.status_code == 400
    html = response.content.decode()
    message = re.search(r'id="tail-error"\s*>(.*?)</p>', html, re.S).group(1)
    assert "does not take an end frame" in message
    assert not re.search(r'id="tail-field"\s+hidden', html), "the refusal is shown, not hidden with its field"
    assert_nothing_kept(user)


def test_a_job_without_an_end_frame_has_no_end_frame_link(logged_in, user):
    assert post(logged_in, provider="local").status_code == 302
    job = Job.objects.get(owner=user)
    assert logged_in.get(reverse("job-tail-image", args=[job.pk])).status_code == 404
    assert "job-tail" not in logged_in.get(reverse("job-detail", args=[job.pk])).content.decode()
