"""django-q2 tasks: thin wrappers that load by id and call the pipeline."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from django.db import InterfaceError, OperationalError, connection, transaction
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.tasks import async_task

from jobs import pipeline, poll_batch

log = logging.getLogger(__name__)

_broker = None


def shared_broker():
    # One broker per process: a new connection per enqueue halved throughput.
    global _broker
    if _broker is None:
        _broker = get_broker()
    return _broker


def advance_job(job_id: str) -> None:
    _advance(job_id)


def _advance(job_id: str) -> None:
    """One job's steps; a database outage is a line in the log, not a traceback.

    The job is not lost: unclaimed, the sweeper hands it over again once the
    database is back; claimed, its lease runs out and it is taken up again.
    """
    try:
        pipeline.advance(job_id)
    except (OperationalError, InterfaceError) as exc:
        log.warning("job %s: database unavailable (%s); it will be taken up again once it is back", job_id, exc)
        connection.close()  # a broken connection is not reused by the next task


# Threads for a batch's looks: polls mostly wait on the provider's answer.
BATCH_THREADS = 8
# Threads that store the results a batch found, behind the worker's back.
FINISH_THREADS = 4
_pools: dict[str, ThreadPoolExecutor] = {}


def _worker_pool(name: str, threads: int) -> ThreadPoolExecutor:
    """Pools kept per worker process, made on its first batch (after the
    fork): starting eight threads per batch cost more than a batch's claim.
    A worker process that ends (recycled, stopped) waits for what its pools
    hold; one that is killed leaves those jobs to their leases."""
    if name not in _pools:
        _pools[name] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
    return _pools[name]


def advance_jobs(job_ids: list[str]) -> None:
    """Poll a batch of jobs that are waiting on a remote provider.

    One queue task per poll spent most of its time in the queue's own
    bookkeeping (see bench/RESULTS.md); a batch pays that once, and its
    claim and release (``jobs.poll_batch``) a few statements. Each job is
    still claimed by compare-and-set, so a batch delivered twice changes nothing.
    """
    try:
        if Conf.SYNC:
            poll_batch.advance_batch(job_ids, poll_batch.InlineExecutor())
        else:
            looks, finish = _worker_pool("poll", BATCH_THREADS), _worker_pool("finish", FINISH_THREADS)
            poll_batch.advance_batch(job_ids, looks, finish)
    except (OperationalError, InterfaceError) as exc:
        # Claimed jobs are taken up again when their leases run out.
        log.warning("a batch of %d job(s): database unavailable (%s); it will be taken up again", len(job_ids), exc)
        connection.close()


def enqueue_batch(job_ids: list) -> None:
    ids = [str(job_id) for job_id in job_ids]
    transaction.on_commit(lambda: async_task("jobs.tasks.advance_jobs", ids, broker=shared_broker()))


def enqueue_advance(job_id) -> None:
    """Hand the job to a worker once the current transaction has committed."""
    transaction.on_commit(lambda: async_task("jobs.tasks.advance_job", str(job_id), broker=shared_broker()))


def deliver_callback(delivery_id: int) -> None:
    """One attempt at a callback (``jobs.webhooks.delivery``); a database outage leaves
    the row to its lease, and the sweeper hands it over again."""
    from jobs.webhooks import delivery

    try:
        delivery.deliver(delivery_id)
    except (OperationalError, InterfaceError) as exc:
        log.warning("callback %s: database unavailable (%s); it will be tried again", delivery_id, exc)
        connection.close()


def enqueue_delivery(delivery_id) -> None:
    """Hand a callback to a worker once the current transaction has committed."""
    transaction.on_commit(lambda: async_task("jobs.tasks.deliver_callback", delivery_id, broker=shared_broker()))


def deliver_callbacks(delivery_ids: list[int], token: str) -> None:
    """Attempts at one receiver's deliveries, side by side (``jobs.webhooks.dispatch``):
    a receiver that hangs holds this worker for one timeout, not one per delivery."""
    from datetime import datetime

    from jobs.webhooks import delivery

    lease = datetime.fromisoformat(token)

    def run(delivery_id: int) -> None:
        try:
            delivery.deliver(delivery_id, lease)
        except (OperationalError, InterfaceError) as exc:
            log.warning("delivery %s: database unavailable (%s); it will be tried again", delivery_id, exc)
        finally:
            if not Conf.SYNC:
                connection.close()  # each thread has its own connection

    if Conf.SYNC or len(delivery_ids) == 1:
        for delivery_id in delivery_ids:
            run(delivery_id)
    else:
        with ThreadPoolExecutor(max_workers=len(delivery_ids)) as pool:
            for future in [pool.submit(run, delivery_id) for delivery_id in delivery_ids]:
                future.result()
    if not Conf.SYNC:
        _dispatch_next()


def _dispatch_next() -> None:
    """The receiver's slot is free again: hand over what waits for it now,
    rather than at the next sweep (a busy receiver's deliveries would otherwise
    go one batch per sweep interval)."""
    from jobs.webhooks import dispatch

    try:
        dispatch.dispatch()
    except (OperationalError, InterfaceError) as exc:
        log.warning("deliveries: database unavailable (%s); the sweeper will hand them over", exc)
    finally:
        connection.close()


def enqueue_deliveries(delivery_ids: list[int], token) -> None:
    """Hand one receiver's batch to a worker once the current transaction has committed."""
    ids, stamp = [int(pk) for pk in delivery_ids], token.isoformat()
    transaction.on_commit(lambda: async_task("jobs.tasks.deliver_callbacks", ids, stamp, broker=shared_broker()))
