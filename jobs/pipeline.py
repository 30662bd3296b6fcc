"""The job state machine: every step an idempotent function of stored state.

``advance(job_id)`` is the only entry point the worker calls. It claims the
job with a compare-and-set lease, runs the step for the job's status, and keeps
going while the next step can run at once; when the job must wait (a provider
is still working), it stores when to look again in ``next_poll_at`` and
returns, so no worker ever sleeps on a job. The sweeper hands due jobs back to
the queue.

Why each step is safe to run twice (a worker killed between a remote call
and the write that records it is the one gap left, as with any provider
without idempotency keys: the call's answer is stored within milliseconds):

* prepare picks the seed inside the same compare-and-set that leaves
  ``queued``, so a second run finds the job already preparing;
* the prompt stage (a provider that needs a prompt, given none) starts one
  CLIP prediction and stores its id in the compare-and-set that leaves
  ``preparing`` for ``describing``; later steps only look at that prediction
  (never more often than ``REPLICATE_POLL_INTERVAL``), so a redelivered step
  polls it instead of starting another. The prompt it writes is stored before
  the video is submitted, so a retried submit never asks CLIP again;
* submit stores the provider's job id in the update that leaves
  ``preparing`` (or ``describing``) and skips the provider call when an id is
  already stored;
* poll only looks, and never more often than the provider's floor, except
  once after a provider's webhook said "look now" (``poked_at``, see
  ``jobs.provider_hooks``), which may skip the floor but not ``MIN_POLL_GAP``;
* finalize writes files under names fixed by the job id and completes with
  a compare-and-set, so a repeat overwrites the same file and changes nothing.
"""

from __future__ import annotations

import logging
import random
import secrets
import shutil
from collections.abc import Callable
from datetime import timedelta
from enum import Enum
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Greatest
from django.utils import timezone

from jobs import lease_claim, ledger, links, media
from jobs.infra_errors import is_infrastructure_error
from jobs.models import Job, JobEvent
from jobs.provider_hooks import links as hook_links
from jobs.webhooks import outbox
from providers import clip
from providers.base import GenerationRequest, MotionMask, PollContext, PollState, ProviderError
from providers.http import before_sending_work
from providers.registry import get_provider
from providers.replicate import image_data_uri

log = logging.getLogger(__name__)

# Backoff for retryable provider errors when the provider gave no Retry-After.
RETRY_BACKOFF = (2.0, 5.0, 10.0, 30.0, 60.0)
# A step that could not reach storage, the database or the broker looks
# again after 2.5-5 s (jittered so that the waiting jobs do not all come at once).
INFRA_RETRY_WAIT = 5.0
INFRA_STATUS = "Delayed by an outage on our side;"
# Even a provider with no poll floor is not asked more than twice a second.
MIN_POLL_GAP = 0.5


class Next(Enum):
    CONTINUE = "continue"  # the next step can run now
    WAIT = "wait"  # next_poll_at says when to look again


# --- Transitions -----------------------------------------------------------------


def transition(
    job: Job,
    to_status: str,
    message: str = "",
    *,
    from_status: str | None = None,
    then: Callable[[Job], object] | None = None,
    **fields,
) -> bool:
    """Move ``job`` from its status to ``to_status`` if nobody else has.

    Returns False, changing nothing, when the stored status is no longer the
    one we read. The event row, ``then`` (the ledger's part) and, for an
    ending, the deliveries' outbox rows happen in the same transaction: a crash
    leaves all of them undone or all done.
    """
    from_status = from_status or job.status
    now = timezone.now()
    fields = {**_take_deferred(job), **fields}
    with transaction.atomic():
        changed = Job.objects.filter(pk=job.pk, status=from_status).update(status=to_status, updated_at=now, **fields)
        if not changed:
            return False
        JobEvent.objects.create(job=job, at=now, from_status=from_status, to_status=to_status, message=message)
        if then is not None:
            then(job)
        if to_status in outbox.EVENTS:
            outbox.job_changed(job.pk, to_status)  # the deliveries commit with the change, or neither does
    job.status = to_status
    for name, value in fields.items():
        if not hasattr(value, "resolve_expression"):  # an F() is only known to the database
            setattr(job, name, value)
    log.info("job %s %s -> %s %s", job.pk, from_status, to_status, message)
    return True


