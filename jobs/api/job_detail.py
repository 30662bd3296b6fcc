"""``GET /api/v1/jobs/{id}``, the API's hottest read, without DRF's serializer machinery.

Clients poll it until the job is final. Built by ``JobDetailOutput`` it cost
twice the CPU of a plain view doing the same database read (bench/RESULTS.md,
the hot read): binding and copying twenty fields per answer, a nested
serializer for the timeline and a query of its own for it. Here the job and
its timeline come in one query and the answer is written out directly.

``JobDetailOutput`` stays the schema and the source of truth:
tests/test_api_job_detail.py checks that this gives the same JSON for a job in
every state, so a field added there fails that test until it is added here.
The nested parts (parameters, video, error) are the serializer's own functions.
"""

from __future__ import annotations

from django.http import Http404
from rest_framework.fields import DateTimeField

from jobs.actions import can_cancel
from jobs.api.serializers import error_of, parameters_of, video_of
from jobs.models import Job, JobEvent
from jobs.queue_position import queue_position

# DRF's own rendering of a datetime (ISO 8601 in the current time zone, "Z" for UTC).
_DATETIME = DateTimeField()


def _when(value) -> str | None:
    return None if value is None else _DATETIME.to_representation(value)


def read_job_with_timeline(user, job_id) -> tuple[Job, list[JobEvent]]:
    """The caller's job and its timeline in one query; 404 for anyone else's (its existence is not told)."""
    # job__owner is Job.objects.for_user's rule, applied through the join.
    events = list(JobEvent.objects.select_related("job").filter(job_id=job_id, job__owner=user))
    if events:
        return events[0].job, events
    try:  # a job without a timeline yet, or none of the caller's
        return Job.objects.for_user(user).get(pk=job_id), []
    except Job.DoesNotExist:
        raise Http404 from None


def job_detail(job: Job, events: list[JobEvent], request) -> dict:
    """What ``JobDetailOutput(job, context={"request": request}).data`` gives, field for field."""
    return {
        "id": str(job.pk),
        "status": job.status,
        "progress": float(job.progress),
        "queue_position": queue_position(job),
        "status_message": job.status_message,
        "cancellable": can_cancel(job),
        "provider": job.provider,
        "model": job.model,
        "parameters": parameters_of(job),
        "seed_used": job.seed_used,
        "cost": job.cost,
        "finish_reason": job.finish_reason,
        "video": video_of(job, request),
        "error": error_of(job),
        "request_id": job.request_id,
        "created_at": _when(job.created_at),
        "submitted_at": _when(job.submitted_at),
        "finished_at": _when(job.finished_at),
        "expires_at": _when(job.expires_at),
        "timeline": [
            {"at": _when(e.at), "from_status": e.from_status, "to_status": e.to_status, "message": e.message}
            for e in events
        ],
    }
