"""The minimal pages: log in, upload, watch the status change, play the video."""

from __future__ import annotations

import io

import av
import pytest
from django.contrib.staticfiles import finders
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from jobs import pipeline
from jobs.models import Job
from tests.factories import UserFactory, make_job, photo_bytes

pytestmark = pytest.mark.django_db

FORM = {"framing": "auto", "provider": "local", "motion_bucket_id": "160", "cfg_scale": "2.0", "seed": "42"}


def upload(client, data: bytes, name: str = "photo.jpg", content_type: str = "image/jpeg", **fields):
    image = SimpleUploadedFile(name, data, content_type=content_type)
    return client.post(reverse("home"), {**FORM, **fields, "image": image})


def test_pages_ask_a_visitor_to_log_in(client):
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


def test_login_page_logs_a_user_in(client, user):
    response = client.post(reverse("login"), {"username": user.username, "password": "correct horse battery"})
    assert response.status_code == 302
    assert client.get(reverse("home")).status_code == 200


def test_home_page_shows_the_form_with_its_three_parameters(logged_in):
    html = logged_in.get(reverse("home")).content.decode()
    for control in ('name="image"', 'name="motion_bucket_id"', 'name="cfg_scale"', 'name="seed"', 'name="framing"'):
        assert control in html
    assert "No videos yet" in html


def test_uploading_a_photo_makes_a_video_the_owner_can_watch(logged_in, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(logged_in, photo_bytes(900, 1400))
    assert response.status_code == 302
    job = Job.objects.get()
    assert response["Location"] == reverse("job-detail", args=[job.pk])
    assert (job.width, job.height) == (576, 1024)

    status = logged_in.get(reverse("job-status", args=[job.pk])).json()
    assert status["status"] == "completed" and status["final"] is True
    assert status["seed_used"] == 42
    assert next(e["to"] for e in status["events"]) == "queued"

    page = logged_in.get(reverse("job-detail", args=[job.pk])).content.decode()
    assert "<video" in page and status["video_url"] in page

    video = logged_in.get(status["video_url"])
    assert video.status_code == 200 and video["Content-Type"] == "video/mp4"
    body = b"".join(video.streaming_content)
    with av.open(io.BytesIO(body)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (576, 1024)
        assert sum(1 for _ in container.decode(stream)) >= 14


def test_video_answers_a_range_request_with_206_so_browsers_can_seek(logged_in, user):
    job = make_job(user)
    pipeline.advance(job.pk)
    url = reverse("job-video", args=[job.pk])
    size = int(logged_in.get(url)["Content-Length"])

    partial = logged_in.get(url, HTTP_RANGE="bytes=100-199")
    assert partial.status_code == 206
    assert partial["Content-Range"] == f"bytes 100-199/{size}"
    assert len(b"".join(partial.streaming_content)) == 100

    assert logged_in.get(url, HTTP_RANGE=f"bytes={size + 10}-").status_code == 416


def test_another_users_job_and_video_are_not_found(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = make_job(enqueue=True)
    client.force_login(UserFactory())
    for name in ("job-detail", "job-status", "job-video", "job-poster"):
        assert client.get(reverse(name, args=[job.pk])).status_code == 404


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    [
        (b"", "empty.png", "empty"),
        (b"<!doctype html><html><body>hi</body></html>", "page.png", "JPEG or PNG"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "logo.svg", "JPEG or PNG"),
        (photo_bytes(600, 400)[:3000], "cut.jpg", "incomplete"),
    ],
)
def test_a_bad_image_is_refused_next_to_the_field(logged_in, data, name, expected):
    response = upload(logged_in, data, name=name)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="image-error"' in html
    assert expected.lower() in html.lower()
    assert Job.objects.count() == 0


def test_an_oversized_upload_is_refused_before_it_is_read(logged_in):
    response = upload(logged_in, b"\xff\xd8\xff" + b"0" * (11 * 1024 * 1024))
    assert response.status_code == 413
    assert "10 MB or smaller" in response.content.decode()
    assert Job.objects.count() == 0


def test_out_of_range_motion_is_refused_with_its_range(logged_in):
    response = upload(logged_in, photo_bytes(), motion_bucket_id="900")
    assert response.status_code == 400
    assert "255" in response.content.decode()


def test_pages_name_their_icon_so_browsers_do_not_ask_for_a_missing_one(client):
    html = client.get(reverse("login")).content.decode()
    assert 'rel="icon" href="/static/favicon.svg"' in html
    assert finders.find("favicon.svg")


def test_a_browser_asking_for_favicon_ico_is_sent_to_the_icon(client):
    # The admin's pages name no icon, so browsers ask for /favicon.ico there.
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == "/static/favicon.svg"
