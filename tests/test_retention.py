"""Results are kept RESULT_RETENTION_HOURS, then their files go; the job stays."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from jobs import pipeline
from jobs.models import Job
from jobs.sweeper import expire_results
from tests.factories import make_job

pytestmark = pytest.mark.django_db


def completed_job() -> Job:
    job = make_job()
    pipeline.advance(job.pk)
    job.refresh_from_db()
    assert job.status == Job.COMPLETED
    return job


def test_a_new_result_is_kept_for_the_retention_period(settings):
    settings.RESULT_RETENTION_HOURS = 24
    job = completed_job()
    assert timedelta(hours=23, minutes=59) < job.expires_at - job.finished_at <= timedelta(hours=24)
    assert expire_results() == 0


def test_an_old_result_loses_its_files_but_keeps_its_record():
    job = completed_job()
    video, poster = job.video.name, job.poster.name
    Job.objects.filter(pk=job.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert expire_results() == 1

    job.refresh_from_db()
    assert job.status == Job.EXPIRED
    assert not default_storage.exists(video) and not default_storage.exists(poster)
    assert job.video.name == "" and job.seed_used and job.video_frames
    assert "retention" in job.events.last().message
    assert expire_results() == 0
