"""A worker that dies while a job is being sent to a remote provider never has
it sent twice: the provider may have taken (and billed) the first one.

The fault gauntlet (bench/bench_gauntlet.py) once killed a worker cluster
after Stability had accepted a job and before its id was stored; the next
worker sent the job again, and Stability made two videos for one job.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import pipeline
from jobs.ledger import balance_of
from jobs.models import Job
from tests.factories import UserFactory, make_job
from tests.fakes.fixtures import stability_server_fixture  # noqa: F401

pytestmark = pytest.mark.django_db


def advance(job: Job) -> Job:
    pipeline.advance(job.pk)
    job.refresh_from_db()
    return job


def died_while_submitting(job: Job) -> None:
    """What a worker killed between the provider's answer and storing it leaves behind."""
    Job.objects.filter(pk=job.pk).update(
        status=Job.PREPARING, seed_used=1, submit_started_at=timezone.now() - timedelta(seconds=30)
    )


def test_a_job_whose_worker_died_mid_submit_fails_uncharged_and_is_not_sent_again(stability_server):
    owner = UserFactory(credits=100)
    job = make_job(owner, provider="stability")
    died_while_submitting(job)

    job = advance(job)

    assert job.status == Job.FAILED
    assert job.error_code == "provider_outcome_unknown"
    assert "cannot tell whether it was accepted" in job.error_message
    assert "nothing was charged" in job.error_message
    assert "outcome was never stored" in job.error_detail
    assert stability_server.submits == []
    assert balance_of(owner) == 100
    assert job.events.last().to_status == Job.FAILED


def test_a_job_whose_id_was_stored_before_its_worker_died_resumes_without_a_submit(stability_server):
    job = make_job(provider="stability")
    died_while_submitting(job)
    Job.objects.filter(pk=job.pk).update(provider_job_id="already-taken")

    job = advance(job)

    assert "Resumed after a restart" in [event.message for event in job.events.all()]
    assert job.provider_job_id == "already-taken"
    assert stability_server.submits == []


def test_a_submit_the_provider_refused_is_sent_again_later(stability_server):
    stability_server.script.fail_next(429, 1, endpoint="submit", retry_after=1)
    stability_server.script.never_finish = True
    job = advance(make_job(provider="stability"))
    assert job.status == Job.PREPARING
    assert job.submit_started_at is None  # 429: Stability did not take it

    Job.objects.filter(pk=job.pk).update(next_poll_at=timezone.now(), lease_until=None)
    job = advance(job)

    assert job.status in (Job.SUBMITTED, Job.RUNNING)
    assert [r.status for r in stability_server.submits] == [429, 200]


def test_a_remote_submit_is_marked_before_its_answer_is_stored(stability_server):
    job = advance(make_job(provider="stability"))

    assert job.provider_job_id
    assert job.submit_started_at is not None and job.submit_started_at <= job.submitted_at


def test_an_inline_render_is_not_marked_as_sending_it_twice_costs_nothing():
    job = advance(make_job(provider="local"))

    assert job.status == Job.COMPLETED
    assert job.submit_started_at is None


def test_a_worker_that_dies_before_anything_is_sent_leaves_the_job_free_to_be_sent(stability_server, monkeypatch):
    # A step that crashes while it builds the request (a native library, say) never
    # reached the provider: the job is tried again, and quarantined if it keeps crashing.
    from providers.stability import StabilityProvider

    def crash(self, request):
        raise MemoryError("died building the request")

    monkeypatch.setattr(StabilityProvider, "submit", crash)
    job = advance(make_job(provider="stability"))

    assert job.submit_started_at is None
    assert job.status != Job.FAILED or job.error_code != "provider_outcome_unknown"
    assert stability_server.submits == []
