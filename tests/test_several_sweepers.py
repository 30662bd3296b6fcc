"""Several sweepers at once (one per machine, say) never hand one job over twice.

Each sweep takes its due jobs under a row lock that the other sweepers skip,
and moves their due time before letting go, so a job is in one sweeper's hands
or none. A message that still arrives twice is a no-op (the job's lease).
The threaded races need real row locks, so they run on PostgreSQL only.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from jobs import sweeper
from jobs.models import Job, LedgerEntry
from tests.factories import UserFactory, make_job, make_upload
from tests.fakes.stability_server import FakeStabilityServer
from tests.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def postgresql() -> None:
    # SQLite serialises whole transactions; the row locks under test are PostgreSQL's.
    if connection.vendor != "postgresql":
        pytest.skip("row locks between sweepers need PostgreSQL (DATABASE_URL=postgres://...)")


@pytest.fixture
def handed_over(monkeypatch) -> Counter:
    """Every job id a sweep handed to the queue, counted once its transaction committed."""
    sent: Counter = Counter()
    lock = threading.Lock()

    def record(job_ids) -> None:
        with lock:
            sent.update(str(job_id) for job_id in job_ids)

    monkeypatch.setattr(sweeper, "enqueue_advance", lambda job_id: transaction.on_commit(lambda: record([job_id])))
    monkeypatch.setattr(sweeper, "enqueue_batch", lambda ids: transaction.on_commit(lambda: record(list(ids))))
    monkeypatch.setattr(sweeper, "_queue_busy", lambda: False)
    return sent


def test_two_sweepers_sweeping_at_once_hand_each_due_job_over_once(postgresql, handed_over):
    user = UserFactory(credits=1000)
    upload = make_upload(user, width=320, height=200)
    jobs = [make_job(user, upload=upload) for _ in range(120)]
    Job.objects.update(next_poll_at=timezone.now() - timedelta(seconds=1))
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def sweep_repeatedly() -> None:
        try:
            start.wait(timeout=30)
            for _ in range(20):
                sweeper.sweep(handed=sweeper.HandedOver())
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep_repeatedly) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert errors == []
    assert set(handed_over) == {str(job.pk) for job in jobs}
    assert max(handed_over.values()) == 1


def test_two_sweepers_redispatching_lost_messages_at_once_hand_each_job_over_once(postgresql, handed_over):
    user = UserFactory(credits=1000)
    upload = make_upload(user, width=320, height=200)
    jobs = [make_job(user, upload=upload) for _ in range(60)]
    # Created a while ago and never claimed: their messages look lost.
    Job.objects.update(next_poll_at=timezone.now() + timedelta(seconds=1))
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def redispatch() -> None:
        try:
            start.wait(timeout=30)
            for _ in range(10):
                sweeper.redispatch_lost(handed=sweeper.HandedOver())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=redispatch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert errors == []
    assert set(handed_over) == {str(job.pk) for job in jobs}
    assert max(handed_over.values()) == 1


@pytest.mark.slow
def test_jobs_run_by_one_worker_and_two_sweeper_processes_are_submitted_and_charged_once(cluster_factory, settings):
    with FakeStabilityServer(api_key="sk-two-sweepers") as fake:
        settings.STABILITY_API_KEY = fake.api_key
        fake.script.finish_after_seconds = 2
        fake.script.min_interval = 0.5
        cluster = cluster_factory(
            STABILITY_BASE_URL=fake.base_url, STABILITY_API_KEY=fake.api_key, STABILITY_POLL_INTERVAL="0.5"
        )
        cluster.start("worker")
        cluster.start("sweeper")
        cluster.start("sweeper2")
        user = UserFactory(credits=200)
        upload = make_upload(user, width=320, height=200)
        jobs = [make_job(user, upload=upload, enqueue=True, provider="stability") for _ in range(6)]

        wait_until(
            lambda: Job.objects.filter(pk__in=[job.pk for job in jobs], status__in=Job.FINAL_STATES).count() == 6,
            180,
            lambda: (
                f"jobs not final: {list(Job.objects.values_list('status', flat=True))}\n{cluster.log_text()[-3000:]}"
            ),
        )

        assert set(Job.objects.values_list("status", flat=True)) == {Job.COMPLETED}
        assert len(fake.submits) == 6
        assert fake.floor_violations == 0
        captures = LedgerEntry.objects.filter(kind=LedgerEntry.CAPTURE).values_list("job_id", flat=True)
        assert sorted(captures) == sorted(job.pk for job in jobs)