def note(job: Job, message: str) -> None:
    """A timeline line that is not a transition (a retry, a provider hiccup)."""
    JobEvent.objects.create(job=job, from_status=job.status, to_status=job.status, message=message)


def fail(job: Job, code: str, message: str, detail: str = "", *, finish_reason: str = "") -> bool:
    """Fail the job for a reason a person can read; keep provider detail (and
    the provider's finish reason, ``CONTENT_FILTERED`` say) for staff."""
    if job.status in Job.FINAL_STATES:
        return False
    extra = {"finish_reason": finish_reason[:32]} if finish_reason else {}
    return transition(
        job,
        Job.FAILED,
        message,
        **extra,
        error_code=code,
        error_message=message,
        error_detail=detail[:10000],
        finished_at=timezone.now(),
        next_poll_at=None,
        status_message=message[:255],
        then=lambda job: ledger.release(job, f"Job failed ({code}): not charged"),
    )


# --- Claiming --------------------------------------------------------------------


def claim(job_id) -> Job | None:
    """Take the job's lease by compare-and-set; None when another holds it.

    The attempt counter grows with every claim and is reset when a step
    finishes normally, so a job whose step keeps killing its worker is
    quarantined instead of being redelivered forever.
    """
    claimed = claim_many([job_id])
    return claimed[0] if claimed else None


def claim_many(job_ids: list) -> list[Job]:
    """``claim`` for a batch of jobs: one statement whatever its size
    (``jobs.lease_claim``); on a database that cannot return rows from an
    UPDATE, an UPDATE and then a read.

    For that read, the rows this call took are told from rows another worker
    holds by the lease's end, which is made unique to the call (a random part
    below the millisecond).
    """
    now = timezone.now()
    lease_until = now + timedelta(seconds=settings.JOB_LEASE_SECONDS, microseconds=secrets.randbelow(999_000))
    if lease_claim.can_claim_in_one_statement():
        taken = lease_claim.claim_rows(job_ids, now, lease_until)
    else:
        claimed = (
            Job.objects.filter(pk__in=job_ids)
            .exclude(status__in=Job.FINAL_STATES)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .update(lease_until=lease_until, next_poll_at=lease_until, attempts=F("attempts") + 1)
        )
        taken = list(Job.objects.filter(pk__in=job_ids, lease_until=lease_until)) if claimed else []
    jobs = []
    for job in taken:
        job.__dict__["_claimed_at"] = now  # a provider's poke after this is for release() to see
        if job.attempts > settings.JOB_MAX_ATTEMPTS:
            _quarantine(job)
        else:
            jobs.append(job)
    return jobs


def _quarantine(job: Job) -> None:
    detail = f"Quarantined after {job.attempts - 1} attempts that did not finish (worker crash or timeout)."
    if job.error_detail:
        # A step that raised (storage unreachable, say) left its error here:
        # without it staff would look for a crash that never happened.
        detail = f"{detail} Last error recorded: {job.error_detail}"
    fail(
        job,
        "internal_error",
        "This job could not be processed because of an internal error. It has not been charged; please try again.",
        detail,
    )
    release(job, finished_cleanly=True)


def defer(job: Job, **fields) -> None:
    """Fields to store with the next write of this job (its transition or its
    release) instead of a write of their own: on SQLite every commit waits
    for the one write lock, and a poll that only says "still running" should
    cost two commits, not four."""
    job.__dict__.setdefault("_deferred_fields", {}).update(fields)


def _take_deferred(job: Job) -> dict:
    return job.__dict__.pop("_deferred_fields", {})


