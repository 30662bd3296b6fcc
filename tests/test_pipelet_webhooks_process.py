"""Pipelet's webhooks end to end, on real processes: a gunicorn serving
``/hooks/``, a django-q2 cluster and the sweeper, and the fake Pipelet posting
its own unsigned events (``acquired``, then ``completed`` with the video merged
in) to the gunicorn, once each, as Pipelet does.

``PIPELET_POLL_INTERVAL`` is 600 s, so a job that completes within the tests'
timeouts was ended by a webhook's look, not by its poll schedule.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from jobs import ledger, media
from jobs.models import Job
from tests.factories import UserFactory, make_job
from tests.fakes.pipelet_server import FakePipeletServer, padded_mp4
from tests.live_web import LiveWeb
from tests.pipeline_helpers import local_copy
from tests.processes import wait_for, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
KEY = "pl-hooks-process"


@pytest.fixture
def stack(settings, tmp_path, cluster_factory):
    """The fake Pipelet, a gunicorn for its webhooks, a worker cluster and the sweeper."""
    with FakePipeletServer(token=KEY) as fake:
        common = {
            "PIPELET_API_KEY": KEY,
            "PIPELET_BASE_URL": fake.base_url,
            "PIPELET_POLL_INTERVAL": "600",
            "PIPELET_OUTPUT": "base64",
        }
        web = LiveWeb(settings, tmp_path, workers=2, **common)
        try:
            cluster = cluster_factory(PUBLIC_BASE_URL=web.url, **common)
            cluster.start("worker")
            cluster.start("sweeper")
            settings.PIPELET_API_KEY = KEY
            settings.PIPELET_BASE_URL = fake.base_url
            yield fake, web, cluster
        finally:
            web.stop()


def rid(job: Job) -> str:
    return job.provider_job_id.partition(":")[2]


def polls_at_fake(fake: FakePipeletServer, job: Job) -> int:
    return len([r for r in fake.polls if f"/requests/{rid(job)}/" in r.path])


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_job_completes_on_pipelets_completed_webhook_carrying_the_whole_video(stack):
    fake, web, cluster = stack
    fake.script.finish_after_seconds = 1.0
    fake.script.video = padded_mp4(3 * 1024 * 1024)  # merged into `completed` as base64: 4 MB of body
    owner = UserFactory()
    job = make_job(owner, enqueue=True, provider="pipelet", prompt="waves at dusk")

    # 600 s between polls; the whole job is given a tenth of that.
    job = wait_for(job, lambda j: j.is_final, 60, cluster)

    assert job.status == Job.COMPLETED, job.error_detail
    [create] = fake.creates
    url = create.headers["x-pipelet-webhook"]
    assert url.startswith(f"{web.url}/hooks/pipelet/{job.pk.hex}.")
    [completed] = fake.webhooks_for(rid(job), "completed")
    wait_until(lambda: completed.status is not None, 30, "the completed webhook was never answered")
    assert completed.status == 200 and completed.url == url
    info = media.probe_video(local_copy(job.video))
    assert info.codec == "h264" and info.frames > 0 and job.video.size == len(fake.script.video)
    # A look per webhook at most (`acquired` may land while the create is still being answered).
    assert 1 <= polls_at_fake(fake, job) == job.polls <= 2
    assert len(fake.result_fetches) == 1 and len(fake.creates) == 1
    assert ledger.was_charged(job) and ledger.balance_of(owner) == 100 - job.cost


def test_a_lying_completed_webhook_and_a_forged_one_leave_the_job_running_uncharged(stack):
    fake, web, cluster = stack
    fake.script.finish_after_seconds = 0.5
    fake.script.outcome = "never"  # taken by a worker, IN_PROGRESS for ever
    owner = UserFactory()
    job = make_job(owner, enqueue=True, provider="pipelet", prompt="waves at dusk")
    # `acquired` may have been looked at already (the job is then running): either will do.
    job = wait_for(job, lambda j: j.status in (Job.SUBMITTED, Job.RUNNING) and j.lease_until is None, 60, cluster)
    [acquired] = fake.webhooks_for(rid(job), "acquired")
    wait_until(lambda: acquired.status is not None, 30, "the acquired webhook was never answered")
    # Whatever look `acquired` asked for has run and let the job go. (Its poke is spent once a
    # look started after it: without that, a job released by its submit, its look still to
    # come, passed for settled, and that look was then taken for the lie's.)
    job = wait_for(
        job,
        lambda j: (
            j.lease_until is None
            and j.next_poll_at
            and (j.poked_at is None or (j.last_polled_at is not None and j.last_polled_at >= j.poked_at))
            and j.polls == polls_at_fake(fake, j)
        ),
        60,
        cluster,
    )
    looks = polls_at_fake(fake, job)

    body = json.dumps(fake.hook_body(fake.jobs[rid(job)], "completed", state="COMPLETED")).encode()
    forged = f"{web.url}/hooks/pipelet/{job.pk.hex}.{'A' * 43}"
    assert post(forged, body) == 404
    lie = fake.lie(rid(job))
    wait_until(lambda: lie.status is not None, 30, "the lying webhook was never answered")
    assert lie.status == 200

    # The lie asked for one look; the look found the job in progress.
    try:
        job = wait_for(job, lambda j: polls_at_fake(fake, j) == looks + 1 and j.polls == looks + 1, 60, cluster)
    except AssertionError as exc:  # seen once on a loaded machine: what the web side did, for next time
        raise AssertionError(
            f"{exc}\nlooks before the lie {looks}, at the fake now {polls_at_fake(fake, job)}, counted {job.polls}; "
            f"poked {job.poked_at}, last polled {job.last_polled_at}, next {job.next_poll_at}\n"
            f"web log:\n{web.log.read_text()[-3000:]}"
        ) from None
    job = wait_for(job, lambda j: j.lease_until is None, 60, cluster)
    assert job.status == Job.RUNNING and not job.video
    assert not fake.result_fetches
    assert not ledger.was_charged(job) and ledger.balance_of(owner) == 100 - job.cost


def test_a_job_pipelet_finishes_before_our_create_is_answered_still_completes_on_its_webhook(stack):
    fake, _, cluster = stack
    fake.script.finish_after_seconds = 0.0
    fake.script.hooks_before_answer = True  # both webhooks are answered before the create is
    owner = UserFactory()
    job = make_job(owner, enqueue=True, provider="pipelet", prompt="waves at dusk")

    job = wait_for(job, lambda j: j.is_final, 60, cluster)

    assert job.status == Job.COMPLETED, job.error_detail
    assert [hook.status for hook in fake.webhooks_for(rid(job))] == [200, 200]
    assert ledger.was_charged(job) and ledger.balance_of(owner) == 100 - job.cost
