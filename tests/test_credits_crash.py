"""A real worker killed between the provider's success and the capture.

The local provider renders a long clip, so finalizing (every frame decoded by
``media.probe_video``, the files copied into storage) takes a moment; the test
kills the whole qcluster the moment the job is seen in ``finalizing``, before
the completion (which carries the capture) has committed. After a restart the
job must complete from the rendered file, charged exactly once.
"""

from __future__ import annotations

import time

import pytest

from jobs import audit, ledger
from jobs.models import Job, LedgerEntry
from tests.factories import UserFactory, make_job, make_upload
from tests.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TRIES = 4  # how many jobs may finish before the kill lands in finalizing


def kinds(job: Job) -> list[str]:
    return sorted(job.ledger.values_list("kind", flat=True))


def transitions_into(job: Job, status: str) -> int:
    return job.events.filter(to_status=status).exclude(from_status=status).count()


def status_when_seen_finalizing(job: Job, timeout: float) -> str:
    """Watch the job closely; return the status in which it was first seen
    finalizing or final."""
    deadline = time.monotonic() + timeout
    statuses = Job.objects.filter(pk=job.pk).values_list("status", flat=True)
    while time.monotonic() < deadline:
        status = statuses.get()
        if status == Job.FINALIZING or status in Job.FINAL_STATES:
            return status
        time.sleep(0.005)
    raise AssertionError(f"job {job.pk} still {statuses.get()} after {timeout} s")


def test_a_worker_killed_between_success_and_capture_charges_once_after_restart(cluster_factory):
    # Q_TIMEOUT above the render's time even on a busy machine, so only our kill interrupts it.
    cluster = cluster_factory(LOCAL_FRAMES="400", Q_TIMEOUT="90", Q_RETRY="120")
    cluster.start("worker")
    cluster.start("sweeper")

    tried = 0
    for _ in range(TRIES):
        tried += 1
        user = UserFactory(credits=5)
        job = make_job(user, enqueue=True, upload=make_upload(user, width=320, height=180))
        assert ledger.balance_of(user) == 4

        seen = status_when_seen_finalizing(job, timeout=120)
        if seen == Job.FINALIZING:
            cluster.kill("worker")
            job.refresh_from_db()
            if job.status == Job.FINALIZING:
                break  # the kill landed between the provider's success and the capture
        # Too late: the job completed first. It must still be charged once; try again.
        job = wait_for(job, lambda j: j.is_final, 60, cluster)
        assert job.status == Job.COMPLETED and kinds(job) == ["capture", "hold"]
        if "worker" not in cluster.procs:
            cluster.start("worker")
    else:
        pytest.fail(f"in {TRIES} jobs the kill never landed while the job was finalizing")

    assert kinds(job) == ["hold"]  # nothing settled: the completion and its capture never committed
    assert ledger.balance_of(user) == 4

    started = time.monotonic()
    cluster.start("worker")
    job = wait_for(job, lambda j: j.is_final, 120, cluster)
    recovered_in = time.monotonic() - started

    assert job.status == Job.COMPLETED, job.error_message
    assert transitions_into(job, Job.COMPLETED) == 1
    assert transitions_into(job, Job.FINALIZING) == 1  # finished from the rendered file, not rendered again
    assert job.video_frames == 400 and job.video
    assert job.ledger.filter(kind=LedgerEntry.CAPTURE).count() == 1
    assert not job.ledger.filter(kind=LedgerEntry.RELEASE).exists()
    assert kinds(job) == ["capture", "hold"]
    assert ledger.balance_of(user) == 5 - job.cost == ledger.ledger_sum(user)
    assert list(audit.discrepancies()) == []
    print(f"the kill landed in finalizing on job {tried} of {TRIES}; completed {recovered_in:.1f} s after the restart")
