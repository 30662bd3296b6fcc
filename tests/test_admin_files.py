"""Staff links to a job's files: the upload, the poster and the video.

They open for signed-in staff allowed to view jobs, expire like the API's
result links, answer byte ranges, and are 404 for everyone else; no raw
/media/ URL serves a file at all.
"""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import Permission
from django.core import signing
from django.urls import reverse

from jobs import pipeline
from jobs.api.serializers import signed_result_url
from jobs.models import Job
from jobs.staff_files import staff_file_url
from tests.factories import UserFactory, make_job, make_upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = UserFactory(is_staff=True, is_superuser=True, username="support")
    client.force_login(user)
    return user


@pytest.fixture
def job():
    job = make_job(UserFactory(username="dora"))
    pipeline.advance(job.pk)
    job.refresh_from_db()
    assert job.status == Job.COMPLETED
    return job


def links(job) -> dict[str, tuple[str, object]]:
    """Each staff link of a completed job, with the stored file it should serve."""
    return {
        "video": (staff_file_url(job, "staff-video"), job.video),
        "poster": (staff_file_url(job, "staff-poster"), job.poster),
        "original": (staff_file_url(job.upload, "staff-original"), job.upload.original),
        "normalized": (staff_file_url(job.upload, "staff-normalized"), job.upload.normalized),
    }


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_staff_get_each_file_with_its_type(client, staff, job):
    types = {"video": "video/mp4", "poster": "image/jpeg", "original": "image/jpeg", "normalized": "image/png"}
    for name, (url, stored) in links(job).items():
        response = client.get(url)
        assert response.status_code == 200, name
        assert response["Content-Type"] == types[name]
        assert body(response) == stored.open("rb").read()


def test_the_video_answers_a_byte_range_so_a_player_can_seek(client, staff, job):
    url, stored = links(job)["video"]
    data = stored.open("rb").read()

    response = client.get(url, headers={"Range": "bytes=100-199"})

    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert response["Accept-Ranges"] == "bytes"
    assert body(response) == data[100:200]


def test_visitors_plain_users_and_the_owner_get_404(client, job):
    urls = [url for url, _ in links(job).values()]
    for who in (None, UserFactory(), job.owner):
        client.logout()
        if who:
            client.force_login(who)
        for url in urls:
            assert client.get(url).status_code == 404, (who, url)


def test_a_user_with_the_permission_but_not_staff_gets_404(client, job):
    outsider = UserFactory()
    outsider.user_permissions.add(Permission.objects.get(codename="view_job"))
    client.force_login(outsider)
    assert client.get(links(job)["video"][0]).status_code == 404


def test_staff_without_permission_to_view_jobs_get_404(client, job):
    clerk = UserFactory(is_staff=True)
    client.force_login(clerk)
    url, _ = links(job)["video"]
    assert client.get(url).status_code == 404

    clerk.user_permissions.add(Permission.objects.get(codename="view_job"))
    client.force_login(clerk)  # permissions are cached on the user
    assert client.get(url).status_code == 200
    assert client.get(links(job)["original"][0]).status_code == 200  # a job's readers see its image


def test_an_inactive_staff_member_gets_404(client, job):
    url, _ = links(job)["video"]
    former = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(former)
    former.is_active = False
    former.save()
    assert client.get(url).status_code == 404


def test_a_missing_tampered_or_borrowed_token_is_refused_even_for_staff(client, staff, job):
    url, _ = links(job)["video"]
    path, token = url.split("?token=")
    other = make_job(job.owner)
    assert client.get(path).status_code == 404
    assert client.get(f"{path}?token={token[:-2]}xx").status_code == 404
    # A poster's token does not open the video, nor one job's token another job's file.
    poster_token = links(job)["poster"][0].split("?token=")[1]
    assert client.get(f"{path}?token={poster_token}").status_code == 404
    assert client.get(reverse("staff-file", args=["staff-video", other.pk]) + f"?token={token}").status_code == 404
    # The API's bearer link is not a staff link, and the other way round.
    api_token = signed_result_url(None, job, "video").split("token=")[1]
    assert client.get(f"{path}?token={api_token}").status_code == 404
    client.logout()
    assert client.get(reverse("api-job-file", args=[job.pk, "video"]) + f"?token={token}").status_code == 404


def test_a_staff_link_expires_like_the_apis(client, staff, job, settings, monkeypatch):
    settings.RESULT_LINK_SECONDS = 60
    url, _ = links(job)["poster"]
    assert client.get(url).status_code == 200
    now = time.time()
    monkeypatch.setattr(signing.time, "time", lambda: now + 61)
    assert client.get(url).status_code == 404


def test_an_unknown_kind_is_404(client, staff, job):
    token = staff_file_url(job, "staff-video").split("?token=")[1]
    assert client.get(reverse("staff-file", args=["video", job.pk]) + f"?token={token}").status_code == 404


def test_no_raw_media_url_serves_a_file_even_to_staff(client, staff, job):
    for _, stored in links(job).values():
        assert client.get(f"/media/{stored.name}").status_code == 404


def test_a_file_deleted_after_retention_is_404_and_the_page_says_why(client, staff, job):
    url, _ = links(job)["video"]
    job.video.storage.delete(job.video.name)
    Job.objects.filter(pk=job.pk).update(status=Job.EXPIRED, video="", poster="")
    job.refresh_from_db()

    assert client.get(url).status_code == 404
    page = client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "the video was deleted after the retention period" in page
    assert "/staff/files/staff-video/" not in page
    assert "/staff/files/staff-normalized/" in page  # the upload stays


def test_a_job_still_running_shows_its_image_and_no_video_yet(client, staff):
    job = make_job(upload=make_upload(UserFactory()))
    page = client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "no video yet" in page
    assert "/staff/files/staff-original/" in page
    assert staff_file_url(job, "staff-video") == ""
