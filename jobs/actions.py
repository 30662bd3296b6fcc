"""What a person can do to a job: cancel, retry, refund.

The pages, the admin and (later) the API call these, never the models
directly, so the rules and the ledger are the same everywhere.
"""

from __future__ import annotations

from django.db import transaction

from jobs import ledger, pipeline
from jobs.creation import create_job
from jobs.models import Job, LedgerEntry
from providers import clip
from providers.base import ProviderError
from providers.registry import get_provider


class ActionRefused(Exception):
    """The action cannot be done in the job's state; ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _before_provider(job: Job) -> bool:
    # A describing job is with Replicate's CLIP, not yet with the video provider:
    # its cancel stops the CLIP prediction (a few cents for the operator at most).
    return job.status in (Job.QUEUED, Job.PREPARING, Job.DESCRIBING) and not job.provider_job_id


def _provider_can_stop(job: Job) -> bool:
    provider = get_provider(job.provider)
    if provider.cancels_only_queued and job.status == Job.RUNNING:
        return False  # it told us it started: it can no longer stop it
    return provider.supports_cancel and job.status != Job.FINALIZING


def can_cancel(job: Job) -> bool:
    """Whether a cancel of ``job`` as loaded would be tried, so pages offer it only then.

    A provider that can cancel may still refuse a particular job; ``cancel_job`` says so.
    """
    return not job.is_final and (_before_provider(job) or _provider_can_stop(job))


def cancel_job(job: Job, *, by=None) -> Job:
    """Cancel a job that has not finished; its held credits come back.

    Before the provider has it, a cancel always works. Once submitted, only
    providers that can cancel are asked; the others are refused, because the
    provider would go on (and charge) regardless.
    """
    job.refresh_from_db()
    who = f" by {by}" if by else ""
    release = lambda job: ledger.release(job, "Cancelled: not charged")  # noqa: E731
    if job.is_final:
        raise ActionRefused(f"This job is already {job.get_status_display().lower()}; there is nothing to cancel.")
    if _before_provider(job):
        describing = job.status == Job.DESCRIBING
        if pipeline.transition(
            job, Job.CANCELLED, f"Cancelled{who}", next_poll_at=None, status_message="Cancelled", then=release
        ):
            if describing and job.prompt_job_id and not job.prompt:
                _stop_prompt_writer(job)
            return job
        return cancel_job(job, by=by)  # it moved on meanwhile: decide again
    provider = get_provider(job.provider)
    said = getattr(provider, "remote_name", "") or provider.label or job.provider
    started = f"{said} has started this video and cannot stop it; it will finish on its own."
    if not _provider_can_stop(job):
        if provider.supports_cancel and job.status == Job.RUNNING:
            raise ActionRefused(started)
        raise ActionRefused(f"This job is already with {said}, which cannot stop it; it will finish on its own.")
    try:
        agreed = provider.cancel(job.provider_job_id)
    except ProviderError as exc:
        raise ActionRefused(f"The provider did not accept the cancel: {exc.message}") from exc
    if not agreed:
        raise ActionRefused(started)
    pipeline.transition(
        job,
        Job.CANCELLED,
        f"Cancelled{who}; the provider stopped it",
        next_poll_at=None,
        status_message="Cancelled",
        then=release,
    )
    return job


def _stop_prompt_writer(job: Job) -> None:
    try:
        clip.cancel(job.prompt_job_id)
    except ProviderError as exc:
        pipeline.note(job, f"The CLIP prediction could not be stopped: {exc.message}")
    else:
        pipeline.note(job, "The CLIP prediction was stopped")


def can_retry(job: Job) -> bool:
    """Whether a retry of ``job`` as loaded would be tried, so pages offer it only then.

    Only a job that ended without a video is retried: a completed one already has
    its result (a new variation is a new job), an expired one had it.
    """
    return job.status in (Job.FAILED, Job.CANCELLED)


def same_images(job: Job) -> dict:
    """``job``'s end frame and masks, for ``create_job`` of a job made again from it."""
    return {
        "tail_upload": job.tail_upload,
        "masks": [(mask.upload, tuple(tuple(point) for point in mask.trajectory)) for mask in job.masks.all()],
    }


def retry_job(job: Job, *, by=None) -> Job:
    """Start a new job with the same image and parameters (the old one stays)."""
    if not can_retry(job):
        raise ActionRefused("Only a failed or cancelled job can be retried.")
    with transaction.atomic():
        new = create_job(
            owner=job.owner,
            upload=job.upload,
            provider=job.provider,
            model=job.model,
            seed=job.seed,
            cfg_scale=job.cfg_scale,
            motion_bucket_id=job.motion_bucket_id,
            extra_params=job.extra_params,
            # A prompt CLIP wrote is used again (no second description), and still said to be CLIP's.
            prompt=job.prompt,
            prompt_source=job.prompt_source,
            negative_prompt=job.negative_prompt,
            request_id=job.request_id,
            **same_images(job),
        )
        pipeline.note(job, f"Retried as job {new.pk}" + (f" by {by}" if by else ""))
    return new


def can_refund(job: Job) -> bool:
    """Whether a refund of ``job`` would be tried, so pages offer it only then.

    The ledger's rule (``ledger.refund``, which checks it again under a lock):
    the job held credits, the hold was settled (captured on success, released on
    failure or cancel), and it has not been refunded yet.
    """
    kinds = set(LedgerEntry.objects.filter(job=job).values_list("kind", flat=True))
    settled = bool(kinds & {LedgerEntry.CAPTURE, LedgerEntry.RELEASE})
    return LedgerEntry.HOLD in kinds and settled and LedgerEntry.REFUND not in kinds


def refund_job(job: Job, *, staff, reason: str) -> LedgerEntry:
    """Give back what a completed job cost, with the staff member's reason."""
    try:
        with transaction.atomic():
            goodwill = "" if ledger.was_charged(job) else " as goodwill (the job was never charged)"
            entry = ledger.refund(job, reason=reason, staff=staff)
            pipeline.note(job, f"Refunded {entry.amount} credit(s){goodwill} by {staff}: {reason}")
    except ledger.LedgerError as exc:
        raise ActionRefused(str(exc)) from exc
    return entry
