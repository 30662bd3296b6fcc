"""The job state machine, driven against the fake Stability server over HTTP."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs import media, pipeline
from jobs.models import Job
from jobs.sweeper import sweep
from tests.factories import UserFactory, make_job
from tests.fakes.fixtures import stability_server_fixture  # noqa: F401
from tests.pipeline_helpers import local_copy

pytestmark = pytest.mark.django_db


def statuses(job: Job) -> list[str]:
    return [e.to_status for e in job.events.all() if e.from_status != e.to_status]


def make_due(job: Job) -> None:
    """Time passes: the job's next look is due and any lease has run out."""
    past = timezone.now() - timedelta(seconds=1)
    Job.objects.filter(pk=job.pk).update(next_poll_at=past, lease_until=None, last_polled_at=None)


def advance(job: Job) -> Job:
    pipeline.advance(job.pk)
    job.refresh_from_db()
    return job


def test_stability_job_goes_from_queued_to_completed_with_a_timeline(stability_server):
    stability_server.script.finish_after_polls = 1
    job = make_job(provider="stability", seed=7, cfg_scale=2.5, motion_bucket_id=200)

    job = advance(job)
    assert job.status == Job.RUNNING
    assert job.provider_job_id == stability_server.jobs[0].id

    make_due(job)
    job = advance(job)

    assert job.status == Job.COMPLETED
    assert statuses(job) == ["queued", "preparing", "submitted", "running", "finalizing", "completed"]
    assert job.seed_used == 7 and job.finish_reason == "SUCCESS"
    info = media.probe_video(local_copy(job.video))
    assert info.codec == "h264" and info.frames >= 14
    assert job.video_frames == info.frames and job.poster
    assert job.expires_at > timezone.now() + timedelta(hours=23)
    sent = stability_server.submits[0]
    assert sent.form["seed"] == "7" and sent.form["cfg_scale"] == "2.5" and sent.form["motion_bucket_id"] == "200"


def test_redelivered_step_after_submit_never_submits_again(stability_server):
    stability_server.script.never_finish = True
    job = advance(make_job(provider="stability"))
    assert job.status == Job.RUNNING

    for _ in range(3):  # the same task delivered again after a worker died
        make_due(job)
        job = advance(job)

    assert len(stability_server.submits) == 1
    assert job.status == Job.RUNNING


def test_crash_after_submit_before_transition_resumes_without_resubmitting(stability_server):
    stability_server.script.never_finish = True
    job = make_job(provider="stability")
    # The state a crash leaves: id stored, status still preparing.
    Job.objects.filter(pk=job.pk).update(status=Job.PREPARING, provider_job_id="known-id", seed_used=5)

    job = advance(job)

    assert stability_server.submits == []
    assert job.status in (Job.SUBMITTED, Job.FAILED, Job.RUNNING)
    assert "Resumed after a restart" in [e.message for e in job.events.all()]


def test_a_claimed_job_cannot_be_claimed_again_until_its_lease_runs_out():
    job = make_job()
    assert pipeline.claim(job.pk) is not None
    assert pipeline.claim(job.pk) is None
    Job.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert pipeline.claim(job.pk) is not None


def test_a_claim_is_one_statement_that_returns_the_job_as_stored():
    job = make_job(seed=9)
    Job.objects.filter(pk=job.pk).update(extra_params={"camera": "orbit"})  # JSON comes back as JSON
    other = make_job()
    with CaptureQueriesContext(connection) as queries:
        claimed = pipeline.claim_many([job.pk, other.pk, uuid.uuid4()])

    assert len(queries.captured_queries) == 1
    assert sorted(j.pk for j in claimed) == sorted([job.pk, other.pk])
    mine = next(j for j in claimed if j.pk == job.pk)
    stored = Job.objects.get(pk=job.pk)
    assert mine.attempts == stored.attempts == 1
    assert mine.lease_until == stored.lease_until > timezone.now()
    assert mine.next_poll_at == stored.lease_until
    assert mine.created_at == stored.created_at and timezone.is_aware(mine.created_at)
    assert mine.extra_params == {"camera": "orbit"} and mine.seed == 9
    assert mine.upload == stored.upload  # loaded when a step asks for it


