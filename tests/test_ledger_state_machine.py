"""The credit ledger as a state machine: hypothesis runs random sequences of
grants, submissions, pipeline steps, worker crashes, failures, cancels,
refunds and redelivered steps, and after every one checks that the credits add
up, against a model of what the balance should be.

Jobs go through the pipeline's own steps (prepare, submit, the poll's
"succeeded" handling, completion), each claimed and let go as ``advance``
does; only the local provider's inline render is left out, to keep hundreds of
steps fast (``test_credits`` renders real clips).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import hypothesis.strategies as st
import pytest
from django.db import transaction
from django.db.models import Count, Sum
from django.test import override_settings
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from jobs import actions, audit, ledger, pipeline
from jobs.creation import create_job
from jobs.models import Job, LedgerEntry, Upload
from providers.base import PollState
from tests.factories import UserFactory, make_upload

MAX_ATTEMPTS = 1  # JOB_MAX_ATTEMPTS here: a claim after a worker died mid-step quarantines the job
SETTLED_BY = {Job.COMPLETED: LedgerEntry.CAPTURE, Job.FAILED: LedgerEntry.RELEASE, Job.CANCELLED: LedgerEntry.RELEASE}
# The status each cheap step leads to (what a local job goes through).
NEXT_STATUS = {
    Job.QUEUED: Job.PREPARING,
    Job.PREPARING: Job.SUBMITTED,
    Job.SUBMITTED: Job.FINALIZING,
    Job.RUNNING: Job.FINALIZING,
    Job.FINALIZING: Job.COMPLETED,
}


def run_step(job: Job) -> None:
    """One pipeline step for the job's status; the provider always succeeds."""
    if job.status == Job.QUEUED:
        pipeline.step_prepare(job)
    elif job.status == Job.PREPARING:
        pipeline.step_submit(job)  # the local provider's submit only writes a handle
    elif job.status in Job.PROVIDER_STATES:
        pipeline._apply_poll_state(job, PollState(state="succeeded"), 0.0)  # what a poll does on success
    elif job.status == Job.FINALIZING:
        pipeline._complete(job, None)  # the completion and its capture, as finalize does
    else:
        raise AssertionError(f"no step for {job.status}")


@dataclass
class Expected:
    """What the model says about one job."""

    cost: int
    status: str = Job.QUEUED
    attempts: int = 0
    refunded: bool = False
    stale: list[Job] = field(default_factory=list)  # copies a late worker might still hold

    @property
    def final(self) -> bool:
        return self.status in Job.FINAL_STATES


