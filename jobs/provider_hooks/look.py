"""A provider said a job changed: look at it now, through the usual poll.

``look_now`` records the poke (``Job.poked_at``) by compare-and-set and hands
the job to the queue at once when nobody holds it. A job whose poll is in
flight is left to that poll: when it releases the job, a poke newer than its
claim makes the job due at once (``pipeline.release``), so a webhook that
lands mid-poll is neither lost nor doubled. A poke lets the next look skip the
provider's poll floor once; more pokes before that look change nothing, so a
provider (or anyone holding a token) calling again and again costs no more
polls than one call.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from jobs.models import Job, JobEvent, ProviderWebhookReceipt
from jobs.tasks import enqueue_advance

log = logging.getLogger(__name__)

RECEIPT_DAYS = 1


def look_now(job_id, said: str = "A provider's webhook said the job changed") -> bool:
    """Arrange one prompt look at the job; False when one is already arranged
    or the job is not waiting on (or being submitted to) a provider. ``said`` goes on its timeline."""
    now = timezone.now()
    no_poke_pending = Q(poked_at__isnull=True) | Q(last_polled_at__isnull=False, poked_at__lte=F("last_polled_at"))
    with transaction.atomic():
        # Preparing too: a provider may call while our create is still being
        # answered (Pipelet's `acquired`, or a job it ends at once); the submit's
        # release then finds the poke and makes the job due now.
        waiting = Job.PROVIDER_STATES | {Job.PREPARING}
        poked = Job.objects.filter(no_poke_pending, pk=job_id, status__in=waiting).update(poked_at=now)
        if not poked:
            return False
        status = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
        JobEvent.objects.create(
            job_id=job_id, at=now, from_status=status, to_status=status, message=f"{said}; looking now"
        )
        # Pushed past now, like the sweeper's hand-over: the sweeper does not
        # hand it over again meanwhile, and takes it back if the message is lost.
        free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
        grace = now + timedelta(seconds=settings.JOB_DISPATCH_GRACE)
        if Job.objects.filter(free, pk=job_id).update(next_poll_at=grace):
            enqueue_advance(job_id)
    log.info("job %s: a provider webhook asked for a look now", job_id)
    return True


def replicate_finished(webhook_id: str, prediction_id: str) -> str:
    """A verified Replicate webhook: the job waiting on that prediction (its
    video, or its prompt while describing) is looked at now. Returns what
    happened, for the log: "replayed", "unknown" or "looking"/"pending"."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                ProviderWebhookReceipt.objects.create(provider="replicate", webhook_id=webhook_id)
        except IntegrityError:
            return "replayed"
        waiting = Q(provider="replicate", provider_job_id=prediction_id, status__in=[Job.SUBMITTED, Job.RUNNING])
        waiting |= Q(prompt_job_id=prediction_id, status=Job.DESCRIBING)
        job_id = Job.objects.filter(waiting).values_list("pk", flat=True).first()
        if job_id is None:
            return "unknown"
        said = "Replicate's webhook said the prediction finished"
        return "looking" if look_now(job_id, said) else "pending"


def prune_receipts(now=None) -> int:
    """Delete webhook receipts older than a day (a replay that old is refused for its timestamp)."""
    now = now or timezone.now()
    deleted, _ = ProviderWebhookReceipt.objects.filter(received_at__lt=now - timedelta(days=RECEIPT_DAYS)).delete()
    return deleted
