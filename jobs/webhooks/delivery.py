"""Sending one callback: an attempt on a worker, recorded, then done or rescheduled.

An attempt claims the row with a compare-and-set lease (two workers never send
it at once); a worker killed mid-attempt leaves the lease to run out, and the
sweeper hands the row over again, so the receiver may get the same body twice
but never a different one (the body was fixed in the outbox). Any 2xx is
delivered; anything else (a 3xx too: redirects are not followed), a refusal or
no answer in ``CALLBACK_TIMEOUT`` is a failed attempt, retried after the next
pause of ``CALLBACK_RETRY_SCHEDULE``; when the schedule runs out the delivery
has failed for good, and staff can send it again from the admin. Every attempt
is a ``CallbackAttempt`` row and a line on the job's timeline.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from jobs.models import CallbackAttempt, CallbackDelivery, JobEvent
from jobs.webhooks import formats, transport
from providers.safe_fetch import FetchRefused

log = logging.getLogger(__name__)

# The lease outlasts the attempt's own deadline by this much.
LEASE_MARGIN = 5.0


def lease_seconds() -> float:
    return settings.CALLBACK_TIMEOUT + LEASE_MARGIN


def due(now=None):
    now = now or timezone.now()
    return (
        CallbackDelivery.objects.filter(status=CallbackDelivery.PENDING, next_attempt_at__lte=now)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .order_by("next_attempt_at")
    )


def _claim(delivery_id) -> CallbackDelivery | None:
    now = timezone.now()
    lease_until = now + timedelta(seconds=lease_seconds())
    claimed = (
        CallbackDelivery.objects.filter(pk=delivery_id, status=CallbackDelivery.PENDING)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=lease_until, next_attempt_at=lease_until, attempts=F("attempts") + 1)
    )
    if not claimed:
        return None
    return CallbackDelivery.objects.get(pk=delivery_id)


def deliver(delivery_id) -> CallbackAttempt | None:
    """Make one attempt at a pending delivery; None when it is not ours to make."""
    delivery = _claim(delivery_id)
    if delivery is None:
        return None
    started = time.monotonic()
    status_code, answer, error = None, b"", ""
    try:
        response = transport.post(
            delivery.url,
            delivery.body.encode(),
            formats.headers_for(delivery.format),
            timeout=settings.CALLBACK_TIMEOUT,
        )
        status_code, answer = response.status, response.body
    except FetchRefused as exc:
        error = f"{exc.message} {exc.detail}".strip()
    except Exception as exc:  # recorded like any failure; the schedule retries it
        log.exception("callback %s: attempt raised", delivery.pk)
        error = f"{type(exc).__name__}: {exc}"
    duration_ms = int((time.monotonic() - started) * 1000)
    succeeded = status_code is not None and 200 <= status_code < 300
    if status_code is not None and not succeeded:
        error = f"The receiver answered {status_code}" + (
            " (a redirect, which is not followed)." if 300 <= status_code < 400 else "."
        )
    return _record(delivery, succeeded, status_code, answer, error, duration_ms)


def _record(
    delivery: CallbackDelivery, succeeded: bool, status_code: int | None, answer: bytes, error: str, duration_ms: int
) -> CallbackAttempt:
    now = timezone.now()
    schedule = settings.CALLBACK_RETRY_SCHEDULE
    retry_index = delivery.attempts - 1
    fields: dict = {"lease_until": None, "last_error": error[:2000]}
    next_at = None
    if succeeded:
        fields.update(status=CallbackDelivery.DELIVERED, delivered_at=now, next_attempt_at=None, last_error="")
        outcome = f"delivered (HTTP {status_code}, {duration_ms} ms)"
    elif retry_index < len(schedule):
        next_at = now + timedelta(seconds=schedule[retry_index])
        fields.update(next_attempt_at=next_at)
        outcome = f"failed: {error} Next try in {schedule[retry_index]:g} s."
    else:
        fields.update(status=CallbackDelivery.FAILED, next_attempt_at=None)
        outcome = f"failed: {error} Gave up after {delivery.attempts} attempts; staff can send it again."
    with transaction.atomic():
        attempt = CallbackAttempt.objects.create(
            delivery=delivery,
            at=now,
            succeeded=succeeded,
            status_code=status_code,
            response_body=answer[: transport.BODY_CAP].decode("utf-8", "replace"),
            error=error[:2000],
            duration_ms=duration_ms,
            next_attempt_at=next_at,
        )
        CallbackDelivery.objects.filter(pk=delivery.pk).update(**fields)
        status = delivery.job.status
        JobEvent.objects.create(
            job_id=delivery.job_id,
            at=now,
            from_status=status,
            to_status=status,
            message=f"Callback attempt {delivery.attempts} to {delivery.url} {outcome}",
        )
    log.info("callback %s for job %s: attempt %d %s", delivery.pk, delivery.job_id, delivery.attempts, outcome)
    return attempt