class LedgerMachine(RuleBasedStateMachine):
    upload_template: Upload  # set by the test: one normalised image, shared by every example

    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        # Every example runs in a savepoint that teardown rolls back: a clean slate.
        self._example = transaction.atomic()
        self._example.__enter__()
        self.user = UserFactory(credits=0)
        self.staff = UserFactory(credits=0, is_staff=True)
        template = self.upload_template
        fields = {f.attname: getattr(template, f.attname) for f in Upload._meta.concrete_fields if not f.primary_key}
        self.upload = Upload.objects.create(**{**fields, "owner_id": self.user.pk})
        self.balance = 0
        self.expected: dict = {}

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._example.__exit__(None, None, None)

    # --- helpers ---------------------------------------------------------------

    def footprint(self) -> tuple:
        """Everything a no-op must leave as it was."""
        entries = LedgerEntry.objects.filter(user=self.user).aggregate(count=Count("pk"), total=Sum("amount"))
        jobs = Job.objects.filter(owner=self.user).annotate(event_count=Count("events")).order_by("pk")
        return ledger.balance_of(self.user), entries, list(jobs.values_list("pk", "status", "event_count"))

    def settle(self, expected: Expected, status: str) -> None:
        expected.status = status
        if status in (Job.FAILED, Job.CANCELLED):
            self.balance += expected.cost

    def claim(self, pk, expected: Expected) -> Job | None:
        """``pipeline.claim``, predicting a quarantine when attempts run out."""
        expected.attempts += 1
        job = pipeline.claim(pk)
        if expected.attempts > MAX_ATTEMPTS:
            assert job is None
            self.settle(expected, Job.FAILED)
            expected.attempts = 0
        else:
            assert job is not None and job.status == expected.status
        return job

    def work(self, pk, expected: Expected, steps: int, *, crash: bool = False) -> None:
        """What ``advance`` does: claim, run steps, let go (unless the worker dies)."""
        if expected.final:
            assert pipeline.claim(pk) is None
            return
        job = self.claim(pk, expected)
        if job is None:
            return
        for _ in range(steps):
            if job.is_final:
                break
            expected.stale.append(Job.objects.get(pk=pk))
            run_step(job)
            self.settle(expected, NEXT_STATUS[expected.status])
            assert job.status == expected.status
        if crash:
            # The worker died before letting go; later its lease runs out.
            Job.objects.filter(pk=pk).update(lease_until=None)
        else:
            pipeline.release(job, finished_cleanly=True)
            expected.attempts = 0

    # --- rules -----------------------------------------------------------------

    @initialize(credits=st.integers(0, 30))
    def open_with(self, credits):
        if credits:
            ledger.grant(user=self.user, amount=credits, reason="Starting credits")
            self.balance += credits

    @precondition(lambda self: self.balance < 40)  # enough to go on; more steps go to jobs
    @rule(amount=st.integers(1, 50))
    def grant(self, amount):
        ledger.grant(user=self.user, amount=amount, reason="Test grant")
        self.balance += amount

    @rule(target=jobs, cost=st.one_of(st.just(1), st.integers(0, 20)))
    def submit(self, cost):
        before = self.footprint()
        with override_settings(PROVIDER_COSTS={"local": str(cost)}):
            if self.balance < cost:
                with pytest.raises(ledger.InsufficientCredits):
                    create_job(owner=self.user, upload=self.upload, provider="local", enqueue=False)
                assert self.footprint() == before
                return multiple()
            job = create_job(owner=self.user, upload=self.upload, provider="local", enqueue=False)
        assert job.cost == cost
        self.balance -= cost
        self.expected[job.pk] = Expected(cost=cost, stale=[Job.objects.get(pk=job.pk)])
        return job.pk

    @rule(pk=jobs)
    def step(self, pk):
        self.work(pk, self.expected[pk], steps=1)

    @rule(pk=jobs)
    def succeed(self, pk):
        self.work(pk, self.expected[pk], steps=len(NEXT_STATUS))

    @rule(pk=jobs, steps=st.integers(0, 1))
    def worker_dies(self, pk, steps):
        self.work(pk, self.expected[pk], steps=steps, crash=True)

    @rule(pk=jobs)
    def fail(self, pk):
        expected = self.expected[pk]
        changed = pipeline.fail(Job.objects.get(pk=pk), "provider_failed", "The provider could not make this video.")
        assert changed == (not expected.final)
        if changed:
            self.settle(expected, Job.FAILED)

    @rule(pk=jobs)
    def cancel(self, pk):
        expected = self.expected[pk]
        if expected.status in (Job.QUEUED, Job.PREPARING):
            job = actions.cancel_job(Job.objects.get(pk=pk), by=self.user)
            assert job.status == Job.CANCELLED
            self.settle(expected, Job.CANCELLED)
            return
        # Final, or with the local provider, which cannot stop: refused, nothing changes.
        before = self.footprint()
        with pytest.raises(actions.ActionRefused):
            actions.cancel_job(Job.objects.get(pk=pk), by=self.user)
        assert self.footprint() == before

    @rule(pk=jobs)
    def refund(self, pk):
        expected = self.expected[pk]
        if expected.cost > 0 and expected.final and not expected.refunded:
            entry = actions.refund_job(Job.objects.get(pk=pk), staff=self.staff, reason="Support refund")
            assert (entry.kind, entry.amount) == (LedgerEntry.REFUND, expected.cost)
            self.balance += expected.cost
            expected.refunded = True
            return
        before = self.footprint()
        with pytest.raises(actions.ActionRefused):
            actions.refund_job(Job.objects.get(pk=pk), staff=self.staff, reason="Support refund")
        assert self.footprint() == before

    def finished(self) -> list:
        # In the order the jobs were made: the same steps must draw the same job.
        return [pk for pk, expected in self.expected.items() if expected.final]

    @precondition(lambda self: self.finished())
    @rule(
        how=st.sampled_from(["advance", "capture", "release", "hold", "fail", "complete", "step", "cancel"]),
        data=st.data(),
    )
    def redeliver(self, how, data):
        """A step that runs again for a finished job, from the queue or from a
        worker still holding an old copy of it: nothing may change."""
        pk = data.draw(st.sampled_from(self.finished()), label="finished job")
        expected = self.expected[pk]
        stale = data.draw(st.sampled_from(expected.stale), label="stale copy")
        fresh = Job.objects.get(pk=pk)
        before = self.footprint()
        if how == "advance":
            pipeline.advance(pk)
        elif how == "capture":
            assert ledger.capture(fresh) is None
        elif how == "release":
            assert ledger.release(fresh) is None
        elif how == "hold":
            entry = ledger.hold(fresh, fresh.cost)
            assert entry is None if fresh.cost == 0 else entry.kind == LedgerEntry.HOLD
        elif how == "fail":
            assert pipeline.fail(stale, "late", "A late failure") is False
        elif how == "complete":
            done = pipeline.transition(stale, Job.COMPLETED, "late", from_status=Job.FINALIZING, then=ledger.capture)
            assert done is False
        elif how == "step":
            run_step(stale)
        elif how == "cancel":
            with pytest.raises(actions.ActionRefused):
                actions.cancel_job(fresh)
        assert self.footprint() == before, how
        assert Job.objects.get(pk=pk).status == expected.status

    # --- invariants ------------------------------------------------------------

    @invariant()
    def credits_add_up(self):
        balance = ledger.balance_of(self.user)
        entries = list(LedgerEntry.objects.filter(user=self.user).values_list("job_id", "kind", "amount"))
        assert balance >= 0
        assert balance == sum(amount for _, _, amount in entries) == self.balance
        jobs = {
            pk: (status, attempts) for pk, status, attempts in self.user.jobs.values_list("pk", "status", "attempts")
        }
        assert jobs == {pk: (expected.status, expected.attempts) for pk, expected in self.expected.items()}
        kinds_of = Counter((job_id, kind) for job_id, kind, _ in entries if job_id is not None)
        for pk, expected in self.expected.items():
            kinds = {kind: count for (job_id, kind), count in kinds_of.items() if job_id == pk}
            want = {}
            if expected.cost > 0:
                want[LedgerEntry.HOLD] = 1
                if expected.final:
                    want[SETTLED_BY[expected.status]] = 1  # one capture or one release, never both
                if expected.refunded:
                    want[LedgerEntry.REFUND] = 1
            assert kinds == want, f"job {pk} ({expected.status}, cost {expected.cost})"
        assert list(audit.discrepancies()) == []


@pytest.mark.django_db
def test_credits_add_up_whatever_happens_to_jobs_and_in_whatever_order(settings):
    settings.JOB_MAX_ATTEMPTS = MAX_ATTEMPTS
    LedgerMachine.upload_template = make_upload(UserFactory(credits=0), width=320, height=180)
    run_state_machine_as_test(
        LedgerMachine,
        settings=hypothesis_settings(
            max_examples=25,
            stateful_step_count=40,
            deadline=None,
            database=None,  # no example database written into the checkout
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
