"""Finds jobs that are due and hands them to the queue; expires old results.

This is what lets many in-flight provider jobs cost a few short tasks: a job
waiting on a provider is a row with a due time, not a sleeping worker. The
same query also recovers jobs whose worker died (their lease runs out, which
makes them due) and jobs whose queue message was lost (a dispatched job that
never started becomes due again after ``JOB_DISPATCH_GRACE``).

That grace is long because the queue may simply be busy. When it is not (no
task waits in the broker or inside any cluster) a dispatched job still
unclaimed after ``LOST_AFTER`` has lost its message (a worker ran it while the
database was down, a stalled cluster was replaced with it inside) and is
handed over again at once. A duplicate delivery is harmless: the job's lease
lets one delivery work on it and makes the other a no-op.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from jobs import pipeline
from jobs.creation import discard_upload
from jobs.models import Job, Upload
from jobs.tasks import enqueue_advance, enqueue_batch
from jobs.webhooks import dispatch
from providers.registry import UnknownProvider, provider_class

log = logging.getLogger(__name__)

BATCH = 2000
POLL_BATCH = 25
# A dispatched job normally is claimed within a second of reaching an idle
# cluster; one still unclaimed this long, with the queue empty, lost its message.
LOST_AFTER = timedelta(seconds=3)
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


# The shortest sleep between sweeps. Polls due within it go out together, a
# batch to a task (``POLL_BATCH``): with a thousand jobs in flight, waking for
# each due time would make a task per poll. A poll is at most this late.
MIN_PAUSE = 0.1
# With many jobs in flight the sweeper may wait this much longer for a whole
# batch to fall due: a tenth of the tasks, sweeps and claims for polls at most
# this late (the provider's floor is seconds; this is a fraction of one).
GATHER_PAUSE = 0.4


def pause_before_next_sweep(now=None) -> float:
    """How long the sweeper may sleep: ``SWEEP_INTERVAL``, or less when a job
    falls due sooner, so a poll goes out at its floor rather than up to a whole
    interval after it (the latency a provider's poll floor already costs is
    enough); at least ``MIN_PAUSE``, and up to ``GATHER_PAUSE`` while the
    next ``POLL_BATCH`` due times come that soon, so they go out as one batch.
    Jobs already due are leased or were just handed over; the interval covers them."""
    now = now or timezone.now()
    upcoming = list(
        Job.objects.exclude(status__in=Job.FINAL_STATES)
        .filter(next_poll_at__gt=now)
        .order_by("next_poll_at")
        .values_list("next_poll_at", flat=True)[:POLL_BATCH]
    )
    pause = settings.SWEEP_INTERVAL
    if upcoming:
        pause = min(pause, max((upcoming[0] - now).total_seconds(), MIN_PAUSE))
    if len(upcoming) == POLL_BATCH:
        batch_due = (upcoming[-1] - now).total_seconds()
        pause = max(pause, min(batch_due, GATHER_PAUSE, settings.SWEEP_INTERVAL))
    return pause


@dataclass
class _Batch:
    at: datetime
    due: datetime
    job_ids: list


@dataclass
class HandedOver:
    """The jobs this sweeper handed over lately, with the due time each was given.

    A job whose due time is still the one we gave it has not been claimed since
    (a claim moves it). Kept in memory only: after a restart the grace applies.
    """

    batches: list[_Batch] = dataclass_field(default_factory=list)

    def record(self, at: datetime, due: datetime, job_ids: list) -> None:
        self.batches.append(_Batch(at, due, list(job_ids)))

    def unclaimed(self, now: datetime) -> list:
        """Jobs handed over at least ``LOST_AFTER`` ago that nobody has claimed.

        Each batch is looked at once it is old enough, and keeps only those
        jobs: a job claimed since never needs looking at again.
        """
        found: list = []
        for batch in self.batches:
            # Past their due time the ordinary sweep takes them again.
            if batch.due <= now:
                batch.job_ids = []
            elif batch.at <= now - LOST_AFTER:
                batch.job_ids = list(
                    Job.objects.filter(pk__in=batch.job_ids, next_poll_at=batch.due).values_list("pk", flat=True)
                )
                found.extend(batch.job_ids)
        self.batches = [batch for batch in self.batches if batch.job_ids]
        return found


def sweep(now=None, handed: HandedOver | None = None) -> int:
    """Dispatch every due job once; returns how many were handed over.

    Polls of remote services (the video provider, or the CLIP prompt writer
    while a job is describing) go out in batches of ``POLL_BATCH`` (one task
    polls them all, concurrently); every other step is a task of its own.
    """
    now = now or timezone.now()
    with transaction.atomic():
        rows = _take(due_jobs(now))
        handed_over = _hand_over(rows, now, handed)
    return handed_over + sweep_deliveries(now)


def _take(jobs) -> list:
    """Rows of ``jobs`` to hand over, locked until the caller's transaction ends.

    Several sweepers may run at once: on PostgreSQL each skips the rows another
    has locked, and once that one commits the rows are no longer due (their due
    time moved), so no two sweepers hand over the same job. SQLite takes its
    write lock when the transaction begins (``transaction_mode``), which
    serialises sweeps outright.
    """
    locked = jobs.select_for_update(skip_locked=True, of=("self",))
    return list(locked.values_list("pk", "status", "provider")[:BATCH])


def sweep_deliveries(now=None) -> int:
    """Hand deliveries that are due (a retry's time has come, a lease ran out,
    a queue message was lost) to the workers, within the per-receiver caps
    (``jobs.webhooks.dispatch``); returns how many."""
    return dispatch.dispatch(now)


def _hand_over(rows: list, now: datetime, handed: HandedOver | None) -> int:
    """Push the due time of ``rows`` (locked by ``_take``) and queue them; the
    tasks are sent once the caller's transaction commits."""
    if not rows:
        return 0
    grace = now + timedelta(seconds=settings.JOB_DISPATCH_GRACE)
    # One UPDATE pushes the due time of every job handed over, so the next
    # sweep does not hand them over again. Should a message still arrive
    # twice, the job's lease makes the second delivery a no-op.
    Job.objects.filter(pk__in=[pk for pk, _, _ in rows]).update(next_poll_at=grace)
    if handed is not None:
        handed.record(now, grace, [pk for pk, _, _ in rows])
    batched: list = []
    for job_id, status, provider in rows:
        # A describing job waits on Replicate's CLIP whatever its video provider is.
        if status == Job.DESCRIBING or (status in Job.PROVIDER_STATES and not _renders_inline(provider)):
            batched.append(job_id)
            if len(batched) == POLL_BATCH:
                enqueue_batch(batched)
                batched = []
        else:
            enqueue_advance(job_id)
    if batched:
        enqueue_batch(batched)
    return len(rows)


