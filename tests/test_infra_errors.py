"""An outage of storage, the database or the broker is waited out, not held
against the job: only crashes and ordinary errors count toward quarantine."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis.exceptions
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
from django.db import OperationalError
from django.utils import timezone

from jobs import pipeline
from jobs.infra_errors import is_infrastructure_error
from jobs.models import Job
from tests.factories import make_job
from tests.fakes.fixtures import stability_server_fixture  # noqa: F401
from tests.pipeline_helpers import advance, local_copy, make_due

pytestmark = pytest.mark.django_db


def kinds(job: Job) -> list[str]:
    return sorted(job.ledger.values_list("kind", flat=True))


def client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def raised_from(cause: BaseException) -> Exception:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise ValueError("could not save the video") from inner
    except ValueError as outer:
        return outer


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="http://s3.test"),
        ConnectionClosedError(endpoint_url="http://s3.test"),
        ReadTimeoutError(endpoint_url="http://s3.test"),
        client_error(503, "SlowDown"),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError("timed out"),
        OperationalError("server closed the connection unexpectedly"),
        redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379"),
        raised_from(ConnectionResetError(104, "Connection reset by peer")),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_an_unreachable_service_is_an_infrastructure_error(exc):
    assert is_infrastructure_error(exc)


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("boom"),
        KeyError("finish_reason"),
        client_error(403, "AccessDenied"),
        FileNotFoundError(2, "No such file"),
        BrokenPipeError(32, "Broken pipe"),  # ffmpeg's pipe, not a remote service
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_a_bug_or_a_refusal_is_not_an_infrastructure_error(exc):
    assert not is_infrastructure_error(exc)


class FlakyStorage:
    """``pipeline._store`` that fails while ``down`` is set, as S3 does when unreachable."""

    def __init__(self, monkeypatch, error: Exception) -> None:
        self.down = True
        self.calls = 0
        self.error = error
        real = pipeline._store

        def store(path, name):
            self.calls += 1
            if self.down:
                raise self.error
            return real(path, name)

        monkeypatch.setattr(pipeline, "_store", store)


def test_a_storage_outage_in_finalize_outlasts_the_attempt_limit_and_the_job_completes_once_storage_is_back(
    stability_server, settings, monkeypatch
):
    settings.JOB_MAX_ATTEMPTS = 2
    storage = FlakyStorage(monkeypatch, EndpointConnectionError(endpoint_url="http://s3.test/videos"))
    job = advance(make_job(provider="stability"))
    assert job.status == Job.FINALIZING  # the first step already tried to save the video
    for _ in range(settings.JOB_MAX_ATTEMPTS + 4):
        make_due(job)
        job = advance(job)
        assert job.status == Job.FINALIZING
        assert job.attempts == 0
        assert "EndpointConnectionError" in job.error_detail
        assert job.status_message.startswith("Delayed by an outage on our side")
        # Back within a few seconds, so the job resumes soon after the outage.
        assert timezone.now() < job.next_poll_at <= timezone.now() + timedelta(seconds=pipeline.INFRA_RETRY_WAIT)
    assert storage.calls == 1 + settings.JOB_MAX_ATTEMPTS + 4

    storage.down = False
    make_due(job)
    job = advance(job)

    assert job.status == Job.COMPLETED
    assert local_copy(job.video).stat().st_size > 0
    assert kinds(job) == ["capture", "hold"]
    assert len(stability_server.submits) == 1
    outage_notes = job.events.filter(message__startswith="A service was unreachable")
    assert outage_notes.count() == 1  # one line per outage, not one per retry


def test_an_ordinary_error_in_finalize_still_quarantines_after_the_attempt_limit(
    stability_server, settings, monkeypatch
):
    settings.JOB_MAX_ATTEMPTS = 2
    FlakyStorage(monkeypatch, ValueError("the storage backend refused the name"))
    job = advance(make_job(provider="stability"))  # the first attempt
    for _ in range(settings.JOB_MAX_ATTEMPTS - 1):
        make_due(job)
        job = advance(job)
        assert job.status == Job.FINALIZING

    make_due(job)
    job = advance(job)

    assert job.status == Job.FAILED and job.error_code == "internal_error"
    assert "ValueError: the storage backend refused the name" in job.error_detail
    assert kinds(job) == ["hold", "release"]


def test_an_outage_that_lasts_past_the_jobs_time_limit_fails_it_and_releases_the_credits(
    stability_server, settings, monkeypatch
):
    FlakyStorage(monkeypatch, ConnectionClosedError(endpoint_url="http://s3.test/videos"))
    job = advance(make_job(provider="stability"))
    make_due(job)
    job = advance(job)
    assert job.status == Job.FINALIZING

    long_ago = timezone.now() - timedelta(seconds=settings.MAX_CHECK_TIME + 1)
    Job.objects.filter(pk=job.pk).update(submitted_at=long_ago)
    make_due(job)
    job = advance(job)

    assert job.status == Job.FAILED and job.error_code == "timed_out"
    assert "outage on our side" in job.error_message and "not been charged" in job.error_message
    assert "ConnectionClosedError" in job.error_detail
    assert kinds(job) == ["hold", "release"]
    assert job.lease_until is None and job.next_poll_at is None


def test_a_database_outage_mid_step_leaves_the_job_to_its_lease(stability_server, monkeypatch):
    stability_server.script.never_finish = True
    job = advance(make_job(provider="stability"))

    def database_gone(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("providers.stability.StabilityProvider.poll", database_gone)
    monkeypatch.setattr(pipeline, "release", database_gone)
    monkeypatch.setattr(pipeline, "note", database_gone)
    make_due(job)
    pipeline.advance(job.pk)  # no traceback out of the worker's task

    job.refresh_from_db()
    assert job.status == Job.RUNNING
    assert job.lease_until > timezone.now()  # taken up again once it runs out


def test_an_outage_met_after_the_lease_ran_out_and_another_worker_finished_never_counts_below_zero(
    stability_server, monkeypatch
):
    stability_server.script.never_finish = True
    job = advance(make_job(provider="stability"))

    def slow_poll_then_outage(self, *args):
        Job.objects.filter(pk=job.pk).update(attempts=0)  # the next holder finished cleanly meanwhile
        raise ReadTimeoutError(endpoint_url="http://s3.test/videos")

    monkeypatch.setattr("providers.stability.StabilityProvider.poll", slow_poll_then_outage)
    make_due(job)
    job = advance(job)

    assert job.attempts == 0 and job.status == Job.RUNNING
