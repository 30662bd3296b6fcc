"""The two-stage Replicate pipeline (CLIP prompt, then a Wan video) on a real
django-q2 cluster and sweeper: the worker is killed in each stage and started
again, and neither stage starts a second prediction."""

from __future__ import annotations

import pytest

from jobs import media
from jobs.models import Job
from tests.factories import UserFactory, make_job
from tests.fakes.replicate_server import FakeReplicateServer
from tests.pipeline_helpers import local_copy
from tests.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
WAN = "wavespeedai/wan-2.1-i2v-480p"


def test_a_worker_killed_while_describing_and_while_generating_resumes_without_a_second_prediction(
    cluster_factory, settings
):
    with FakeReplicateServer(token="r8_worker") as fake:
        fake.script.finish_after_polls = 4
        settings.REPLICATE_API_TOKEN = "r8_worker"
        settings.REPLICATE_VIDEO_MODEL = WAN
        cluster = cluster_factory(
            REPLICATE_API_TOKEN="r8_worker",
            REPLICATE_BASE_URL=fake.base_url,
            REPLICATE_VIDEO_MODEL=WAN,
            REPLICATE_POLL_INTERVAL="0.5",
            SAFE_FETCH_ALLOW=fake.address,
        )
        cluster.start("worker")
        cluster.start("sweeper")
        job = make_job(UserFactory(), enqueue=True, provider="replicate")

        wait_for(job, lambda j: j.status == Job.DESCRIBING, 60, cluster)
        cluster.kill("worker")
        cluster.start("worker")
        wait_for(job, lambda j: j.provider_job_id != "", 90, cluster)
        cluster.kill("worker")
        cluster.start("worker")

        job = wait_for(job, lambda j: j.is_final, 90, cluster)
        assert job.status == Job.COMPLETED, job.error_detail
        assert len(fake.created("clip")) == 1 and len(fake.created("wan")) == 1
        assert job.prompt_source == Job.PROMPT_CLIP and fake.created("wan")[0].input["prompt"] == job.prompt
        assert media.probe_video(local_copy(job.video)).frames >= 14
