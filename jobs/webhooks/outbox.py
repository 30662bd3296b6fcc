"""Writing the messages to send, in the transaction that decides them.

``job_changed`` runs inside the job's transition (``pipeline.transition``
calls it for the statuses that are events): the delivery rows commit with
the new status or not at all, so a worker killed at any point either left
the job unchanged (and the step that changes it will write the rows) or left
both. A job enters each of those statuses once (compare-and-set), so each
receiver gets one row per event. The rows are handed to the workers on
commit (``dispatch.kick``); if that never happens, the sweeper finds them
due after ``JOB_DISPATCH_GRACE``.

Who is told:

* the job's own callback target, written when the job was made: the I2V
  API's callback (its fixed body) or a native job's ``callback_url``
  (Standard Webhooks, signed with its owner's job-callback secret); told
  about the job's end;
* every enabled webhook endpoint of the job's owner that asked for the event.

Events: ``job.started`` when a provider has the job (it enters
``submitted``), ``job.completed``, ``job.failed``, ``job.cancelled``.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs.models import CallbackDelivery, CallbackTarget, Job, JobEvent, WebhookEndpoint
from jobs.webhooks import formats, signing

# The endings a receiver is told about (an expiry, later, is not news).
ENDINGS = frozenset({Job.COMPLETED, Job.FAILED, Job.CANCELLED})
EVENTS = {
    Job.SUBMITTED: "job.started",
    Job.COMPLETED: "job.completed",
    Job.FAILED: "job.failed",
    Job.CANCELLED: "job.cancelled",
}
ALL_EVENTS = tuple(EVENTS.values())
# What an endpoint or a job's callback_url hears when it names no events.
DEFAULT_EVENTS = ("job.completed", "job.failed", "job.cancelled")


def job_changed(job_id, status: str) -> list[CallbackDelivery]:
    """Write the deliveries for a job that has just entered ``status``.
    Call it inside the transaction of the transition."""
    event = EVENTS.get(status)
    if event is None:
        return []
    written: list[CallbackDelivery] = []
    if status in ENDINGS:
        found = job_ended(job_id, status, enqueue_now=False)
        if found is not None:
            written.append(found)
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(owner__jobs=job_id, disabled_at__isnull=True)
        if event in endpoint.events
    ]
    if endpoints:
        job = Job.objects.get(pk=job_id)  # as just written
        bodies: dict[str, str] = {}
        for endpoint in endpoints:
            if event == "job.started" and job.deliveries.filter(endpoint=endpoint, event_type=event).exists():
                continue  # a job resumed after a restart is not news twice
            base = endpoint.public_base_url
            if base not in bodies:
                bodies[base] = formats.standard_body(job, event, base)
            written.append(_write(job, endpoint.url, bodies[base], event, endpoint=endpoint))
    enqueue([row.pk for row in written if _starts_at_once(row.format)])
    return written


def _write(job: Job, url: str, body: str, event: str, *, endpoint: WebhookEndpoint | None = None):
    now = timezone.now()
    row = CallbackDelivery.objects.create(
        job=job,
        endpoint=endpoint,
        event_type=event,
        msg_id=signing.new_msg_id(),
        receiver=receiver_of(url, endpoint),
        format=CallbackTarget.FORMAT_STANDARD,
        url=url,
        body=body,
        created_at=now,
        next_attempt_at=_first_attempt(now, CallbackTarget.FORMAT_STANDARD),
    )
    JobEvent.objects.create(
        job=job, at=now, from_status=job.status, to_status=job.status, message=f"Webhook {event} to {url} queued"
    )
    return row


def receiver_of(url: str, endpoint: WebhookEndpoint | None = None) -> str:
    if endpoint is not None:
        return f"endpoint:{endpoint.pk}"
    return f"host:{urlsplit(url).netloc.lower()}"[:300]


def job_ended(job_id, status: str, *, enqueue_now: bool = True) -> CallbackDelivery | None:
    """Write the callback of a job that has just ended, if it asked for one.
    Call it inside the transaction of the final transition."""
    target = CallbackTarget.objects.filter(job_id=job_id).first()
    if target is None:
        return None
    now = timezone.now()
    if not target.url:
        JobEvent.objects.create(
            job_id=job_id,
            at=now,
            from_status=status,
            to_status=status,
            message="No callback sent: CALLBACK_API_URL is not set.",
        )
        return None
    job = Job.objects.get(pk=job_id)  # as just written, with its video and expiry
    event = EVENTS[status] if target.format == CallbackTarget.FORMAT_STANDARD else ""
    row = CallbackDelivery.objects.create(
        job=job,
        event_type=event,
        msg_id=signing.new_msg_id() if event else "",
        receiver=receiver_of(target.url),
        format=target.format,
        url=target.url,
        body=formats.body_for(target, job, event),
        created_at=now,
        next_attempt_at=_first_attempt(now, target.format),
    )
    what = f"Webhook {event}" if event else "Callback"
    JobEvent.objects.create(
        job=job, at=now, from_status=status, to_status=status, message=f"{what} to {target.url} queued"
    )
    if enqueue_now and _starts_at_once(row.format):
        enqueue([row.pk])
    return row


def send_again(job: Job, *, by, delivery: CallbackDelivery | None = None) -> CallbackDelivery:
    """Send a delivery again (staff, or the endpoint's owner): the same body and
    ``webhook-id`` (it is the same event), signed afresh. By default the job's
    last delivery.

    A delivery still being retried is made due now instead of being doubled.
    Raises ``LookupError`` when the job never had a delivery.
    """
    last = delivery or job.deliveries.order_by("-created_at", "-id").first()
    if last is None:
        raise LookupError("This job has no callback to send again.")
    now = timezone.now()
    what = "Webhook" if last.format == CallbackTarget.FORMAT_STANDARD else "Callback"
    with transaction.atomic():
        if last.status == CallbackDelivery.PENDING:
            CallbackDelivery.objects.filter(pk=last.pk, status=CallbackDelivery.PENDING).update(next_attempt_at=now)
            again, message = last, f"{what} retry brought forward by {by}"
        else:
            again = CallbackDelivery.objects.create(
                job=job,
                endpoint=last.endpoint,
                event_type=last.event_type,
                msg_id=last.msg_id,
                receiver=last.receiver,
                format=last.format,
                url=last.url,
                body=last.body,
                created_at=now,
                next_attempt_at=_dispatch_grace(now),
                requested_by=str(by)[:150],
            )
            message = f"{what} to {last.url} queued again by {by}"
        JobEvent.objects.create(job=job, at=now, from_status=job.status, to_status=job.status, message=message)
        enqueue([again.pk])
    return again


def _starts_at_once(format_name: str) -> bool:
    from jobs.webhooks.delivery import retry_schedule

    return retry_schedule(format_name)[0] == 0


def _first_attempt(now, format_name: str):
    from jobs.webhooks.delivery import retry_schedule

    first = retry_schedule(format_name)[0]
    if first > 0:
        return now + timedelta(seconds=first)
    # Handed over on commit; if that is lost, the sweeper takes the row after this.
    return _dispatch_grace(now)


def _dispatch_grace(now):
    return now + timedelta(seconds=settings.JOB_DISPATCH_GRACE)


def enqueue(delivery_ids: list) -> None:
    from jobs.webhooks import dispatch

    ids = list(delivery_ids)
    if not ids:
        return
    transaction.on_commit(lambda: dispatch.kick(ids))