def release(job: Job, *, finished_cleanly: bool) -> None:
    """Give up the lease, store when to look next (none once the stored status,
    which someone else may have changed meanwhile, is final; now when a
    provider's webhook poked the job while we held it, since our look may have
    come too early) and what was deferred: one UPDATE."""
    release_many([job], finished_cleanly=finished_cleanly)


def release_many(jobs: list[Job], *, finished_cleanly: bool) -> None:
    """``release`` for a batch, in one transaction: jobs that write the same
    values (a batch of polls that all heard "still running", given one due
    time) share one UPDATE."""
    now = timezone.now()
    groups: dict = {}
    for job in jobs:
        fields = {"lease_until": None, **_take_deferred(job)}
        if finished_cleanly:
            fields["attempts"] = 0
        next_poll_at = job.next_poll_at or now
        claimed_at = job.__dict__.pop("_claimed_at", None)
        try:
            key = (next_poll_at, claimed_at, *sorted(fields.items()))
            hash(key)
        except TypeError:  # a value that is no key (a dict of provider data): a group of its own
            key = (job.pk,)
        groups.setdefault(key, (next_poll_at, claimed_at, fields, []))[3].append(job.pk)
    with transaction.atomic():
        for next_poll_at, claimed_at, fields, pks in groups.values():
            whens = [When(status__in=Job.FINAL_STATES, then=Value(None))]
            if claimed_at is not None:
                whens.append(When(poked_at__gte=claimed_at, then=Value(min(now, next_poll_at))))
            Job.objects.filter(pk__in=pks).update(next_poll_at=Case(*whens, default=Value(next_poll_at)), **fields)


def advance(job_id) -> None:
    """Run the job's steps until it is final or has to wait."""
    job = claim(job_id)
    if job is not None:
        run_claimed(job)


def run_claimed(job: Job) -> None:
    """The steps of a job this worker holds the lease of, then the release."""
    try:
        while job.status not in Job.FINAL_STATES:
            before = job.status
            if STEPS[before](job) is Next.WAIT:
                break
            if job.status == before:
                # Our compare-and-set lost (a cancel, say): re-read, never spin.
                job.refresh_from_db()
                if job.status == before:
                    break
    except Exception as exc:
        handle_step_error(job, exc)
        return
    release(job, finished_cleanly=True)


def handle_step_error(job: Job, exc: Exception) -> None:
    """A step raised: an outage (``_infrastructure_trouble``) or anything else
    (``step_raised``). Either way the job is released."""
    if is_infrastructure_error(exc):
        _infrastructure_trouble(job, exc)
        return
    step_raised(job, exc)
    release(job, finished_cleanly=False)


def step_raised(job: Job, exc: Exception) -> None:
    """An unexpected error: keep the attempt counted (no clean finish), and
    look again after a pause; repeated failures end in quarantine. The caller
    releases the job, not cleanly."""
    log.error("job %s: step for %s raised", job.pk, job.status, exc_info=exc)
    job.next_poll_at = timezone.now() + timedelta(seconds=_backoff(job.attempts))
    job.error_detail = f"{type(exc).__name__}: {exc}"[:10000]
    defer(job, error_detail=job.error_detail)


