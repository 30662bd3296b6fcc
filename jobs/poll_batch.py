"""A batch of jobs waiting on remote providers, looked at together.

With a thousand jobs in flight the work of a poll is mostly bookkeeping: the
provider's answer ("still running") takes one HTTP request, and the claim,
the read and the release took a statement each, a commit each on SQLite, and
a database connection per thread. Here the batch is claimed with one UPDATE
and one read, the looks run side by side on threads that touch no database,
and the jobs that heard "still running" are released together, one UPDATE
per set of values written (usually one for the batch). A job whose look
moved it on (a result to store, a failure) goes on alone, as ``advance``
would take it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor, Future

from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from jobs import pipeline
from jobs.models import Job
from providers.base import ProviderError
from providers.registry import UnknownProvider, get_provider, provider_class

log = logging.getLogger(__name__)


def advance_batch(job_ids: list, pool: Executor, finish: Executor | None = None) -> None:
    """Claim ``job_ids`` and poll those that wait on a provider; ``pool`` runs
    the looks (and the few jobs that need their own steps, such as a CLIP
    check). A job whose look found its result is stored on ``finish`` when
    given, without waiting for it: a batch that waited for its results to be
    stored (on PostgreSQL, a few commits each, and one user's charges one
    after another) kept the worker from the next batch's looks, which came
    late. Without ``finish`` they are stored on ``pool`` before returning."""
    polls: list[Job] = []
    alone: list[Future] = []
    threaded = not isinstance(pool, InlineExecutor)
    for job in pipeline.claim_many(job_ids):
        if _polled(job):
            polls.append(job)
        else:
            alone.append(pool.submit(_run_alone, job, threaded))
    try:
        for job in _poll_together(polls, pool):
            # A result to store (or whatever the look moved it on to): its own
            # steps and release, beside the others' (each waits on its commits).
            if finish is None:
                alone.append(pool.submit(_run_alone, job, threaded))
            else:
                finish.submit(_run_alone, job, not isinstance(finish, InlineExecutor))
    finally:
        for future in alone:
            future.result()


def _polled(job: Job) -> bool:
    # Only the provider's look: a describing job (also waiting on a remote
    # service) checks on CLIP, its own step.
    if pipeline.STEPS.get(job.status) is not pipeline.step_poll:
        return False
    try:
        return not provider_class(job.provider).renders_inline
    except UnknownProvider:
        return False


def _poll_together(jobs: list[Job], pool: Executor) -> list[Job]:
    """Look at ``jobs`` side by side and release those that wait; returns those
    whose look moved them on, still held, for their next steps."""
    moved_on: list[Job] = []
    waiting: list[Job] = []
    looks: list[tuple[Job, object, Future]] = []
    started_at = timezone.now()
    for job in jobs:
        try:
            provider = get_provider(job.provider)
            context = pipeline.begin_poll(job, provider, started_at)
        except Exception as exc:
            pipeline.handle_step_error(job, exc)
            continue
        if context is None:
            waiting.append(job)
        else:
            looks.append((job, provider, pool.submit(_look, provider, job.provider_job_id, context)))
    outcomes = []
    for job, provider, future in looks:
        try:
            outcomes.append((job, provider, future.result()))
        except Exception as exc:
            pipeline.handle_step_error(job, exc)
    # One time for the whole batch, taken after its last look: the next look
    # of each is timed from it, so none comes sooner than its floor allows,
    # and the jobs that heard "still running" write the same due time.
    looked_at = timezone.now()
    # What the looks heard is written in one transaction: on PostgreSQL
    # every commit waits for a disk flush (milliseconds), and a batch's first
    # looks each move a job from submitted to running. A database error
    # aborts the batch (its leases run out and it is taken up again); any
    # other error is that job's alone, and whatever it wrote went through a
    # transition's own savepoint.
    with transaction.atomic():
        for job, provider, outcome in outcomes:
            before = job.status
            try:
                step = pipeline.finish_poll(job, provider, outcome, looked_at)
                if step is pipeline.Next.CONTINUE and job.status == before:
                    job.refresh_from_db()  # our compare-and-set lost (a cancel, say)
                    step = pipeline.Next.WAIT if job.status == before else step
            except DatabaseError:
                raise
            except Exception as exc:
                pipeline.handle_step_error(job, exc)
                continue
            (moved_on if step is pipeline.Next.CONTINUE else waiting).append(job)
        pipeline.release_many(waiting, finished_cleanly=True)
    return moved_on


def _look(provider, provider_job_id: str, context):
    """The provider's answer, or the ProviderError it raised (an answer too)."""
    try:
        return provider.poll(provider_job_id, context)
    except ProviderError as exc:
        return exc


def _run_alone(job: Job, threaded: bool) -> None:
    try:
        pipeline.run_claimed(job)
    except (OperationalError, InterfaceError) as exc:
        log.warning("job %s: database unavailable (%s); it will be taken up again once it is back", job.pk, exc)
    finally:
        if threaded:
            connection.close()  # the pool thread's own connection


class InlineExecutor(Executor):
    """Runs each call at once in the caller's thread: in-process mode (tests,
    ``Q_SYNC``) runs inside the caller's transaction, where threads would not
    see its rows."""

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future
