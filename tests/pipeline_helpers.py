"""Driving a job through the pipeline by hand, as the worker and sweeper would."""

from __future__ import annotations

from datetime import timedelta

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
