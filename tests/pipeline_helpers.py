"""Driving a job through the pipeline by hand, as the worker and sweeper would."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from jobs import pipeline
from jobs.models import Job


def advance(job: Job) -> Job:
    """One task run for the job, then the job as stored."""
    pipeline.advance(job.pk)
    job.refresh_from_db()
    return job


def make_due(job: Job) -> None:
    """Time passes: the job's next look is due and any lease has run out."""
    past = timezone.now() - timedelta(seconds=1)
    Job.objects.filter(pk=job.pk).update(next_poll_at=past, lease_until=None, last_polled_at=None)


def run_until_final(job: Job, rounds: int = 8) -> Job:
    """Task runs, each after the job fell due, until it is final (or ``rounds`` ran)."""
    job = advance(job)
    for _ in range(rounds):
        if job.status in Job.FINAL_STATES:
            break
        make_due(job)
        job = advance(job)
    return job


def local_copy(field) -> Path:
    """A stored file (``job.video``, an upload's image) as a file on this disk:
    itself on local storage, a copy in the test's WORK_DIR on remote storage."""
    try:
        return Path(field.path)
    except NotImplementedError:  # S3 and the like have no paths
        target = Path(settings.WORK_DIR) / "copies" / field.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with field.storage.open(field.name, "rb") as source, target.open("wb") as out:
            shutil.copyfileobj(source, out)
        return target
