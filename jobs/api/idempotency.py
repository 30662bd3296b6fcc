"""``Idempotency-Key`` on create, as the IETF httpapi draft describes it.

A repeat with the same key and body replays the first answer and creates
nothing; the same key with another body is 422; a repeat while the first is
still being handled is 409. Keys belong to the caller. The row's insert is the
lock: two requests can never both own a key.

A request that dies (its worker killed, the machine restarted) cannot clean
up, so ownership is a lease: the row names its ``holder`` and is held until
``leased_until`` (``IDEMPOTENCY_LEASE_SECONDS``, longer than any create may
run). Once the lease has run out, a retry takes the row over with a
compare-and-set on the old holder, so only one retry wins. Whether the dead
request got as far as creating its job is on the row itself: the job is tied
to it (``Claim.bind``) in the very transaction that creates the job, and that
tie is refused once another request holds the key, which rolls the job back.
So a retry either finds the job and answers with it, or knows none was made
and handles the request afresh; a key never makes two jobs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from jobs.api.errors import error_body
from jobs.models import IdempotencyRecord, Job

HEADER = "Idempotency-Key"


class LeaseLost(Exception):
    """This request outlived its lease and a retry took the key over: its job must not be made."""


@dataclass(frozen=True)
class Claim:
    """This request's hold on a key: the row and the holder id that proves it."""

    record_id: int
    holder: uuid.UUID
    job_id: uuid.UUID | None = None  # a job a dead holder already made

    def bind(self, job: Job) -> None:
        """Tie ``job`` to the key. Call it inside the transaction that creates the job,
        so the job and the tie commit together; raises ``LeaseLost`` (rolling the job
        back) when the key is no longer ours."""
        bound = IdempotencyRecord.objects.filter(pk=self.record_id, holder=self.holder, job__isnull=True).update(
            job=job
        )
        if not bound:
            raise LeaseLost

    def store(self, response: Response) -> None:
        body = json.loads(JSONRenderer().render(response.data))  # UUIDs and dates as the client saw them
        IdempotencyRecord.objects.filter(pk=self.record_id, holder=self.holder).update(
            response_status=response.status_code, response_body=body, leased_until=None
        )

    def abandon(self) -> None:
        """Free the key after a refusal, so a corrected retry can use it; if a job was
        made all the same, keep the key but end the lease, so a retry answers with it."""
        mine = IdempotencyRecord.objects.filter(pk=self.record_id, holder=self.holder)
        deleted, _ = mine.filter(job__isnull=True).delete()
        if not deleted:
            mine.update(leased_until=timezone.now())


def binder(request) -> Callable[[Job], None] | None:
    """What a create view passes as ``on_created``: ties the job to the request's key, if it sent one."""
    claim = getattr(request, "idempotency_claim", None)
    return claim.bind if claim is not None else None


def _fingerprint(request) -> str:
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    data = request.data
    if hasattr(data, "lists"):
        items = data.lists()
    elif isinstance(data, dict):
        items = ((k, [v]) for k, v in data.items())
    else:  # a JSON list or scalar: the view will refuse it, but hash it all the same
        items = [("", [data])]
    for name, values in sorted(items, key=lambda item: item[0]):
        for value in values:
            digest.update(name.encode() + b"=")
            digest.update(json.dumps(value, sort_keys=True, default=str).encode())
    for name in sorted(request.FILES):
        for upload in request.FILES.getlist(name):
            digest.update(f"file:{name}=".encode())
            for chunk in upload.chunks():
                digest.update(chunk)
            upload.seek(0)
    return digest.hexdigest()


def _refusal(status: int, code: str, message: str, **headers) -> Response:
    return Response(error_body(status, code, message), status=status, headers=headers)


def _in_progress(message: str) -> Response:
    return _refusal(409, "idempotency_in_progress", message, **{"Retry-After": "1"})


def _claim(user, key: str, fingerprint: str) -> Claim | Response:
    """Take the key for this request, or the answer to give instead."""
    while True:
        now = timezone.now()
        holder = uuid.uuid4()
        lease = now + timedelta(seconds=settings.IDEMPOTENCY_LEASE_SECONDS)
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    user=user, key=key, fingerprint=fingerprint, holder=holder, leased_until=lease
                )
            return Claim(record.pk, holder)
        except IntegrityError:
            pass
        record = IdempotencyRecord.objects.filter(user=user, key=key).first()
        if record is None:  # deleted (refused or expired) meanwhile
            return _in_progress("A request with this key just ended; retry it.")
        finished = record.response_status is not None
        lease_over = record.leased_until is None or record.leased_until <= now
        expired = record.created_at < now - timedelta(seconds=settings.IDEMPOTENCY_TTL_SECONDS)
        if expired and (finished or lease_over):
            # Forgotten: the key is new again. The compare-and-set keeps a concurrent taker's row.
            IdempotencyRecord.objects.filter(pk=record.pk, holder=record.holder).delete()
            continue
        if record.fingerprint != fingerprint:
            return _refusal(
                422,
                "idempotency_key_reused",
                f"This {HEADER} was already used with a different request body; use a new key.",
            )
        if finished:
            response = Response(record.response_body, status=record.response_status)
            response["Idempotent-Replayed"] = "true"
            return response
        if not lease_over:
            return _in_progress(f"A request with this {HEADER} is still being handled; retry shortly.")
        taken = IdempotencyRecord.objects.filter(
            pk=record.pk, holder=record.holder, leased_until=record.leased_until, response_status__isnull=True
        ).update(holder=holder, leased_until=lease)
        if not taken:  # another retry was quicker
            return _in_progress(f"A request with this {HEADER} is still being handled; retry shortly.")
        return Claim(record.pk, holder, record.job_id)


def idempotent(handler):
    """Wrap a DRF ``post`` handler of a view that has ``created_response(request, job)``
    (the answer for a job a dead request made) and passes ``binder(request)`` as the
    job's ``on_created``."""

    @functools.wraps(handler)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        if not 1 <= len(key) <= 255 or not key.isprintable():
            return _refusal(400, "bad_idempotency_key", f"{HEADER} must be 1 to 255 printable characters.")
        claim = _claim(request.user, key, _fingerprint(request))
        if isinstance(claim, Response):
            return claim
        if claim.job_id is not None:
            # The request that held the key made its job, then died before answering.
            job = Job.objects.filter(pk=claim.job_id).first()
            if job is not None:
                response = view.created_response(request, job)
                claim.store(response)
                response["Idempotent-Replayed"] = "true"
                return response
        request.idempotency_claim = claim
        try:
            response = handler(view, request, *args, **kwargs)
        except LeaseLost:
            return _in_progress(f"A retry with this {HEADER} took over this request; its answer is the one to use.")
        except Exception:
            # A refused request (bad input, no credits) did nothing: the key
            # stays free so a corrected retry can use it.
            claim.abandon()
            raise
        if response.status_code >= 400:
            claim.abandon()
        else:
            claim.store(response)
        return response

    return wrapper
