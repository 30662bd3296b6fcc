"""Files on an S3-compatible server (``AWS_STORAGE_BUCKET_NAME`` set).

Our links keep their rules (signed, expiring, the owner's or staff's only) and,
once a request passes them, answer with a redirect to the storage's presigned
URL: the storage serves the bytes and the byte ranges a player asks for. The
worker renders in its local scratch folder and saves to the bucket; nothing
lands in MEDIA_ROOT. CI runs these against a real S3 server (moto) on loopback.
"""

from __future__ import annotations

import urllib.request

import pytest
from django.core.files.storage import default_storage
from django.test import Client
from rest_framework.test import APIClient

from jobs import links, media, pipeline
from jobs.models import Job
from jobs.serving import is_local
from jobs.staff_files import staff_file_url
from tests.factories import UserFactory, make_job
from tests.pipeline_helpers import local_copy
from tests.storage_harness import storage_is_remote

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _remote_storage_only() -> None:
    if not storage_is_remote():
        pytest.skip("needs S3 storage: set AWS_STORAGE_BUCKET_NAME and AWS_S3_ENDPOINT_URL (.ci/run's scale run does)")


@pytest.fixture
def finished_job(settings) -> Job:
    settings.LOCAL_FRAMES = 24
    job = make_job(UserFactory())
    pipeline.advance(job.pk)
    job.refresh_from_db()
    assert job.status == Job.COMPLETED, job.error_detail
    return job


def storage_redirect(response) -> str:
    """The presigned URL our view redirected to (the test client then followed it)."""
    original = getattr(response, "redirected_from", None)
    assert original is not None, f"no redirect to the storage: {response.status_code}"
    assert original.status_code == 302
    assert original["Cache-Control"] == "private, no-store"
    return original["Location"]


def test_the_storage_is_remote_and_has_no_paths():
    assert storage_is_remote()
    assert not is_local(default_storage)


def test_the_worker_saves_video_and_poster_to_the_bucket_and_nothing_to_media_root(finished_job, settings):
    assert default_storage.exists(finished_job.video.name)
    assert default_storage.exists(finished_job.poster.name)
    assert not settings.MEDIA_ROOT.exists() or not any(p.is_file() for p in settings.MEDIA_ROOT.rglob("*"))
    assert media.probe_video(local_copy(finished_job.video)).frames == 24


def test_a_signed_video_link_redirects_to_a_presigned_url_that_serves_byte_ranges(finished_job):
    stored = local_copy(finished_job.video).read_bytes()
    url = f"/api/v1/jobs/{finished_job.pk}/video?token={links.sign(finished_job.pk, 'video')}"

    response = APIClient().get(url, HTTP_RANGE="bytes=100-1099")

    presigned = storage_redirect(response)
    assert "X-Amz-Signature=" in presigned and "X-Amz-Expires=" in presigned
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes 100-1099/{len(stored)}"
    assert b"".join(response.streaming_content) == stored[100:1100]
    # The presigned URL itself works without any of our credentials, as a <video> tag uses it.
    with urllib.request.urlopen(urllib.request.Request(presigned, headers={"Range": "bytes=-50"})) as answer:
        assert answer.status == 206 and answer.read() == stored[-50:]


def test_the_presigned_url_names_the_type_and_the_download_name():
    job = make_job(UserFactory())
    pipeline.advance(job.pk)
    client = Client()
    client.force_login(job.owner)

    response = client.get(f"/jobs/{job.pk}/video.mp4?download=1")

    storage_redirect(response)
    assert response.status_code == 200
    assert response["Content-Type"] == "video/mp4"
    assert response["Content-Disposition"] == f'attachment; filename="i2v-{job.pk}.mp4"'


def test_a_bad_or_foreign_link_gets_no_presigned_url(finished_job):
    other = APIClient()
    other.force_authenticate(UserFactory())

    altered = APIClient().get(f"/api/v1/jobs/{finished_job.pk}/video?token=x{links.sign(finished_job.pk, 'video')}")
    foreign = other.get(f"/api/v1/jobs/{finished_job.pk}/video")
    poster_token_for_video = APIClient().get(
        f"/api/v1/jobs/{finished_job.pk}/video?token={links.sign(finished_job.pk, 'poster')}"
    )

    for response in (altered, foreign, poster_token_for_video):
        assert response.status_code == 404
        assert not response.has_header("Location")


def test_a_staff_link_redirects_only_for_staff(finished_job):
    url = staff_file_url(finished_job, "staff-video")
    staff = Client()
    staff.force_login(UserFactory(is_staff=True, is_superuser=True))
    customer = Client()
    customer.force_login(finished_job.owner)

    assert customer.get(url).status_code == 404
    response = staff.get(url)
    storage_redirect(response)
    assert response.status_code == 200
