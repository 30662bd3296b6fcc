"""A receiver that never answers, with a backlog of deliveries, must not hold
the queue: with real worker processes, another user's job still completes,
while the backlog is being attempted (one batch at a time)."""

from __future__ import annotations

import time

import pytest

from jobs import pipeline
from jobs.models import CallbackAttempt, CallbackDelivery, Job
from jobs.webhooks.endpoints import create_endpoint
from tests.factories import UserFactory, make_job
from tests.fakes.callback_receiver import FakeCallbackReceiver
from tests.processes import wait_for, wait_until
from tests.webhook_helpers import pending_backlog

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BACKLOG = 200
CONCURRENCY = 4


def test_a_backlog_to_a_hanging_receiver_does_not_stop_another_users_job(cluster_factory, settings):
    with FakeCallbackReceiver() as receiver:
        receiver.default_status = "hang"
        settings.SAFE_FETCH_ALLOW = (receiver.address,)
        owner = UserFactory()
        endpoint, _ = create_endpoint(owner=owner, url=f"{receiver.base_url}/hooks", public_base_url="http://x")
        finished = make_job(owner)
        pipeline.fail(finished, "x", "No.")  # its own delivery joins the backlog
        pending_backlog(endpoint, finished, BACKLOG)

        cluster = cluster_factory(
            SAFE_FETCH_ALLOW=receiver.address,
            WEBHOOK_TIMEOUT="4",
            WEBHOOK_ENDPOINT_CONCURRENCY=str(CONCURRENCY),
            Q_TIMEOUT="60",
            Q_RETRY="90",
        )
        cluster.start("worker")
        cluster.start("sweeper")
        # The backlog is being attempted: the receiver holds requests.
        wait_until(lambda: len(receiver.received) >= CONCURRENCY, 60, lambda: cluster.log_text()[-3000:])

        job = make_job(UserFactory(), enqueue=True)
        started = time.monotonic()
        job = wait_for(job, lambda j: j.is_final, 120, cluster)
        took = time.monotonic() - started
        assert job.status == Job.COMPLETED, job.error_message

        # Never more than one batch in the air at this receiver, and it kept being tried.
        assert CallbackDelivery.objects.filter(endpoint=endpoint, lease_until__isnull=False).count() <= CONCURRENCY
        wait_until(
            lambda: CallbackAttempt.objects.filter(delivery__endpoint=endpoint).count() >= CONCURRENCY,
            60,
            "no attempt at the hanging receiver was recorded",
        )
        failed = CallbackAttempt.objects.filter(delivery__endpoint=endpoint).first()
        assert "did not answer within 4 s" in failed.error
        assert CallbackDelivery.objects.filter(endpoint=endpoint, status=CallbackDelivery.PENDING).count() > 100
        print(f"another user's job completed in {took:.1f} s beside {BACKLOG} deliveries to a hanging receiver")