def _infrastructure_trouble(job: Job, exc: Exception) -> None:
    """A step failed because storage, the database or the broker was out of
    reach: not the job's fault, so the attempt is given back (a crash still
    counts, as no handler runs) and the job looks again within a few seconds,
    so it resumes soon after the outage ends, until its own time limit."""
    error = f"{type(exc).__name__}: {exc}"[:10000]
    log.warning("job %s: step for %s could not reach a service: %s", job.pk, job.status, error)
    try:
        started = job.submitted_at or job.created_at
        if timezone.now() > started + timedelta(seconds=settings.MAX_CHECK_TIME):
            fail(job, "timed_out", _outage_timeout_message(), f"Out of time (MAX_CHECK_TIME) during an outage: {error}")
            release(job, finished_cleanly=True)
            return
        # No growth with repeats: a retry costs one claim and one refused
        # connection, and a longer pause would only delay the recovery.
        wait = random.uniform(INFRA_RETRY_WAIT / 2, INFRA_RETRY_WAIT)
        job.next_poll_at = timezone.now() + timedelta(seconds=wait)
        job.error_detail = error
        if not job.status_message.startswith(INFRA_STATUS):
            note(job, f"A service was unreachable: {error[:200]}; retrying every few seconds")
        message = f"{INFRA_STATUS} trying again in {wait:.0f} s."
        # Greatest: a worker that outlived its lease may find the count reset by the next holder.
        defer(job, error_detail=error, status_message=message[:255], attempts=Greatest(F("attempts") - 1, 0))
        release(job, finished_cleanly=False)
    except (OperationalError, InterfaceError):
        # The database itself is out: nothing can be written, so the lease runs
        # out and the job is taken up again (counted, like a crash).
        log.warning("job %s: database unavailable; the job waits for its lease to run out", job.pk)


def _outage_timeout_message() -> str:
    limit = settings.MAX_CHECK_TIME
    span = f"{limit // 60} minutes" if limit >= 120 else f"{limit} seconds"
    return (
        f"This job could not be finished within {span} because of an outage on our side. "
        "It has not been charged; please try again."
    )


def _backoff(attempt: int, retry_after: float | None = None, floor: float = 0.0) -> float:
    wait = RETRY_BACKOFF[min(max(attempt - 1, 0), len(RETRY_BACKOFF) - 1)]
    if retry_after is not None:
        wait = retry_after
    return max(wait, floor)


# --- Steps -----------------------------------------------------------------------


def step_prepare(job: Job) -> Next:
    provider = get_provider(job.provider)
    seed = job.seed or random.randint(1, provider.seed_max)
    message = f"Preparing (seed {seed})" if not job.seed else "Preparing"
    transition(job, Job.PREPARING, message, seed_used=seed, status_message="Preparing the image")
    return Next.CONTINUE


def step_submit(job: Job) -> Next:
    """From ``preparing`` (or ``describing`` once the prompt is written)."""
    provider = get_provider(job.provider)
    now = timezone.now()
    from_status = job.status
    first_poll = now + timedelta(seconds=max(settings.INITIAL_WAIT_TIME, provider.min_poll_interval))
    if job.provider_job_id:
        # Submitted before a crash: never submit again.
        transition(job, Job.SUBMITTED, "Resumed after a restart", submitted_at=job.submitted_at or now)
        job.next_poll_at = first_poll
        return Next.CONTINUE if first_poll <= now else Next.WAIT
    if job.submit_started_at is not None:
        # The provider may have taken the job: sending it again could make (and
        # bill) a second video. The seam's submit rule, for a worker that died.
        fail(
            job,
            "provider_outcome_unknown",
            "Our worker stopped while this job was being sent to the provider, so we cannot tell whether it "
            "was accepted. It has not been sent again, to avoid a duplicate; nothing was charged, please try again.",
            f"A submit began at {job.submit_started_at.isoformat()} and its outcome was never stored.",
        )
        return Next.WAIT
    if now > job.created_at + timedelta(seconds=settings.MAX_CHECK_TIME):
        fail(job, "timed_out", _timeout_message(job), "Gave up submitting: the provider never accepted the job.")
        return Next.WAIT
    if provider.needs_prompt and not job.prompt:
        return _start_prompt(job)
    request = GenerationRequest(
        job_id=str(job.pk),
        image_path=media.local_input(job),
        width=job.width,
        height=job.height,
        seed=job.seed_used,
        cfg_scale=job.cfg_scale,
        motion_bucket_id=job.motion_bucket_id,
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        extra=dict(job.extra_params),
        model=job.model,
        source_path=media.local_original(job) if provider.uses_original else None,
        image_url=_image_url(provider, job.upload),
        **_other_images(job, provider),
        webhook_url=hook_links.webhook_url(job, provider.name) if provider.supports_webhook else "",
    )
    # Once a request that may start the work is on its way, its outcome is unknown
    # until the answer is stored (sending an inline render twice costs nothing).
    mark = None if provider.renders_inline else lambda: Job.objects.filter(pk=job.pk).update(submit_started_at=now)
    try:
        with before_sending_work(mark):
            provider_job_id = provider.submit(request)
    except ProviderError as exc:
        if exc.retryable:  # the provider did not take it (the seam's submit rule): it may be sent again
            defer(job, submit_started_at=None)
        return _provider_trouble(job, exc, "submitting")
    changed = transition(
        job,
        Job.SUBMITTED,
        f"Submitted to {provider.label or provider.name}",
        from_status=from_status,
        provider_job_id=provider_job_id,
        submitted_at=now,
        status_message="Waiting for the provider",
        progress=0.0,
    )
    if not changed:
        # Cancelled while we were submitting: stop the work nobody will collect.
        _cancel_quietly(lambda: provider.cancel(provider_job_id) if provider.supports_cancel else False, job)
        return Next.WAIT
    job.next_poll_at = first_poll
    return Next.CONTINUE if first_poll <= now else Next.WAIT