def redispatch_lost(now=None, handed: HandedOver | None = None) -> int:
    """Hand over again, at once, dispatched jobs whose queue message is gone.

    Only when nothing waits anywhere in the queue: then a job dispatched
    ``LOST_AFTER`` ago and still unclaimed cannot be on its way to a worker.
    Covered: jobs never claimed since they were created, and jobs this
    sweeper handed over whose due time nobody has moved since.
    """
    now = now or timezone.now()
    dispatched_before = now - LOST_AFTER
    # Creation and every dispatch set the due time to "now + grace".
    lost = Q(status=Job.QUEUED, attempts=0, next_poll_at__lte=dispatched_before + _grace())
    mine = handed.unclaimed(now) if handed is not None else []
    if mine:
        lost |= Q(pk__in=mine)
    candidates = (
        Job.objects.exclude(status__in=Job.FINAL_STATES)
        .filter(lease_until__isnull=True, next_poll_at__gt=now)
        .filter(lost)
        .order_by("next_poll_at")
    )
    if not candidates.exists() or _queue_busy():
        return 0
    with transaction.atomic():
        # Taken again under lock: another sweeper may have handed them over since.
        count = _hand_over(_take(candidates), now, handed)
    if not count:
        return 0
    log.warning("handed over again %d job(s) whose queue message was lost (queue idle, jobs unclaimed)", count)
    return count


def _grace() -> timedelta:
    return timedelta(seconds=settings.JOB_DISPATCH_GRACE)


def _queue_busy() -> bool:
    """Whether a task waits in the broker or inside a running cluster."""
    from jobs.cluster_watch import tasks_held_by_clusters
    from jobs.tasks import shared_broker

    broker = shared_broker()
    if broker.queue_size():
        return True
    try:
        return tasks_held_by_clusters(broker) > 0
    except Exception:  # the status cache is down: a duplicate delivery is harmless
        log.warning("cannot read the clusters' status; assuming their queues are empty", exc_info=True)
        return False


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
    orphans = Upload.objects.unused().filter(created_at__lt=now - ORPHAN_UPLOAD_AGE)
    return sum(discard_upload(upload) for upload in orphans[:BATCH])
