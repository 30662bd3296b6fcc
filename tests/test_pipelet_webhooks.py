"""Pipelet's webhooks end the wait: a job created with ``x-pipelet-webhook``
(a token URL under ``PUBLIC_BASE_URL``) is looked at as soon as Pipelet posts
an event, through the usual poll; the body is never believed.

Here in one process: the fake Pipelet (real HTTP on 127.0.0.1) records the
webhooks it would post, and the test posts them, as they are, to the path of
the URL the fake was given, with the test client. The run where the fake
posts them itself to a real gunicorn is ``test_pipelet_webhooks_process.py``.
``PIPELET_POLL_INTERVAL`` is 600 s: no poll comes in time unless a webhook
asks for it.
"""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from jobs import ledger, media, pipeline
from jobs.actions import cancel_job
from jobs.models import Job, LedgerEntry
from jobs.provider_hooks import links
from jobs.provider_hooks.look import look_now
from providers.pipelet import PipeletProvider
from tests.factories import UserFactory, make_job
from tests.fakes.fixtures import pipelet_server_fixture  # noqa: F401 (the pipelet_server fixture)
from tests.fakes.pipelet_server import padded_mp4
from tests.pipeline_helpers import local_copy, run_until_final

pytestmark = pytest.mark.django_db
PUBLIC = "https://i2v.example.com"