def _image_url(provider, upload) -> str:
    """A link the provider may fetch ``upload`` from: one it needs (ours, or
    the URL the image came from), or, for one that also takes images inline,
    only our signed link to the normalised frame (the frame that the end
    frame and masks were fitted to); "" when there is none."""
    if provider.needs_image_url:
        return links.provider_image_url(upload)
    if provider.accepts_image_url:
        return links.public_image_url(upload)
    return ""


def _other_images(job: Job, provider) -> dict:
    """The end frame and the masks of ``job`` as ``GenerationRequest`` fields,
    for a provider that takes them."""
    fields: dict = {}
    if job.tail_upload_id and provider.accepts_tail_image:
        fields["tail_image_path"] = media.local_frame(job, job.tail_upload, "tail.png")
        fields["tail_image_url"] = _image_url(provider, job.tail_upload)
    if provider.accepts_masks:
        dynamic = []
        for mask in job.masks.select_related("upload"):
            motion = MotionMask(
                image_path=media.local_frame(job, mask.upload, f"mask-{mask.position}.png"),
                image_url=_image_url(provider, mask.upload),
                trajectory=tuple((int(x), int(y)) for x, y in mask.trajectory),
            )
            if mask.is_static:
                fields["static_mask"] = motion
            else:
                dynamic.append(motion)
        fields["dynamic_masks"] = tuple(dynamic)
    return fields


# --- The prompt stage -------------------------------------------------------------


def _prompt_interval() -> float:
    return max(float(settings.REPLICATE_POLL_INTERVAL), MIN_POLL_GAP)


def _start_prompt(job: Job) -> Next:
    """A provider that needs a prompt was given none: have CLIP write one from
    the photo (the prediction id stored as the job leaves ``preparing``), or,
    without a Replicate token, use ``DEFAULT_PROMPT``."""
    if not clip.is_configured():
        if not settings.DEFAULT_PROMPT:
            fail(
                job,
                "prompt_required",
                "This provider needs a prompt and none was given. It has not been charged; give a prompt, "
                "or ask the operator to set REPLICATE_API_TOKEN (a prompt is then written from the photo) "
                "or DEFAULT_PROMPT.",
                "needs_prompt provider, no prompt, no REPLICATE_API_TOKEN, no DEFAULT_PROMPT",
            )
            return Next.WAIT
        if _store_prompt(job, settings.DEFAULT_PROMPT, Job.PROMPT_DEFAULT, "Using DEFAULT_PROMPT (no Replicate token)"):
            return step_submit(job)
        return Next.WAIT
    image_ref = links.provider_image_url(job.upload) or image_data_uri(media.local_input(job))
    try:
        prediction_id = clip.start(image_ref, webhook_url=hook_links.webhook_url(job, "replicate"))
    except ProviderError as exc:
        return _provider_trouble(job, exc, "asking Replicate's CLIP interrogator", floor=_prompt_interval())
    changed = transition(
        job,
        Job.DESCRIBING,
        "Asked Replicate's CLIP interrogator to write a prompt from the photo",
        from_status=Job.PREPARING,
        prompt_job_id=prediction_id,
        status_message="Writing a prompt from your photo",
    )
    if not changed:
        _cancel_quietly(lambda: clip.cancel(prediction_id), job)
        return Next.WAIT
    job.next_poll_at = timezone.now() + timedelta(seconds=_prompt_interval())
    return Next.WAIT


