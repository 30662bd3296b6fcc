"""The one rule for every submit: a POST the provider may have acted on is never
sent again. Driven through the pipeline against the fake Stability server."""

from __future__ import annotations

import socket

import pytest

from jobs import ledger
from jobs.models import Job, LedgerEntry
from tests.factories import UserFactory, make_job
from tests.fakes.fixtures import stability_server_fixture  # noqa: F401
from tests.pipeline_helpers import advance, make_due

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_submit_answered_with_a_server_error_is_sent_once_and_fails_uncharged(stability_server, status):
    stability_server.script.fail_next(status, endpoint="submit")
    owner = UserFactory()
    before = ledger.balance_of(owner)
    job = advance(make_job(owner, provider="stability"))

    for _ in range(2):  # however often the job is looked at again
        make_due(job)
        job = advance(job)

    assert len(stability_server.submits) == 1
    assert job.status == Job.FAILED and job.error_code == "provider_outcome_unknown"
    assert f"answered {status}" in job.error_message and "not been sent again" in job.error_message
    assert f"-> {status}" in job.error_detail
    assert ledger.balance_of(owner) == before
    assert LedgerEntry.objects.filter(job=job, kind="release").exists()


@pytest.mark.parametrize("status", [429, 503])
def test_a_submit_the_provider_did_not_take_is_sent_again_later(stability_server, status):
    stability_server.script.fail_next(status, endpoint="submit", retry_after=0)
    stability_server.script.never_finish = True
    job = advance(make_job(provider="stability"))
    assert job.status == Job.PREPARING

    make_due(job)
    job = advance(job)

    assert [r.status for r in stability_server.submits] == [status, 200]
    assert job.status == Job.RUNNING and job.provider_job_id == stability_server.jobs[0].id


def test_a_submit_whose_connection_was_refused_is_sent_again_later(stability_server, settings):
    stability_server.script.never_finish = True
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    real = settings.STABILITY_BASE_URL
    settings.STABILITY_BASE_URL = f"http://127.0.0.1:{closed}"
    job = advance(make_job(provider="stability"))
    assert job.status == Job.PREPARING
    assert any("provider_unreachable" in e.message for e in job.events.all())

    settings.STABILITY_BASE_URL = real
    make_due(job)
    job = advance(job)

    assert job.status == Job.RUNNING and len(stability_server.submits) == 1


def test_a_failed_job_keeps_the_providers_finish_reason_and_the_api_shows_it(stability_server, client):
    stability_server.script.finish_reason = "CONTENT_FILTERED"
    owner = UserFactory()
    job = advance(make_job(owner, provider="stability"))

    assert job.status == Job.FAILED and job.error_code == "content_filtered"
    assert job.finish_reason == "CONTENT_FILTERED"
    client.force_login(owner)
    shown = client.get(f"/api/v1/jobs/{job.pk}").json()
    assert shown["finish_reason"] == "CONTENT_FILTERED" and shown["status"] == "failed"


def test_a_poll_after_the_key_was_changed_says_the_provider_no_longer_knows_the_job(stability_server, settings):
    stability_server.script.never_finish = True
    job = advance(make_job(provider="stability"))
    stability_server.api_key = settings.STABILITY_API_KEY = "sk-rotated"

    make_due(job)
    job = advance(job)

    assert job.status == Job.FAILED and job.error_code == "provider_job_missing"
    assert "no longer knows this job" in job.error_message and "API key was changed" in job.error_message
