"""The project's URLs plus ``/bench/plain-job/<id>``: the floor the hot status polls are measured against.

A plain Django view doing the same database work as a poll needs at least: the
key checked (``authenticate_key``: the key row with its user) and the caller's
job row read by id and owner, answered as a small JSON. No DRF, no request
budget, no serializer, no signed links. Bench-only: it is not in the product's URLs.
"""

from __future__ import annotations

import uuid

from django.http import JsonResponse
from django.urls import path

from i2v_site.urls import urlpatterns as project_urls
from jobs.apikeys import authenticate_key
from jobs.models import Job


def plain_job(request, job_id: uuid.UUID):
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    key = authenticate_key(raw.strip()) if scheme.lower() == "bearer" else None
    if key is None:
        return JsonResponse({"error": "The API key is missing, wrong or revoked."}, status=401)
    job = Job.objects.filter(pk=job_id, owner_id=key.user_id).first()
    if job is None:
        return JsonResponse({"error": "No such job."}, status=404)
    return JsonResponse({"id": str(job.pk), "status": job.status, "progress": job.progress})


urlpatterns = [path("bench/plain-job/<uuid:job_id>", plain_job), *project_urls]