def step_describe(job: Job) -> Next:
    """Look at the CLIP prediction; once it has written the prompt, submit."""
    if job.prompt:
        # Written before a crash, or the video submit is being retried.
        return step_submit(job)
    now = timezone.now()
    interval = _prompt_interval()
    gap = MIN_POLL_GAP if poked(job) else interval
    if job.last_polled_at and (now - job.last_polled_at).total_seconds() < gap:
        job.next_poll_at = job.last_polled_at + timedelta(seconds=gap)
        return Next.WAIT
    if now > job.created_at + timedelta(seconds=settings.MAX_CHECK_TIME):
        _cancel_quietly(lambda: clip.cancel(job.prompt_job_id), job)
        fail(
            job,
            "timed_out",
            "Replicate's CLIP interrogator did not write a prompt in time, so we stopped waiting. "
            "It has not been charged; please try again, or give a prompt yourself.",
            f"CLIP prediction {job.prompt_job_id} not finished {settings.MAX_CHECK_TIME} s after creation.",
        )
        return Next.WAIT
    defer(job, last_polled_at=now, polls=F("polls") + 1)
    job.last_polled_at = now
    try:
        described = clip.check(job.prompt_job_id)
    except ProviderError as exc:
        return _provider_trouble(job, exc, "checking on Replicate's CLIP interrogator", floor=interval)
    if described.state == "failed":
        fail(job, described.error_code, described.error_message, described.error_detail)
        return Next.WAIT
    if described.state == "running":
        job.next_poll_at = now + timedelta(seconds=interval)
        return Next.WAIT
    if _store_prompt(job, described.prompt, Job.PROMPT_CLIP, "Prompt written by CLIP from the photo"):
        return step_submit(job)
    return Next.WAIT


def _store_prompt(job: Job, prompt: str, source: str, said: str) -> bool:
    """Keep the prompt on the job before anything is submitted with it; False
    when the job moved on meanwhile (a cancel)."""
    with transaction.atomic():
        changed = Job.objects.filter(pk=job.pk, status=job.status, prompt="").update(
            prompt=prompt, prompt_source=source, updated_at=timezone.now()
        )
        if changed:
            note(job, f"{said}: {prompt[:300]}")
    if changed:
        job.prompt, job.prompt_source = prompt, source
    return bool(changed)


def _cancel_quietly(cancel: Callable[[], object], job: Job) -> None:
    """Stop remote work nobody will collect; a failure only costs the operator."""
    try:
        cancel()
    except ProviderError as exc:
        log.warning("job %s: cancel of remote work failed: %s", job.pk, exc.detail or exc)


def step_poll(job: Job) -> Next:
    provider = get_provider(job.provider)
    context = begin_poll(job, provider)
    if context is None:
        return Next.WAIT
    try:
        outcome: PollState | ProviderError = provider.poll(job.provider_job_id, context)
    except ProviderError as exc:
        outcome = exc
    return finish_poll(job, provider, outcome)


