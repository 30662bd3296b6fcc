"""``GET /api/v1/jobs/{id}``, the API's hottest read, without DRF's serializer machinery.

Clients poll it until the job is final. Built by ``JobDetailOutput`` it cost
twice the CPU of a plain view doing the same database read (bench/RESULTS.md,
the hot read): binding and copying twenty fields per answer, a nested
serializer for the timeline, and the ORM building that timeline's query. Here
the job's query is built once per process, with its timeline as JSON in the
same row, and the answer is written out directly.

``JobDetailOutput`` stays the schema and the source of truth:
tests/test_api_job_detail.py checks that this gives the same JSON for a job in
every state, so a field added there fails that test until it is added here.
The nested parts (parameters, video, error) are the serializer's own functions.
"""

from __future__ import annotations

import json

from django.db import connection
from django.db.models import TextField
from django.db.models.expressions import RawSQL
from django.http import Http404
from django.utils.dateparse import parse_datetime
from rest_framework.fields import DateTimeField

from jobs.actions import can_cancel
from jobs.api.serializers import error_of, parameters_of, video_of
from jobs.models import Job, JobEvent
from jobs.prepared_reads import PreparedRead
from jobs.queue_position import queue_position

# DRF's own rendering of a datetime (ISO 8601 in the current time zone, "Z" for UTC).
_DATETIME = DateTimeField()


def _when(value) -> str | None:
    return None if value is None else _DATETIME.to_representation(value)


def read_job_with_timeline(user, job_id) -> tuple[Job, list[tuple]]:
    """The caller's job and its timeline; 404 for anyone else's (its existence is not told)."""
    job = _JOB_WITH_TIMELINE.first(owner=user.pk, pk=job_id)
    if job is None:
        raise Http404
    # SQLite's JSON holds its stored text (UTC, without a zone), PostgreSQL's an ISO time with one.
    when = getattr(connection.ops, "convert_datetimefield_value", None)
    events = json.loads(job.timeline_json)
    if when is None:
        return job, [(parse_datetime(at), *rest) for at, *rest in events]
    return job, [(when(at, None, connection), *rest) for at, *rest in events]


def _job_with_timeline(owner, pk):
    """The caller's job by id, with its timeline in the same row, as JSON: one
    query, not two. Its SQL is built once (``PreparedRead``): building it for
    every poll cost more than running it (bench/RESULTS.md, the hot read)."""
    timeline = _PG_TIMELINE if connection.vendor == "postgresql" else _SQLITE_TIMELINE
    jobs = Job.objects.for_user(owner).filter(pk=pk)
    return jobs.annotate(timeline_json=RawSQL(timeline, [], output_field=TextField()))


_JOB_WITH_TIMELINE = PreparedRead(Job, _job_with_timeline, "owner", "pk")


# The job's events as a JSON array of [at, from_status, to_status, message], oldest first.
_PG_TIMELINE = (
    "SELECT COALESCE(json_agg(json_build_array(e.at, e.from_status, e.to_status, e.message) "
    f"ORDER BY e.at, e.id), '[]')::text FROM {JobEvent._meta.db_table} e "
    f"WHERE e.job_id = {Job._meta.db_table}.id"
)
# SQLite before 3.44 has no ORDER BY inside an aggregate: the events are ordered in a subquery,
# whose order json_group_array keeps.
_SQLITE_TIMELINE = (
    "SELECT json_group_array(json_array(e.at, e.from_status, e.to_status, e.message)) FROM "
    f"(SELECT at, from_status, to_status, message FROM {JobEvent._meta.db_table} "
    f"WHERE job_id = {Job._meta.db_table}.id ORDER BY at, id) e"
)


def job_detail(job: Job, timeline: list[tuple], request) -> dict:
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
            {"at": _when(at), "from_status": before, "to_status": after, "message": message}
            for at, before, after, message in timeline
        ],
    }