@pytest.fixture
def fake(pipelet_server, settings):
    settings.PIPELET_POLL_INTERVAL = 600.0
    settings.PUBLIC_BASE_URL = PUBLIC
    pipelet_server.script.send_webhooks = False  # here the test posts them, with the test client
    return pipelet_server


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    """Tasks enqueued on commit run (in-process) when the block ends."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def waiting_job(fake) -> Job:
    """A Pipelet job submitted (in Pipelet's queue, not looked at yet); its next look is 600 s away."""
    job = make_job(UserFactory(), provider="pipelet", prompt="waves at dusk")
    pipeline.advance(job.pk)
    job.refresh_from_db()
    assert job.status == Job.SUBMITTED and job.provider_job_id
    assert job.next_poll_at > timezone.now() + timedelta(seconds=500)
    return job


def request_id(job: Job) -> str:
    return job.provider_job_id.partition(":")[2]


def polls_at_fake(fake, job: Job) -> int:
    return len([r for r in fake.polls if f"/requests/{request_id(job)}/" in r.path])


def deliver(client, hook, body: bytes | None = None):
    """Post a webhook the fake recorded, as Pipelet would: to its URL's path, unsigned."""
    url = urlsplit(hook.url)
    assert f"{url.scheme}://{url.netloc}" == PUBLIC
    raw = json.dumps(hook.body).encode() if body is None else body
    return client.post(url.path, raw, content_type="application/json")


def snapshot(job: Job) -> tuple:
    job.refresh_from_db()
    return (job.status, job.polls, job.next_poll_at, job.last_polled_at, job.poked_at)


def test_the_create_carries_a_webhook_url_under_the_public_address_with_an_unguessable_token(fake):
    job = waiting_job(fake)

    [create] = fake.creates
    url = create.headers["x-pipelet-webhook"]
    assert url.startswith(f"{PUBLIC}/hooks/pipelet/")
    token = url.rsplit("/", 1)[1]
    assert links.job_for_token("pipelet", token) == job.pk
    head, _, mac = token.partition(".")
    assert head == job.pk.hex and len(mac) >= 43  # a 256-bit HMAC, not the job id alone
    assert fake.jobs[request_id(job)].webhook_url == url


def test_pipelets_completed_webhook_completes_the_job_long_before_its_next_poll(fake, client, run_on_commit):
    job = waiting_job(fake)
    fake.finish(request_id(job))  # Pipelet takes the job and finishes it: two webhooks
    acquired, completed = fake.webhooks_for(request_id(job))
    assert (acquired.event, completed.event) == ("acquired", "completed")
    assert completed.body["jobId"] == request_id(job) and completed.body["queueName"] == "wan22-fast-i2v"
    assert completed.body["video"]["data_uri"]  # the result, merged in

    with run_on_commit():
        response = deliver(client, completed)

    assert response.status_code == 200, response.content
    job.refresh_from_db()
    assert job.status == Job.COMPLETED, job.error_detail
    info = media.probe_video(local_copy(job.video))
    assert (info.codec, info.height) == ("h264", 720) and info.frames > 0
    assert polls_at_fake(fake, job) == 1 and job.polls == 1  # the webhook's look, nothing else
    assert ledger.was_charged(job) and ledger.balance_of(job.owner) == 100 - job.cost
    said = [event.message for event in job.events.all() if "webhook" in event.message]
    assert said == ["Pipelet's webhook said the job changed; looking now"]


def test_a_completed_webhook_carrying_a_full_size_video_is_taken(fake, client, run_on_commit):
    """On ``completed`` Pipelet merges the result in: the base64 video, megabytes of it."""
    fake.script.video = padded_mp4(3 * 1024 * 1024)
    job = waiting_job(fake)
    fake.finish(request_id(job))
    completed = fake.webhooks_for(request_id(job), "completed")[0]
    raw = json.dumps(completed.body).encode()
    assert len(raw) > 4 * 1024 * 1024

    with run_on_commit():
        response = deliver(client, completed, raw)

    assert response.status_code == 200, response.content
    job.refresh_from_db()
    assert job.status == Job.COMPLETED, job.error_detail
    assert job.video.size == len(fake.script.video)


def test_the_acquired_webhook_makes_one_look_that_shows_the_job_running(fake, client, run_on_commit):
    job = waiting_job(fake)
    fake.acquire(request_id(job))
    [acquired] = fake.webhooks_for(request_id(job))
    assert acquired.event == "acquired" and acquired.body["workerName"]

    with run_on_commit():
        assert deliver(client, acquired).status_code == 200

    job.refresh_from_db()
    assert job.status == Job.RUNNING and polls_at_fake(fake, job) == 1
    assert job.next_poll_at > timezone.now() + timedelta(seconds=500)  # and then back to the schedule


def test_a_failed_webhook_fails_the_job_on_pipelets_own_word_and_releases_the_credits(fake, client, run_on_commit):
    fake.script.outcome = "FAILED"
    job = waiting_job(fake)
    fake.finish(request_id(job))
    [failed] = fake.webhooks_for(request_id(job), "failed")

    with run_on_commit():
        assert deliver(client, failed).status_code == 200

    job.refresh_from_db()
    assert job.status == Job.FAILED and job.error_code == "provider_failed"
    assert "CUDA out of memory" in job.error_detail  # from the poll, not from the webhook
    assert not ledger.was_charged(job) and ledger.balance_of(job.owner) == 100


def test_a_lying_completed_webhook_for_a_job_still_in_progress_leaves_it_running(fake, client, run_on_commit):
    job = waiting_job(fake)
    rid = request_id(job)
    fake.script.outcome = "never"  # the status stays IN_PROGRESS
    fake.acquire(rid)
    lie = fake.lie(rid)
    assert lie.body["eventType"] == "completed" and lie.body["video"]["data_uri"]
    assert fake.jobs[rid].state == "IN_PROGRESS"

    with run_on_commit():
        response = deliver(client, lie)

    assert response.status_code == 200
    job.refresh_from_db()
    assert job.status == Job.RUNNING and not job.video
    assert polls_at_fake(fake, job) == 1 and job.polls == 1  # one extra poll, which decided
    assert not fake.result_fetches  # the result was not asked for, let alone taken from the body
    assert not ledger.was_charged(job) and ledger.balance_of(job.owner) == 100 - job.cost  # held, not charged
    assert job.next_poll_at > timezone.now() + timedelta(seconds=500)


def test_a_forged_post_with_a_wrong_token_is_404_and_changes_nothing(fake, client, run_on_commit):
    job = waiting_job(fake)
    fake.finish(request_id(job))
    completed = fake.webhooks_for(request_id(job), "completed")[0]
    before = snapshot(job)
    good = urlsplit(completed.url).path
    token = good.rsplit("/", 1)[1]
    other = make_job(provider="pipelet", prompt="another")
    for forged in (
        token[:-1] + ("A" if token[-1] != "A" else "B"),
        f"{job.pk.hex}.{'A' * 43}",
        links.token("pipelet", other.pk).replace(other.pk.hex, job.pk.hex),
        links.token("replicate", job.pk),
        job.pk.hex,
    ):
        with run_on_commit():
            response = client.post(f"/hooks/pipelet/{forged}", json.dumps(completed.body), "application/json")
        assert response.status_code == 404, forged
        assert response.json()["error"]["message"] == "No such webhook address."

    assert snapshot(job) == before and polls_at_fake(fake, job) == 0
    assert not LedgerEntry.objects.filter(job=job, kind=LedgerEntry.CAPTURE).exists()


def test_a_webhook_that_lands_while_our_create_is_answered_makes_the_job_due_at_once(fake, monkeypatch):
    real_submit = PipeletProvider.submit

    def submit_and_hear_back(self, request):
        handle = real_submit(self, request)
        fake.finish(handle.partition(":")[2])  # Pipelet ends it at once and calls...
        assert look_now(request.job_id) is True  # ...before we have stored its id
        return handle

    monkeypatch.setattr(PipeletProvider, "submit", submit_and_hear_back)
    job = make_job(UserFactory(), provider="pipelet", prompt="waves at dusk")
    pipeline.advance(job.pk)
    job.refresh_from_db()
    assert job.status == Job.SUBMITTED and job.next_poll_at <= timezone.now()  # due now, not in 600 s

    pipeline.advance(job.pk)
    job.refresh_from_db()
    assert job.status == Job.COMPLETED and polls_at_fake(fake, job) == 1


def test_a_cancelled_job_sends_cancelled_and_its_webhook_is_a_no_op(fake, client, run_on_commit):
    job = waiting_job(fake)

    cancel_job(job, by=job.owner)
    job.refresh_from_db()
    assert job.status == Job.CANCELLED
    [cancelled] = fake.webhooks_for(request_id(job))
    assert cancelled.event == "cancelled"
    before = snapshot(job)

    with run_on_commit():
        assert deliver(client, cancelled).status_code == 200

    assert snapshot(job) == before and polls_at_fake(fake, job) == 0


def test_without_a_public_address_no_webhook_is_asked_for_and_polling_completes_the_job(fake, settings):
    settings.PUBLIC_BASE_URL = ""
    settings.PIPELET_POLL_INTERVAL = 0.0
    job = make_job(UserFactory(), provider="pipelet", prompt="waves at dusk")

    job = run_until_final(job, rounds=12)

    assert job.status == Job.COMPLETED, job.error_detail
    [create] = fake.creates
    assert "x-pipelet-webhook" not in create.headers and "fal_webhook" not in create.path
    assert not fake.webhooks_sent and not fake.jobs[request_id(job)].webhook_url
    assert ledger.was_charged(job)


def test_a_large_body_to_a_wrong_token_is_still_404_and_changes_nothing(fake, client, run_on_commit):
    job = waiting_job(fake)
    before = snapshot(job)
    with run_on_commit():
        response = client.post(f"/hooks/pipelet/{job.pk.hex}.{'B' * 43}", b"x" * (3 * 1024 * 1024), "text/plain")
    assert response.status_code == 404 and response["Connection"] == "close"
    assert snapshot(job) == before