def begin_poll(job: Job, provider, now=None) -> PollContext | None:
    """What a poll needs, or None when the job must not be polled now (its
    provider's floor has not passed: ``next_poll_at`` says when; or it ran out
    of time and has been failed). The look itself (``provider.poll``) touches
    no database, so a batch of them can run side by side (given one ``now``,
    the looks of a batch that all hear "still running" write the same values)."""
    now = now or timezone.now()
    floor = provider.min_poll_interval
    # A duplicate delivery honours the provider's poll floor regardless; a
    # provider's own "look now" only the least gap between two looks.
    gap = min(floor, MIN_POLL_GAP) if poked(job) else floor
    if job.last_polled_at and (now - job.last_polled_at).total_seconds() < gap:
        job.next_poll_at = job.last_polled_at + timedelta(seconds=gap)
        return None
    if job.submitted_at and now > job.submitted_at + timedelta(seconds=settings.MAX_CHECK_TIME):
        if provider.supports_cancel:
            try:
                provider.cancel(job.provider_job_id)
            except ProviderError as exc:
                log.warning("job %s: cancel after timeout failed: %s", job.pk, exc.detail or exc)
        fail(
            job,
            "timed_out",
            _timeout_message(job),
            f"No result after {settings.MAX_CHECK_TIME} s (MAX_CHECK_TIME).",
        )
        return None

    defer(job, last_polled_at=now, polls=F("polls") + 1)
    job.last_polled_at = now
    return PollContext(
        video_path=media.work_dir(job) / "video.mp4",
        poster_path=media.work_dir(job) / "poster.jpg",
        report=_progress_reporter(job),
    )


def finish_poll(job: Job, provider, outcome: PollState | ProviderError, now=None) -> Next:
    """Act on what a poll heard. ``now`` is when the look ended (for a batch,
    when the last of its looks did), from which the next look is timed."""
    if isinstance(outcome, ProviderError):
        return _provider_trouble(job, outcome, "checking on")
    return _apply_poll_state(job, outcome, provider.min_poll_interval, now)


def poked(job: Job) -> bool:
    """Whether a provider's webhook said "look now" since the last look: that
    look may skip the poll floor (``jobs.provider_hooks.look`` allows one per look)."""
    return job.poked_at is not None and (job.last_polled_at is None or job.poked_at > job.last_polled_at)


def _apply_poll_state(job: Job, state: PollState, floor: float, now=None) -> Next:
    now = now or timezone.now()
    if state.provider_data and any(job.provider_response.get(k) != v for k, v in state.provider_data.items()):
        # Written with whatever this poll writes next (its transition or the lease's release).
        job.provider_response = {**job.provider_response, **state.provider_data}
        defer(job, provider_response=job.provider_response)
    if state.state == "succeeded":
        transition(
            job,
            Job.FINALIZING,
            "The provider finished; saving the video",
            seed_used=state.seed if state.seed is not None else job.seed_used,
            finish_reason=state.finish_reason or "SUCCESS",
            progress=1.0,
            queue_position=None,
            status_message="Saving the video",
        )
        return Next.CONTINUE
    if state.state == "failed":
        fail(
            job,
            state.error_code or "provider_failed",
            state.error_message or "The provider could not make this video.",
            state.error_detail,
            finish_reason=state.finish_reason,
        )
        return Next.WAIT
    fields = {
        "queue_position": state.queue_position if state.state == "queued" else None,
        "status_message": (state.message or ("In the provider's queue" if state.state == "queued" else "Generating"))[
            :255
        ],
    }
    if state.progress is not None:
        fields["progress"] = max(0.0, min(1.0, state.progress))
    if state.state == "running" and job.status == Job.SUBMITTED:
        transition(job, Job.RUNNING, "The provider started generating", **fields)
    else:
        defer(job, **fields)
    job.next_poll_at = now + timedelta(seconds=max(floor, state.retry_after or 0.0, MIN_POLL_GAP))
    return Next.WAIT


