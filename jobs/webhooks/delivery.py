"""Sending one delivery: an attempt on a worker, recorded, then done or rescheduled.

An attempt claims the row with a compare-and-set lease (two workers never send
it at once): either the lease the dispatcher stamped on it (``token``) or, for
a row nobody holds, a fresh one. A worker killed mid-attempt leaves the lease
to run out, and the dispatcher hands the row over again, so the receiver may
get the same message twice (same body, same ``webhook-id``) but never a
different one. Any 2xx is delivered; anything else (a 3xx too: redirects are
not followed), a refusal or no answer in time is a failed attempt, retried
after the next pause of the schedule (``retry_schedule``), or after the
receiver's ``Retry-After`` on 429 and 503 (capped at
``WEBHOOK_RETRY_AFTER_MAX``). When the schedule runs out the delivery has
failed for good, and it can be sent again (dashboard, API, admin). A 410 Gone
from a registered endpoint disables the endpoint: nothing more is sent to it
until its owner enables it again. Every attempt is a ``CallbackAttempt`` row
and a line on the job's timeline.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from jobs.models import CallbackAttempt, CallbackDelivery, CallbackTarget, JobEvent, WebhookEndpoint
from jobs.webhooks import formats, transport
from providers.safe_fetch import FetchRefused

log = logging.getLogger(__name__)

# The lease outlasts the attempt's own deadline by this much: recording the
# attempt may wait on a busy database, and a lease that ran out before it was
# recorded would let the dispatcher start a second batch at the same receiver.
# (Only a crashed attempt waits this long to be retried.)
LEASE_MARGIN = 30.0
# Each pause is stretched or shrunk by up to this share, so retries after an
# outage do not all arrive in the same second.
JITTER = 0.05
RETRY_AFTER_STATUSES = frozenset({429, 503})
# Seconds a batch task keeps, inside the queue's task timeout, for its database work.
TASK_MARGIN = 5.0


def timeout_for(format_name: str) -> float:
    if format_name == CallbackTarget.FORMAT_I2V and settings.CALLBACK_TIMEOUT:
        wanted = settings.CALLBACK_TIMEOUT
    else:
        wanted = settings.WEBHOOK_TIMEOUT
    # A batch of attempts is one queue task: it must end inside the task's own
    # timeout (Q_TIMEOUT), or django-q2 kills the worker in the middle of it.
    return min(wanted, settings.Q_CLUSTER["timeout"] - TASK_MARGIN)


def retry_schedule(format_name: str) -> list[float]:
    """Seconds before each attempt, the first included; one attempt per entry.

    ``WEBHOOK_RETRY_SCHEDULE`` for every delivery; the I2V callback keeps
    ``CALLBACK_RETRY_SCHEDULE`` (the pauses between retries) where it is set.
    """
    if format_name == CallbackTarget.FORMAT_I2V and settings.CALLBACK_RETRY_SCHEDULE:
        return [0.0, *settings.CALLBACK_RETRY_SCHEDULE]
    return list(settings.WEBHOOK_RETRY_SCHEDULE)


def lease_seconds(format_name: str = "") -> float:
    return timeout_for(format_name) + LEASE_MARGIN


def due(now=None):
    """Pending deliveries whose time has come and that nobody holds, except
    those to a disabled endpoint (they wait for it to be enabled)."""
    now = now or timezone.now()
    return (
        CallbackDelivery.objects.filter(status=CallbackDelivery.PENDING, next_attempt_at__lte=now)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(Q(endpoint__isnull=True) | Q(endpoint__disabled_at__isnull=True))
    )


def _claim(delivery_id, token: datetime | None) -> CallbackDelivery | None:
    """The row, leased for one attempt; None when it is not ours to try.

    With a ``token`` (a task from the dispatcher) only a row still carrying
    that stamp is ours: a task delivered twice, or late after its rows were
    handed over again, finds the stamp gone and does nothing. Without one (a
    direct call), any row nobody holds.
    """
    now = timezone.now()
    free = Q(lease_until=token) if token is not None else Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    row = CallbackDelivery.objects.filter(pk=delivery_id).values_list("format", flat=True).first()
    if row is None:
        return None
    lease_until = now + timedelta(seconds=lease_seconds(row))
    claimed = (
        CallbackDelivery.objects.filter(pk=delivery_id, status=CallbackDelivery.PENDING)
        .filter(free)
        .update(lease_until=lease_until, next_attempt_at=lease_until, attempts=F("attempts") + 1)
    )
    if not claimed:
        return None
    return CallbackDelivery.objects.select_related("endpoint", "job__owner").get(pk=delivery_id)


def deliver(delivery_id, token: datetime | None = None) -> CallbackAttempt | None:
    """Make one attempt at a pending delivery; None when it is not ours to make."""
    delivery = _claim(delivery_id, token)
    if delivery is None:
        return None
    if delivery.endpoint_id and not delivery.endpoint.is_enabled:
        # Disabled after it was handed over: it waits, untried, for the endpoint.
        CallbackDelivery.objects.filter(pk=delivery.pk).update(
            lease_until=None, attempts=F("attempts") - 1, next_attempt_at=timezone.now()
        )
        return None
    started = time.monotonic()
    status_code, answer, error, answer_headers = None, b"", "", {}
    try:
        response = transport.post(
            delivery.url,
            delivery.body.encode(),
            formats.headers_for(delivery),
            timeout=timeout_for(delivery.format),
            connect_timeout=settings.WEBHOOK_CONNECT_TIMEOUT,
        )
        status_code, answer, answer_headers = response.status, response.body, response.headers
    except FetchRefused as exc:
        error = f"{exc.message} {exc.detail}".strip()
    except Exception as exc:  # recorded like any failure; the schedule retries it
        log.exception("delivery %s: attempt raised", delivery.pk)
        error = f"{type(exc).__name__}: {exc}"
    duration_ms = int((time.monotonic() - started) * 1000)
    succeeded = status_code is not None and 200 <= status_code < 300
    if status_code is not None and not succeeded:
        error = f"The receiver answered {status_code}" + (
            " (a redirect, which is not followed)." if 300 <= status_code < 400 else "."
        )
    retry_after = _retry_after(answer_headers.get("retry-after", "")) if status_code in RETRY_AFTER_STATUSES else None
    return _record(delivery, succeeded, status_code, answer, error, duration_ms, retry_after)


def _retry_after(value: str) -> float | None:
    """Seconds from a ``Retry-After`` header (a number or an HTTP date), capped."""
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - timezone.now()).total_seconds()
        except (TypeError, ValueError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), settings.WEBHOOK_RETRY_AFTER_MAX)


def _jittered(pause: float) -> float:
    return pause * random.uniform(1 - JITTER, 1 + JITTER)


def _record(
    delivery: CallbackDelivery,
    succeeded: bool,
    status_code: int | None,
    answer: bytes,
    error: str,
    duration_ms: int,
    retry_after: float | None = None,
) -> CallbackAttempt:
    now = timezone.now()
    schedule = retry_schedule(delivery.format)
    fields: dict = {"lease_until": None, "last_error": error[:2000]}
    next_at = None
    gone = status_code == 410
    what = "Webhook" if delivery.format == CallbackTarget.FORMAT_STANDARD else "Callback"
    if delivery.event_type:
        what = f"{what} {delivery.event_type}"
    if succeeded:
        fields.update(status=CallbackDelivery.DELIVERED, delivered_at=now, next_attempt_at=None, last_error="")
        outcome = f"delivered (HTTP {status_code}, {duration_ms} ms)"
    elif gone:
        fields.update(status=CallbackDelivery.FAILED, next_attempt_at=None)
        outcome = "failed: the receiver answered 410 Gone, so nothing more is sent to it."
    elif delivery.attempts < len(schedule):
        pause = retry_after if retry_after is not None else _jittered(schedule[delivery.attempts])
        next_at = now + timedelta(seconds=pause)
        fields.update(next_attempt_at=next_at)
        if retry_after is not None:
            outcome = f"failed: {error} Next try in {retry_after:g} s, as its Retry-After asked."
        else:
            outcome = f"failed: {error} Next try in {schedule[delivery.attempts]:g} s."
    else:
        fields.update(status=CallbackDelivery.FAILED, next_attempt_at=None)
        outcome = f"failed: {error} Gave up after {delivery.attempts} attempts; it can be sent again."
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
        if gone and delivery.endpoint_id:
            WebhookEndpoint.objects.filter(pk=delivery.endpoint_id, disabled_at__isnull=True).update(
                disabled_at=now,
                disabled_reason=f"Disabled on {now:%Y-%m-%d %H:%M} UTC: it answered 410 Gone. "
                "Enable it again once it takes deliveries; the ones waiting will then be sent.",
            )
        status = delivery.job.status
        JobEvent.objects.create(
            job_id=delivery.job_id,
            at=now,
            from_status=status,
            to_status=status,
            message=f"{what} attempt {delivery.attempts} to {delivery.url} {outcome}",
        )
    log.info("delivery %s for job %s: attempt %d %s", delivery.pk, delivery.job_id, delivery.attempts, outcome)
    return attempt
