"""The sweeper sleeps until the next job falls due, not a whole interval past it,
so a provider is polled at its floor (the wait the floor costs is enough)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Job
from jobs.sweeper import GATHER_PAUSE, MIN_PAUSE, POLL_BATCH, pause_before_next_sweep
from tests.factories import make_job

pytestmark = pytest.mark.django_db


def due_in(seconds: float, now=None, **fields) -> Job:
    job = make_job()
    now = now or timezone.now()
    Job.objects.filter(pk=job.pk).update(next_poll_at=now + timedelta(seconds=seconds), **fields)
    return job


def test_with_nothing_waiting_the_sweeper_sleeps_its_interval(settings):
    settings.SWEEP_INTERVAL = 1.0
    assert pause_before_next_sweep() == 1.0


def test_a_job_due_sooner_than_the_interval_wakes_the_sweeper_when_it_falls_due(settings):
    settings.SWEEP_INTERVAL = 1.0
    now = timezone.now()
    due_in(5.0, now)
    due_in(0.3, now)
    assert pause_before_next_sweep(now) == pytest.approx(0.3)


def test_a_job_due_later_than_the_interval_leaves_the_interval(settings):
    settings.SWEEP_INTERVAL = 1.0
    due_in(4.0)
    assert pause_before_next_sweep() == 1.0


def test_jobs_already_due_or_finished_do_not_make_the_sweeper_spin(settings):
    settings.SWEEP_INTERVAL = 1.0
    due_in(-3.0, lease_until=timezone.now() + timedelta(seconds=30))  # a worker has it
    due_in(0.2, status=Job.COMPLETED)
    assert pause_before_next_sweep() == 1.0


def test_polls_due_close_together_wait_for_one_sweep_to_go_out_as_a_batch(settings):
    settings.SWEEP_INTERVAL = 1.0
    now = timezone.now()
    due_in(0.0001, now)
    assert pause_before_next_sweep(now + timedelta(microseconds=50)) >= MIN_PAUSE


def test_with_many_jobs_in_flight_the_sweeper_waits_for_a_whole_batch_to_fall_due(settings):
    settings.SWEEP_INTERVAL = 1.0
    now = timezone.now()
    for index in range(POLL_BATCH):  # one due every 10 ms, as with a thousand jobs at a 10 s floor
        due_in(0.01 * (index + 1), now)
    assert pause_before_next_sweep(now) == pytest.approx(0.01 * POLL_BATCH)


def test_a_batch_that_falls_due_slowly_is_waited_for_no_longer_than_the_gather_pause(settings):
    settings.SWEEP_INTERVAL = 1.0
    now = timezone.now()
    for index in range(POLL_BATCH):
        due_in(0.1 * (index + 1), now)
    assert pause_before_next_sweep(now) == pytest.approx(GATHER_PAUSE)


def test_a_few_jobs_in_flight_are_swept_when_the_first_falls_due(settings):
    settings.SWEEP_INTERVAL = 1.0
    now = timezone.now()
    for index in range(POLL_BATCH - 1):
        due_in(0.2 + 0.01 * index, now)
    assert pause_before_next_sweep(now) == pytest.approx(0.2)
