"""A batch of polls (``jobs.tasks.advance_jobs``) costs a few statements, not a few per job,
and keeps every promise a single poll keeps."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs import ledger, poll_batch
from jobs.models import Job
from jobs.pipeline import Next
from jobs.tasks import advance_jobs
from tests.factories import UserFactory, make_job
from tests.fakes.fixtures import stability_server_fixture  # noqa: F401
from tests.pipeline_helpers import advance, local_copy

pytestmark = pytest.mark.django_db


def submitted_jobs(count: int, owner=None) -> list[Job]:
    """Jobs at Stability (looked at by the submit's step or not, as the floor has it), due for a look,
    their count of looks set back to 0."""
    owner = owner or UserFactory()
    ledger.grant(user=owner, amount=100 * count, reason="test")
    jobs = [advance(make_job(owner, provider="stability")) for _ in range(count)]
    assert all(job.status in Job.PROVIDER_STATES for job in jobs)
    Job.objects.filter(pk__in=[job.pk for job in jobs]).update(
        last_polled_at=timezone.now() - timedelta(days=1), polls=0
    )
    for job in jobs:
        job.refresh_from_db()
    return jobs


def looks_at(fake, jobs: list[Job]) -> int:
    ids = {job.provider_job_id for job in jobs}
    return sum(1 for request in fake.polls if request.path.rsplit("/", 1)[-1] in ids)


def job_writes(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and '"jobs_job"' in q["sql"]]


def test_a_batch_of_polls_that_hear_still_running_writes_the_jobs_twice_in_all(stability_server, settings):
    stability_server.script.never_finish = True
    jobs = submitted_jobs(12)  # running: the submit's look heard so
    settings.STABILITY_POLL_INTERVAL = 10.0

    before, looked = timezone.now(), looks_at(stability_server, jobs)
    with CaptureQueriesContext(connection) as queries:
        advance_jobs([str(job.pk) for job in jobs])

    # The claim and the release, for twelve jobs (one job alone used to take the same two).
    assert len(job_writes(queries)) == 2
    assert looks_at(stability_server, jobs) == looked + 12
    for job in jobs:
        job.refresh_from_db()
        assert job.status == Job.RUNNING
        assert job.polls == 1 and job.lease_until is None and job.attempts == 0
        assert job.next_poll_at >= before + timedelta(seconds=10)


def test_the_jobs_of_a_batch_that_hear_different_things_each_get_what_they_heard(stability_server, settings):
    stability_server.script.never_finish = True
    running = submitted_jobs(3)
    stability_server.script.never_finish = False
    stability_server.script.finish_after_polls = 2
    [done] = submitted_jobs(1, owner=running[0].owner)
    # `done` is ready after two 202s: the submit's look, then the first batch's.
    stability_server.script.finish_after_polls = None
    stability_server.script.never_finish = True
    settings.STABILITY_POLL_INTERVAL = 10.0

    advance_jobs([str(job.pk) for job in [*running, done]])
    for job in [*running, done]:
        job.refresh_from_db()
    assert all(job.status == Job.RUNNING and job.polls == 1 and job.lease_until is None for job in running)
    assert done.status == Job.RUNNING and done.polls == 1 and done.lease_until is None

    # Past the floor, the batch again: `done` is ready and completes in it; the others are polled once more.
    Job.objects.filter(pk__in=[job.pk for job in [*running, done]]).update(
        last_polled_at=timezone.now() - timedelta(seconds=11)
    )
    advance_jobs([str(job.pk) for job in [*running, done]])
    done.refresh_from_db()
    assert done.status == Job.COMPLETED, done.error_detail
    assert local_copy(done.video).stat().st_size > 0
    assert ledger.was_charged(done)
    for job in running:
        job.refresh_from_db()
        assert job.polls == 2 and job.status == Job.RUNNING and not ledger.was_charged(job)


def test_a_batch_delivered_twice_polls_each_job_once(stability_server, settings):
    stability_server.script.never_finish = True
    settings.STABILITY_POLL_INTERVAL = 10.0
    jobs = submitted_jobs(5)
    ids, looked = [str(job.pk) for job in jobs], looks_at(stability_server, jobs)

    advance_jobs(ids)
    advance_jobs(ids)  # the floor has not passed: the second delivery only finds that out

    assert looks_at(stability_server, jobs) == looked + 5
    assert all(job.polls == 1 for job in Job.objects.filter(pk__in=ids))


def test_a_job_another_worker_holds_is_left_out_of_the_batch(stability_server):
    stability_server.script.never_finish = True
    jobs = submitted_jobs(3)
    held, looked = timezone.now() + timedelta(seconds=60), looks_at(stability_server, jobs)
    Job.objects.filter(pk=jobs[0].pk).update(lease_until=held)

    advance_jobs([str(job.pk) for job in jobs])

    jobs[0].refresh_from_db()
    assert jobs[0].polls == 0 and jobs[0].lease_until == held
    assert looks_at(stability_server, jobs) == looked + 2


def test_a_look_that_raises_counts_an_attempt_for_that_job_alone(stability_server, monkeypatch):
    stability_server.script.never_finish = True
    broken, fine = submitted_jobs(2)
    real_poll = poll_batch._look

    def look(provider, provider_job_id, context):
        if provider_job_id == broken.provider_job_id:
            raise RuntimeError("a bug in a provider module")
        return real_poll(provider, provider_job_id, context)

    monkeypatch.setattr(poll_batch, "_look", look)
    advance_jobs([str(broken.pk), str(fine.pk)])

    broken.refresh_from_db()
    fine.refresh_from_db()
    assert broken.attempts == 1 and "a bug in a provider module" in broken.error_detail
    assert broken.lease_until is None and broken.next_poll_at > timezone.now()
    assert fine.attempts == 0 and fine.polls == 1 and not fine.error_detail


def test_a_job_past_its_attempts_is_quarantined_by_the_batch_and_released(stability_server, settings):
    stability_server.script.never_finish = True
    [job] = submitted_jobs(1)
    Job.objects.filter(pk=job.pk).update(attempts=settings.JOB_MAX_ATTEMPTS)
    looked = looks_at(stability_server, [job])

    advance_jobs([str(job.pk)])

    job.refresh_from_db()
    assert job.status == Job.FAILED and job.error_code == "internal_error"
    assert job.lease_until is None and not ledger.was_charged(job)
    assert looks_at(stability_server, [job]) == looked


@pytest.mark.django_db(transaction=True)
def test_looks_run_side_by_side_on_threads_and_the_jobs_complete(stability_server):
    """The worker's path: looks on a thread pool, the database on the task's own thread."""
    stability_server.script.finish_after_polls = 1
    jobs = submitted_jobs(6)
    ids = [str(job.pk) for job in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        poll_batch.advance_batch(ids, pool)
    for job in Job.objects.filter(pk__in=ids):
        assert job.status == Job.COMPLETED, job.error_detail
        assert job.polls == 1 and job.lease_until is None
        assert local_copy(job.video).stat().st_size > 0


class HeldExecutor(poll_batch.InlineExecutor):
    """Keeps what it is given until ``run_all``: the worker's finishing pool, slowed down."""

    def __init__(self) -> None:
        self.held: list = []

    def submit(self, fn, /, *args, **kwargs):
        self.held.append((fn, args, kwargs))

    def run_all(self) -> None:
        for fn, args, kwargs in self.held:
            fn(*args, **kwargs)


def test_results_are_stored_behind_the_batch_and_their_jobs_stay_held_until_then(stability_server, settings):
    stability_server.script.finish_after_polls = 1  # the submit's look hears 202; this batch, the video
    jobs = submitted_jobs(3)
    finish = HeldExecutor()

    poll_batch.advance_batch([str(job.pk) for job in jobs], poll_batch.InlineExecutor(), finish)

    assert len(finish.held) == 3
    for job in jobs:
        job.refresh_from_db()
        assert job.status == Job.FINALIZING and job.lease_until > timezone.now()  # no other worker takes it
    finish.run_all()
    for job in jobs:
        job.refresh_from_db()
        assert job.status == Job.COMPLETED and job.lease_until is None and ledger.was_charged(job)


@pytest.mark.django_db(transaction=True)
def test_a_worker_finishing_pool_stores_the_results_of_a_batch(stability_server):
    stability_server.script.finish_after_polls = 1
    jobs = submitted_jobs(4)
    ids = [str(job.pk) for job in jobs]
    with ThreadPoolExecutor(max_workers=4) as looks, ThreadPoolExecutor(max_workers=2) as finish:
        poll_batch.advance_batch(ids, looks, finish)
    for job in Job.objects.filter(pk__in=ids):
        assert job.status == Job.COMPLETED, job.error_detail
        assert job.lease_until is None


def test_a_describing_job_in_a_batch_checks_on_clip_and_not_on_a_video_it_has_not_asked_for(
    stability_server, monkeypatch
):
    job = make_job(provider="stability", prompt="")
    Job.objects.filter(pk=job.pk).update(status=Job.DESCRIBING, prompt_job_id="clip-1")
    looked_at: list = []
    monkeypatch.setattr(poll_batch.pipeline, "step_describe", lambda j: looked_at.append(j.pk) or Next.WAIT)
    monkeypatch.setitem(poll_batch.pipeline.STEPS, Job.DESCRIBING, poll_batch.pipeline.step_describe)
    monkeypatch.setattr(poll_batch, "_look", lambda *args: pytest.fail("a describing job has no video to look at"))

    advance_jobs([str(job.pk)])

    job.refresh_from_db()
    assert looked_at == [job.pk] and job.status == Job.DESCRIBING and job.lease_until is None