def test_a_claim_leaves_final_and_leased_jobs_alone():
    done = make_job()
    Job.objects.filter(pk=done.pk).update(status=Job.COMPLETED)
    leased = make_job()
    Job.objects.filter(pk=leased.pk).update(lease_until=timezone.now() + timedelta(seconds=30))

    assert pipeline.claim_many([done.pk, leased.pk]) == []
    assert Job.objects.get(pk=done.pk).attempts == Job.objects.get(pk=leased.pk).attempts == 0


def test_job_that_keeps_crashing_its_worker_is_quarantined_with_a_message(settings):
    settings.JOB_MAX_ATTEMPTS = 3
    job = make_job()
    Job.objects.filter(pk=job.pk).update(attempts=3)

    job = advance(job)

    assert job.status == Job.FAILED
    assert job.error_code == "internal_error"
    assert "try again" in job.error_message


def test_rate_limited_submit_is_retried_after_retry_after(stability_server):
    stability_server.script.fail_next(429, 1, endpoint="submit", retry_after=7)
    stability_server.script.never_finish = True
    job = advance(make_job(provider="stability"))

    assert job.status == Job.PREPARING
    assert job.next_poll_at >= timezone.now() + timedelta(seconds=5)
    assert any("retrying in 7 s" in e.message for e in job.events.all())

    make_due(job)
    job = advance(job)
    assert job.status == Job.RUNNING
    assert len([r for r in stability_server.submits if r.status == 200]) == 1


def test_content_moderation_fails_the_job_with_a_readable_reason(stability_server):
    stability_server.script.content_moderation = True
    job = advance(make_job(provider="stability"))

    assert job.status == Job.FAILED
    assert job.error_code == "content_moderation"
    assert "content" in job.error_message.lower()
    assert job.events.last().to_status == Job.FAILED


def test_server_error_while_polling_is_retried_not_failed(stability_server):
    stability_server.script.finish_after_polls = 0
    stability_server.script.fail_next(500, 1, endpoint="result")
    job = advance(make_job(provider="stability"))
    assert job.status == Job.SUBMITTED

    make_due(job)
    job = advance(job)
    assert job.status == Job.COMPLETED


def test_truncated_result_is_fetched_again_and_completes(stability_server):
    stability_server.script.fail_next("truncate", 1, endpoint="result")
    job = advance(make_job(provider="stability"))
    assert job.status != Job.FAILED

    make_due(job)
    job = advance(job)
    assert job.status == Job.COMPLETED
    assert media.probe_video(local_copy(job.video)).frames >= 14


def test_never_finishing_job_fails_at_max_check_time(stability_server, settings):
    settings.MAX_CHECK_TIME = 60
    stability_server.script.never_finish = True
    job = advance(make_job(provider="stability"))
    Job.objects.filter(pk=job.pk).update(submitted_at=timezone.now() - timedelta(seconds=61))

    make_due(job)
    job = advance(job)

    assert job.status == Job.FAILED
    assert job.error_code == "timed_out"
    assert "did not finish within 60 seconds" in job.error_message


def test_duplicate_delivery_never_polls_faster_than_the_provider_floor(stability_server, settings):
    settings.STABILITY_POLL_INTERVAL = 10
    stability_server.script.min_interval = 10
    stability_server.script.never_finish = True
    job = make_job(provider="stability")
    job = advance(job)  # submits; the first poll is 10 s away
    Job.objects.filter(pk=job.pk).update(next_poll_at=timezone.now(), submitted_at=timezone.now())

    for _ in range(3):
        Job.objects.filter(pk=job.pk).update(lease_until=None)
        job = advance(job)

    assert len(stability_server.polls) <= 1
    assert stability_server.floor_violations == 0
    assert job.next_poll_at > timezone.now() + timedelta(seconds=5)


def test_seed_zero_is_replaced_by_a_stored_random_seed(stability_server):
    job = advance(make_job(provider="stability", seed=0))
    assert job.seed == 0
    assert 1 <= job.seed_used <= 4294967294
    assert stability_server.submits[0].form["seed"] == str(job.seed_used)


