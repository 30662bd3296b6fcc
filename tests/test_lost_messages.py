"""Jobs whose queue message was lost are handed over again within seconds,
not after the dispatch grace, as soon as the queue is idle.

(After a database restart the messages of jobs that were on their way were
gone, and both workers sat idle until the 60 s grace ran out.)
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.conf import Conf

from jobs.models import Job
from jobs.sweeper import LOST_AFTER, HandedOver, redispatch_lost, sweep
from jobs.tasks import shared_broker
from tests.factories import UserFactory, make_job
from tests.processes import empty_redis_broker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def real_queue(monkeypatch, settings, tmp_path):
    monkeypatch.setattr(Conf, "SYNC", False)  # messages go to the broker (the ORM's table, or Redis)
    empty_redis_broker()
    # No cluster's status record but this test's own (none).
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(tmp_path)}
    }


def messages_waiting() -> int:
    return shared_broker().queue_size()


def lose_every_message() -> None:
    shared_broker().purge_queue()


def later(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


def test_a_new_job_without_a_message_is_handed_over_once_the_queue_is_idle(real_queue):
    job = make_job(enqueue=False)  # created, but its message never reached the queue

    assert redispatch_lost(timezone.now()) == 0  # just created: its message may be on its way
    assert redispatch_lost(later(LOST_AFTER.total_seconds() + 1)) == 1
    assert messages_waiting() == 1
    job.refresh_from_db()
    assert job.status == Job.QUEUED and job.lease_until is None


def test_nothing_is_handed_over_again_while_a_message_waits_in_the_queue(real_queue):
    make_job(enqueue=False)
    make_job(enqueue=True)  # its message is in the broker, not yet taken

    assert redispatch_lost(later(LOST_AFTER.total_seconds() + 1)) == 0
    assert messages_waiting() == 1


def test_a_job_the_sweeper_handed_over_is_handed_over_again_when_its_message_is_lost(real_queue):
    job = make_job(enqueue=False)
    Job.objects.filter(pk=job.pk).update(status=Job.RUNNING, next_poll_at=timezone.now(), attempts=1)
    handed = HandedOver()
    assert sweep(handed=handed) == 1
    lose_every_message()  # the message is lost (a worker failed it while the database was down)

    assert redispatch_lost(later(1), handed) == 0  # too early to tell
    assert redispatch_lost(later(LOST_AFTER.total_seconds() + 1), handed) == 1
    assert messages_waiting() == 1


def test_a_job_claimed_since_it_was_handed_over_is_left_alone(real_queue):
    job = make_job(enqueue=False)
    Job.objects.filter(pk=job.pk).update(status=Job.RUNNING, next_poll_at=timezone.now(), attempts=1)
    handed = HandedOver()
    sweep(handed=handed)
    lose_every_message()
    # A worker took it and now waits on the provider: a new due time, no lease.
    Job.objects.filter(pk=job.pk).update(next_poll_at=later(20))

    assert redispatch_lost(later(LOST_AFTER.total_seconds() + 1), handed) == 0


@pytest.mark.slow
def test_an_idle_cluster_picks_up_jobs_whose_messages_were_lost_within_seconds(cluster_factory):
    cluster = cluster_factory()
    cluster.start("runworker")
    cluster.start("sweeper")
    user = UserFactory()
    wait_for(make_job(user, enqueue=True), lambda j: j.is_final, 90, cluster)  # the cluster is up and idle

    lost = [make_job(user, enqueue=False) for _ in range(3)]
    for job in lost:
        job = wait_for(job, lambda j: j.is_final, 20, cluster)
        assert job.status == Job.COMPLETED, job.error_message
        # Well before the dispatch grace (30 s here) would have handed it over.
        assert job.finished_at < job.created_at + timedelta(seconds=20)
    assert "handed over again" in cluster.log_text()
