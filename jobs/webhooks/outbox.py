"""Writing the messages to send, in the transaction that decides them.

``job_ended`` runs inside the job's final transition (``pipeline.transition``
calls it): the delivery row commits with the new status or not at all, so a
worker killed at any point either left the job unfinished (and the step that
finishes it will write the row) or left both. A job reaches a final state
once (compare-and-set), so it gets one row. The task that sends it is
enqueued on commit; if that message is lost, the sweeper finds the row due.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs.models import CallbackDelivery, CallbackTarget, Job, JobEvent
from jobs.webhooks import formats

# The endings a receiver is told about (an expiry, later, is not news).
ENDINGS = frozenset({Job.COMPLETED, Job.FAILED, Job.CANCELLED})


def job_ended(job_id, status: str) -> CallbackDelivery | None:
    """Write the callback for a job that has just ended, if it asked for one.
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
    delivery = CallbackDelivery.objects.create(
        job=job,
        format=target.format,
        url=target.url,
        body=formats.body_for(target, job),
        created_at=now,
        next_attempt_at=_dispatch_grace(now),
    )
    JobEvent.objects.create(
        job=job, at=now, from_status=status, to_status=status, message=f"Callback to {target.url} queued"
    )
    enqueue(delivery.pk)
    return delivery


def send_again(job: Job, *, by) -> CallbackDelivery:
    """Staff's "send the callback again": the last callback's body, sent once more.

    A callback still being retried is made due now instead of being doubled.
    Raises ``LookupError`` when the job never had a callback.
    """
    last = job.deliveries.order_by("-created_at", "-id").first()
    if last is None:
        raise LookupError("This job has no callback to send again.")
    now = timezone.now()
    with transaction.atomic():
        if last.status == CallbackDelivery.PENDING:
            CallbackDelivery.objects.filter(pk=last.pk, status=CallbackDelivery.PENDING).update(next_attempt_at=now)
            delivery, message = last, f"Callback retry brought forward by {by}"
        else:
            delivery = CallbackDelivery.objects.create(
                job=job,
                format=last.format,
                url=last.url,
                body=last.body,
                created_at=now,
                next_attempt_at=_dispatch_grace(now),
                requested_by=str(by)[:150],
            )
            message = f"Callback to {last.url} queued again by {by}"
        JobEvent.objects.create(job=job, at=now, from_status=job.status, to_status=job.status, message=message)
        enqueue(delivery.pk)
    return delivery


def _dispatch_grace(now):
    # The task is enqueued on commit; if its message is lost, the sweeper takes the row after this.
    return now + timedelta(seconds=settings.JOB_DISPATCH_GRACE)


def enqueue(delivery_id) -> None:
    from jobs.tasks import enqueue_delivery

    enqueue_delivery(delivery_id)