def test_sweeper_hands_over_due_jobs_once(django_capture_on_commit_callbacks, stability_server):
    stability_server.script.never_finish = True
    due = make_job(provider="stability")
    not_due = make_job(provider="stability")
    make_due(due)
    Job.objects.filter(pk=not_due.pk).update(next_poll_at=timezone.now() + timedelta(minutes=5))

    with django_capture_on_commit_callbacks(execute=True):
        assert sweep() == 1
    assert sweep() == 0  # dispatched jobs are not handed over twice

    due.refresh_from_db()
    not_due.refresh_from_db()
    assert due.status == Job.RUNNING
    assert not_due.status == Job.QUEUED


def test_sweeper_recovers_a_job_whose_worker_died(django_capture_on_commit_callbacks, stability_server):
    job = make_job(provider="stability")
    pipeline.claim(job.pk)  # the worker took it, then died
    assert sweep() == 0
    Job.objects.filter(pk=job.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1), next_poll_at=timezone.now() - timedelta(seconds=1)
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert sweep() == 1

    job.refresh_from_db()
    assert job.status == Job.COMPLETED
    assert len(stability_server.submits) == 1


def test_another_users_job_is_not_in_their_list():
    job = make_job()
    assert Job.objects.for_user(UserFactory()).filter(pk=job.pk).count() == 0


def test_a_result_file_lost_before_saving_is_fetched_again(stability_server):
    job = make_job(provider="stability")
    # Run up to the point where the provider finished, then lose scratch space.
    original = pipeline.STEPS[Job.FINALIZING]
    pipeline.STEPS[Job.FINALIZING] = lambda job: pipeline.Next.WAIT
    try:
        job = advance(job)
    finally:
        pipeline.STEPS[Job.FINALIZING] = original
    assert job.status == Job.FINALIZING
    (media.work_dir(job) / "video.mp4").unlink()

    make_due(job)
    job = advance(job)

    assert job.status == Job.COMPLETED
    assert len(stability_server.submits) == 1
    assert len([r for r in stability_server.polls if r.status == 200]) == 2


def test_an_unexpected_error_in_a_step_is_retried_then_quarantined(stability_server, settings, monkeypatch):
    settings.JOB_MAX_ATTEMPTS = 2
    monkeypatch.setattr(
        "providers.stability.StabilityProvider.poll", lambda self, *a: (_ for _ in ()).throw(RuntimeError("boom"))
    )
    job = advance(make_job(provider="stability"))
    assert job.status == Job.SUBMITTED
    assert "RuntimeError: boom" in job.error_detail
    assert job.next_poll_at > timezone.now()

    for _ in range(2):
        make_due(job)
        job = advance(job)

    assert job.status == Job.FAILED
    assert job.error_code == "internal_error"
    assert len(stability_server.submits) == 1


def test_a_job_quarantined_after_steps_that_raised_keeps_the_last_error(stability_server, settings, monkeypatch):
    settings.JOB_MAX_ATTEMPTS = 2
    monkeypatch.setattr(
        "providers.stability.StabilityProvider.poll",
        lambda self, *a: (_ for _ in ()).throw(KeyError("finish_reason")),
    )
    job = advance(make_job(provider="stability"))
    for _ in range(2):
        make_due(job)
        job = advance(job)

    assert job.status == Job.FAILED
    assert job.error_detail.startswith("Quarantined after 2 attempts")
    assert "KeyError: 'finish_reason'" in job.error_detail


def test_sweeper_hands_provider_polls_over_in_batches(django_capture_on_commit_callbacks, stability_server):
    stability_server.script.never_finish = True
    jobs = [advance(make_job(provider="stability")) for _ in range(30)]
    for job in jobs:
        make_due(job)
    queued = make_job()  # a first step: always a task of its own
    make_due(queued)

    with django_capture_on_commit_callbacks(execute=False) as handed_over:
        assert sweep() == 31

    assert len(handed_over) == 3  # 25 + 5 polls, and the queued job
    for callback in handed_over:
        callback()
    assert len(stability_server.polls) == 30 + 30  # one poll each at submit, one each now
    assert Job.objects.get(pk=queued.pk).status == Job.COMPLETED