def step_finalize(job: Job) -> Next:
    video_path = media.work_dir(job) / "video.mp4"
    if not video_path.exists():
        if job.video:
            # Files were saved before a crash; only the final update is missing.
            _complete(job, None)
            return Next.WAIT
        # The result vanished (a restart wiped scratch space): fetch it again.
        transition(job, Job.RUNNING, "The result file was missing; fetching it again", last_polled_at=None)
        return Next.CONTINUE
    poster_path = media.work_dir(job) / "poster.jpg"
    try:
        info = media.inspect_video(video_path, None if poster_path.exists() else poster_path)
    except media.BadVideo as exc:
        fail(
            job,
            "bad_video",
            "The provider returned a video that could not be played. It has not been charged; please try again.",
            str(exc),
        )
        return Next.WAIT
    video_name = _store(video_path, f"videos/{job.pk}.mp4")
    poster_name = _store(poster_path, f"posters/{job.pk}.jpg")
    _complete(
        job,
        {
            "video": video_name,
            "poster": poster_name,
            "video_frames": info.frames,
            "video_duration": info.duration,
            "video_bytes": video_path.stat().st_size,
        },
    )
    return Next.WAIT


def _complete(job: Job, files: dict | None) -> None:
    now = timezone.now()
    fields = dict(files or {})
    summary = ""
    if files:
        summary = f" ({files['video_frames']} frames, {files['video_duration']:.2f} s)"
    if transition(
        job,
        Job.COMPLETED,
        "Video ready" + summary,
        from_status=Job.FINALIZING,
        finished_at=now,
        expires_at=job.retention_deadline(now),
        progress=1.0,
        status_message="Video ready",
        next_poll_at=None,
        then=ledger.capture,
        **fields,
    ):
        shutil.rmtree(media.work_dir(job), ignore_errors=True)


def _store(path: Path, name: str) -> str:
    # A fixed name per job: a repeated finalize replaces, never duplicates.
    if default_storage.exists(name):
        default_storage.delete(name)
    with path.open("rb") as handle:
        return default_storage.save(name, File(handle))


STEPS = {
    Job.QUEUED: step_prepare,
    Job.PREPARING: step_submit,
    Job.DESCRIBING: step_describe,
    Job.SUBMITTED: step_poll,
    Job.RUNNING: step_poll,
    Job.FINALIZING: step_finalize,
}


# --- Helpers ---------------------------------------------------------------------


def _provider_trouble(job: Job, exc: ProviderError, doing: str, *, floor: float | None = None) -> Next:
    if not exc.retryable:
        fail(job, exc.code, exc.message, exc.detail)
        return Next.WAIT
    if floor is None:
        floor = get_provider(job.provider).min_poll_interval
    wait = _backoff(job.attempts, exc.retry_after, floor)
    job.next_poll_at = timezone.now() + timedelta(seconds=wait)
    message = f"{exc.message} Trying again in {wait:.0f} s."
    defer(job, status_message=message[:255], error_detail=exc.detail[:10000])
    note(job, f"Trouble {doing} the provider: {exc.message} ({exc.code}); retrying in {wait:.0f} s")
    return Next.WAIT


def _progress_reporter(job: Job):
    """Progress callback for inline providers; writes at most every 5 %."""
    last = {"fraction": -1.0}

    def report(fraction: float, message: str = "") -> None:
        if fraction - last["fraction"] < 0.05 and fraction < 1.0:
            return
        last["fraction"] = fraction
        fields = {"progress": max(0.0, min(1.0, fraction)), "status_message": (message or "Generating")[:255]}
        if job.status == Job.SUBMITTED:
            transition(job, Job.RUNNING, "Rendering started", **fields)
        else:
            Job.objects.filter(pk=job.pk).update(**fields)

    return report


def _timeout_message(job: Job) -> str:
    limit = settings.MAX_CHECK_TIME
    span = f"{limit // 60} minutes" if limit >= 120 else f"{limit} seconds"
    return (
        f"The provider did not finish within {span}, so we stopped waiting. "
        "It has not been charged; please try again, perhaps with another provider."
    )
