"""Provider webhooks end to end, on real processes: a gunicorn serving
``/hooks/``, a django-q2 cluster and the sweeper, and the fake Replicate
posting its own signed webhooks to the gunicorn when a prediction finishes.

``REPLICATE_POLL_INTERVAL`` is 600 s, so a job that completes within the
tests' timeouts was ended by its webhooks, not by its poll schedule.
"""

from __future__ import annotations

import threading

import pytest
from django.utils import timezone

from jobs import ledger
from jobs.models import Job
from tests.factories import UserFactory, make_job
from tests.fakes.replicate_server import FakeReplicateServer
from tests.live_web import LiveWeb
from tests.processes import wait_for, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
WAN = "wavespeedai/wan-2.1-i2v-480p"
TOKEN = "r8_hooks_process"


@pytest.fixture
def stack(settings, tmp_path, cluster_factory):
    """The fake Replicate, a gunicorn for its webhooks, a worker cluster and the sweeper."""
    with FakeReplicateServer(token=TOKEN) as fake:
        common = {
            "REPLICATE_API_TOKEN": TOKEN,
            "REPLICATE_BASE_URL": fake.base_url,
            "REPLICATE_POLL_INTERVAL": "600",
            "SAFE_FETCH_ALLOW": fake.address,
            "REPLICATE_VIDEO_MODEL": WAN,
        }
        web = LiveWeb(settings, tmp_path, workers=2, **common)
        try:
            cluster = cluster_factory(PUBLIC_BASE_URL=web.url, **common)
            cluster.start("worker")
            cluster.start("sweeper")
            settings.REPLICATE_API_TOKEN = TOKEN
            settings.REPLICATE_VIDEO_MODEL = WAN
            yield fake, web, cluster
        finally:
            web.stop()


def delivered(fake: FakeReplicateServer, prediction_id: str) -> list:
    return [sent for sent in fake.webhooks_for(prediction_id) if sent.status == 200]


def gets(fake: FakeReplicateServer, prediction_id: str) -> int:
    return len(fake.calls("GET", f"/v1/predictions/{prediction_id}"))


def test_the_clip_stage_and_the_video_complete_on_their_webhooks_long_before_a_poll(stack):
    fake, web, cluster = stack
    fake.script.finish_after_seconds = 1.0
    owner = UserFactory()
    job = make_job(owner, enqueue=True, provider="replicate", model=WAN)

    # 600 s between polls; the whole job is given a tenth of that.
    job = wait_for(job, lambda j: j.is_final, 60, cluster)

    assert job.status == Job.COMPLETED, job.error_detail
    [clip] = fake.created("clip")
    [video] = fake.created("wan")
    assert clip.webhook == video.webhook == f"{web.url}/hooks/replicate"
    assert len(delivered(fake, clip.id)) == 1 and len(delivered(fake, video.id)) == 1
    # Each prediction was read once: the look its webhook asked for.
    assert gets(fake, clip.id) == 1 and gets(fake, video.id) == 1 and job.polls == 2
    assert job.prompt == fake.script.clip_text and video.input["prompt"] == job.prompt
    assert ledger.balance_of(owner) == 100 - job.cost


def test_a_webhook_that_lands_while_a_poll_is_in_flight_is_neither_lost_nor_doubled(stack):
    fake, _, cluster = stack
    hold = threading.Event()
    fake.script.hold_gets = hold
    owner = UserFactory()
    job = make_job(owner, enqueue=True, provider="replicate", model=WAN, prompt="a red fox in the snow")
    # Submitted and let go (the submit's release would otherwise overwrite the due time set below).
    job = wait_for(job, lambda j: j.status == Job.SUBMITTED and j.lease_until is None, 60, cluster)
    prediction_id = job.provider_job_id

    # The scheduled poll comes; the fake reads "processing" and holds its answer.
    Job.objects.filter(pk=job.pk).update(next_poll_at=timezone.now())
    assert fake.get_waiting.wait(60), cluster.log_text()[-3000:]
    fake.finish(prediction_id)  # the prediction ends now: its webhook reaches us mid-poll
    wait_until(lambda: delivered(fake, prediction_id), 30, lambda: f"webhook not delivered: {fake.webhooks_sent}")
    job.refresh_from_db()
    assert job.poked_at is not None and job.lease_until is not None  # held by the poll in flight
    hold.set()  # the poll answers what it read: still processing

    job = wait_for(job, lambda j: j.is_final, 60, cluster)

    assert job.status == Job.COMPLETED, job.error_detail
    assert gets(fake, prediction_id) == 2 and job.polls == 2  # the held poll, then the one the webhook asked for
    assert len(fake.created()) == 1 and len(fake.webhooks_for(prediction_id)) == 1
    assert ledger.balance_of(owner) == 100 - job.cost
    assert job.events.filter(to_status=Job.COMPLETED).count() == 1
