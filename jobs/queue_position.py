"""Where a job waits, in one place: the dashboard, its live status and the API
all show this number, so they can never disagree."""

from __future__ import annotations

from django.db.models import Q

from jobs.models import Job


def queue_position(job: Job) -> int | None:
    """The job's place in line, 1 being next, or None once it is not waiting.

    Before a provider has the job it waits in our queue: one behind every
    queued job created before it (the id breaks a tie in time). Once a provider
    reports its own queue position, that is the one that counts.
    """
    if job.queue_position is not None or job.status != Job.QUEUED:
        return job.queue_position
    ahead = Job.objects.filter(status=Job.QUEUED).filter(
        Q(created_at__lt=job.created_at) | Q(created_at=job.created_at, pk__lt=job.pk)
    )
    return ahead.count() + 1
