"""A real django-q2 cluster and sweeper in their own processes.

``sync=True`` never exercises redelivery; these tests do: the worker is
killed mid-job and started again, and the job must complete exactly once.
"""

from __future__ import annotations

import pytest

from jobs import media
from jobs.models import Job
from tests.factories import UserFactory, make_job
from tests.fakes.stability_server import FakeStabilityServer
from tests.pipeline_helpers import local_copy
from tests.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def transitions_into(job: Job, status: str) -> int:
    return job.events.filter(to_status=status).exclude(from_status=status).count()


def test_local_job_killed_mid_render_completes_once_after_restart(cluster_factory):
    # A few seconds of rendering: time to see it mid-render. On a busy machine it can take
    # longer than the cluster tests' 15 s task timeout, so this test gives the task room
    # (the lease, which decides how soon the killed job is picked up again, stays short).
    cluster = cluster_factory(LOCAL_FRAMES="600", Q_TIMEOUT="90", Q_RETRY="120", JOB_LEASE_SECONDS="30")
    cluster.start("worker")
    cluster.start("sweeper")
    job = make_job(UserFactory(), enqueue=True, motion_bucket_id=200)

    wait_for(job, lambda j: j.status == Job.RUNNING and j.progress > 0.05, 60, cluster)
    cluster.kill("worker")
    progress_at_kill = Job.objects.get(pk=job.pk).progress
    assert progress_at_kill < 1.0
    cluster.start("worker")

    job = wait_for(job, lambda j: j.is_final, 120, cluster)
    assert job.status == Job.COMPLETED, job.error_message
    assert transitions_into(job, Job.COMPLETED) == 1
    assert transitions_into(job, Job.SUBMITTED) == 1
    info = media.probe_video(local_copy(job.video))
    assert info.codec == "h264" and info.frames == 600


def test_stability_job_killed_after_submit_is_not_submitted_twice(cluster_factory, settings):
    with FakeStabilityServer(api_key="sk-worker-test") as fake:
        settings.STABILITY_API_KEY = fake.api_key
        fake.script.finish_after_seconds = 4
        fake.script.min_interval = 0.5
        cluster = cluster_factory(
            STABILITY_BASE_URL=fake.base_url, STABILITY_API_KEY=fake.api_key, STABILITY_POLL_INTERVAL="0.5"
        )
        cluster.start("worker")
        cluster.start("sweeper")
        job = make_job(UserFactory(), enqueue=True, provider="stability")

        wait_for(job, lambda j: j.provider_job_id != "", 60, cluster)
        cluster.kill("worker")
        cluster.start("worker")

        job = wait_for(job, lambda j: j.is_final, 90, cluster)
        assert job.status == Job.COMPLETED, job.error_message
        assert len(fake.submits) == 1
        assert fake.floor_violations == 0
        assert transitions_into(job, Job.COMPLETED) == 1
        assert media.probe_video(local_copy(job.video)).frames >= 14
