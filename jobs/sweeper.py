"""Finds jobs that are due and hands them to the queue; expires old results.

This is what lets many in-flight provider jobs cost a few short tasks: a job
waiting on a provider is a row with a due time, not a sleeping worker. The
same query also recovers jobs whose worker died (their lease runs out, which
makes them due) and jobs whose queue message was lost (a dispatched job that
never started becomes due again after ``JOB_DISPATCH_GRACE``).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import Q
from django.utils import timezone

from jobs import pipeline
from jobs.creation import discard_upload
from jobs.models import Job, Upload
from jobs.tasks import enqueue_advance, enqueue_batch
from providers.registry import UnknownProvider, provider_class

log = logging.getLogger(__name__)

BATCH = 2000
POLL_BATCH = 25
# An upload is stored a moment before its job; one still without a job after
# this long was left by a process that died in between.
ORPHAN_UPLOAD_AGE = timedelta(hours=1)


def due_jobs(now=None):
    now = now or timezone.now()
    return (
        Job.objects.exclude(status__in=Job.FINAL_STATES)
        .filter(next_poll_at__lte=now)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .order_by("next_poll_at")
    )


def sweep(now=None) -> int:
    """Dispatch every due job once; returns how many were handed over.

    Polls of remote providers go out in batches of ``POLL_BATCH`` (one task
    polls them all, concurrently); every other step is a task of its own.
    """
    now = now or timezone.now()
    grace = now + timedelta(seconds=settings.JOB_DISPATCH_GRACE)
    batched: list = []
    dispatched = 0
    rows = list(due_jobs(now).values_list("pk", "status", "provider")[:BATCH])
    if not rows:
        return 0
    # One UPDATE pushes the due time of every job handed over, so the next
    # sweep does not hand them over again. Two sweepers racing may both hand a
    # job over; its lease makes the second delivery a no-op.
    Job.objects.filter(pk__in=[pk for pk, _, _ in rows], next_poll_at__lte=now).update(next_poll_at=grace)
    for job_id, status, provider in rows:
        dispatched += 1
        if status in Job.PROVIDER_STATES and not _renders_inline(provider):
            batched.append(job_id)
            if len(batched) == POLL_BATCH:
                enqueue_batch(batched)
                batched = []
        else:
            enqueue_advance(job_id)
    if batched:
        enqueue_batch(batched)
    return dispatched


def _renders_inline(provider: str) -> bool:
    try:
        return provider_class(provider).renders_inline
    except UnknownProvider:
        return False


def expire_unstarted(now=None) -> int:
    """Fail jobs no worker ever started, so their held credits come back.

    A job still queued long after MAX_CHECK_TIME (no worker running, say) is
    failed by compare-and-set on its unclaimed state; the release happens in
    the same transaction.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.MAX_CHECK_TIME + settings.JOB_DISPATCH_GRACE)
    stale = Job.objects.filter(status=Job.QUEUED, created_at__lt=cutoff).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    )
    expired = 0
    for job in stale[:BATCH]:
        if pipeline.fail(
            job,
            "never_started",
            "No worker picked this job up in time, so it was stopped. It has not been charged; please try again.",
            f"Still queued {settings.MAX_CHECK_TIME + settings.JOB_DISPATCH_GRACE} s after creation.",
        ):
            expired += 1
    return expired


def expire_results(now=None) -> int:
    """Delete the files of results past retention; the job row stays."""
    now = now or timezone.now()
    expired = 0
    for job in Job.objects.filter(status=Job.COMPLETED, expires_at__lte=now)[:BATCH]:
        for field in (job.video, job.poster):
            if field and default_storage.exists(field.name):
                default_storage.delete(field.name)
        if pipeline.transition(
            job,
            Job.EXPIRED,
            f"Result files deleted after {settings.RESULT_RETENTION_HOURS} h retention",
            from_status=Job.COMPLETED,
            video="",
            poster="",
            status_message="Expired: the video was deleted after the retention period",
        ):
            expired += 1
    return expired


def discard_orphan_uploads(now=None) -> int:
    """Delete uploads (and their files) that never got a job."""
    now = now or timezone.now()
    orphans = Upload.objects.filter(jobs__isnull=True, created_at__lt=now - ORPHAN_UPLOAD_AGE)
    return sum(discard_upload(upload) for upload in orphans[:BATCH])
