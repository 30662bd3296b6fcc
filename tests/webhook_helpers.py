"""Shared by the webhook process test and bench: a backlog of deliveries due now."""

from __future__ import annotations

from django.utils import timezone

from jobs.models import CallbackDelivery, CallbackTarget, Job, WebhookEndpoint
from jobs.webhooks import formats, outbox, signing


def pending_backlog(endpoint: WebhookEndpoint, job: Job, count: int) -> int:
    """``count`` deliveries of ``job``'s event to ``endpoint``, due now, as the
    outbox writes them (each its own webhook-id)."""
    now = timezone.now()
    body = formats.standard_body(job, "job.failed", endpoint.public_base_url)
    CallbackDelivery.objects.bulk_create(
        [
            CallbackDelivery(
                job=job,
                endpoint=endpoint,
                event_type="job.failed",
                msg_id=signing.new_msg_id(),
                receiver=outbox.receiver_of(endpoint.url, endpoint),
                format=CallbackTarget.FORMAT_STANDARD,
                url=endpoint.url,
                body=body,
                created_at=now,
                next_attempt_at=now,
            )
            for _ in range(count)
        ],
        batch_size=500,
    )
    return count
