"""GET /api/v1/jobs/{id}, written out by hand for speed (jobs/api/job_detail.py),
answers exactly what its schema's serializer, JobDetailOutput, gives."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core import signing
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.api.serializers import JobDetailOutput
from jobs.models import Job, JobEvent, JobMask
from tests.api_helpers import key_client
from tests.factories import make_job, make_upload

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def one_signing_second(monkeypatch):
    # Signed links carry the second they were made: both answers must be made in the same one.
    monkeypatch.setattr(signing.TimestampSigner, "timestamp", lambda self: "1abcde")


def serializer_answer(job: Job, response) -> dict:
    job = Job.objects.get(pk=job.pk)
    data = JobDetailOutput(job, context={"request": response.wsgi_request}).data
    return json.loads(json.dumps(data, default=str))


def in_state(owner, status: str, **fields) -> Job:
    job = make_job(owner, enqueue=False)
    now = timezone.now()
    if status != Job.QUEUED:
        fields.setdefault("submitted_at", now)
        fields.setdefault("provider_job_id", "pred-1")
    if status in Job.FINAL_STATES:
        fields.setdefault("finished_at", now + timedelta(seconds=40))
        fields.setdefault("expires_at", now + timedelta(days=1))
    Job.objects.filter(pk=job.pk).update(status=status, **fields)
    JobEvent.objects.create(job=job, from_status=Job.QUEUED, to_status=status, message=f"now {status} – ü")
    return Job.objects.get(pk=job.pk)


@pytest.mark.parametrize("status", [value for value, _ in Job.STATUS_CHOICES])
def test_a_job_in_every_state_gets_the_serializers_answer(status):
    client = key_client()
    job = in_state(client.user, status, progress=0.25, status_message="working")
    response = client.get(f"/api/v1/jobs/{job.pk}")
    assert response.status_code == 200
    assert response.json() == serializer_answer(job, response)


def test_a_completed_job_with_its_video_links_gets_the_serializers_answer():
    client = key_client()
    job = in_state(
        client.user,
        Job.COMPLETED,
        progress=1.0,
        video="videos/x.mp4",
        poster="posters/x.jpg",
        video_frames=48,
        video_duration=4.0,
        video_bytes=812_345,
        seed_used=42,
        finish_reason="SUCCESS",
        request_id="req-7",
        extra_params={"duration": 4, "fps": 12},
    )
    response = client.get(f"/api/v1/jobs/{job.pk}")
    answer = response.json()
    assert answer["video"]["url"].startswith("http://testserver/api/v1/jobs/")
    assert answer == serializer_answer(job, response)


def test_a_failed_job_with_its_error_gets_the_serializers_answer():
    client = key_client()
    job = in_state(
        client.user, Job.FAILED, error_code="provider_error", error_message="No video.", error_detail="x" * 900
    )
    response = client.get(f"/api/v1/jobs/{job.pk}")
    assert response.json()["error"] == {"code": "provider_error", "message": "No video."}
    assert response.json() == serializer_answer(job, response)


def test_a_queued_job_behind_others_gets_the_serializers_answer_with_its_place():
    client = key_client()
    in_state(client.user, Job.QUEUED)
    job = in_state(client.user, Job.QUEUED)
    response = client.get(f"/api/v1/jobs/{job.pk}")
    assert response.json()["queue_position"] == 2
    assert response.json() == serializer_answer(job, response)


def test_a_job_with_an_end_frame_and_masks_gets_the_serializers_answer():
    client = key_client()
    job = in_state(client.user, Job.RUNNING, provider="kling", queue_position=3)
    upload = make_upload(client.user)
    Job.objects.filter(pk=job.pk).update(tail_upload=upload)
    JobMask.objects.create(job=job, upload=upload, position=0)
    JobMask.objects.create(job=job, upload=upload, position=1, trajectory=[[1, 2], [30, 40]])
    response = client.get(f"/api/v1/jobs/{job.pk}")
    parameters = response.json()["parameters"]
    assert parameters["tail_image"] and parameters["static_mask"] and parameters["dynamic_masks"]
    assert response.json() == serializer_answer(job, response)


def test_a_job_without_a_timeline_yet_gets_the_serializers_answer():
    client = key_client()
    job = in_state(client.user, Job.QUEUED)
    JobEvent.objects.filter(job=job).delete()
    response = client.get(f"/api/v1/jobs/{job.pk}")
    assert response.status_code == 200 and response.json()["timeline"] == []
    assert response.json() == serializer_answer(job, response)


def test_the_timeline_is_in_order_of_time():
    client = key_client()
    job = in_state(client.user, Job.RUNNING)
    start = timezone.now()
    for seconds, to_status in [(3, Job.RUNNING), (1, Job.PREPARING), (2, Job.SUBMITTED)]:
        JobEvent.objects.create(job=job, at=start + timedelta(seconds=seconds), to_status=to_status)
    response = client.get(f"/api/v1/jobs/{job.pk}")
    assert [e["to_status"] for e in response.json()["timeline"]][-3:] == ["preparing", "submitted", "running"]
    assert response.json() == serializer_answer(job, response)


def test_another_users_job_and_an_unknown_one_are_both_404():
    client = key_client()
    theirs = in_state(make_job().owner, Job.RUNNING)
    mine_without_events = in_state(client.user, Job.QUEUED)
    JobEvent.objects.filter(job=mine_without_events).delete()
    theirs_without_events = in_state(theirs.owner, Job.QUEUED)
    JobEvent.objects.filter(job=theirs_without_events).delete()
    for job_id in [theirs.pk, theirs_without_events.pk, "6f1c2a4e-1111-4c1b-9b1e-000000000000"]:
        response = client.get(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 404
        assert response.json()["error"]["status"] == 404


def test_a_poll_reads_the_job_once_and_its_timeline_once():
    client = key_client()
    job = in_state(client.user, Job.RUNNING)
    client.get(f"/api/v1/jobs/{job.pk}")  # the key's last use is written once a minute at most
    with CaptureQueriesContext(connection) as queries:
        assert client.get(f"/api/v1/jobs/{job.pk}").status_code == 200
    tables = [table for q in queries for table in ('jobs_job"', "jobs_jobevent") if table in q["sql"]]
    assert sorted(tables) == ['jobs_job"', "jobs_jobevent"], [q["sql"] for q in queries]
