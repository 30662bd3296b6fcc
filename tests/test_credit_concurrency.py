"""Credits under real concurrency: many threads, each with its own database
connection, released together by a barrier.

These run on SQLite (writers serialize on the database lock) and on
PostgreSQL (row locks and the unique constraint do the work); the outcome
must be the same: nobody overdraws, nothing is settled twice.
"""

from __future__ import annotations

import fcntl
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connection

from jobs import audit, ledger, pipeline
from jobs.creation import create_job
from jobs.models import CreditAccount, Job, LedgerEntry, Upload
from tests.factories import UserFactory, make_job, make_upload

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 50


@contextmanager
def server_connections_to_spare() -> Iterator[None]:
    """On PostgreSQL, one crowd of threads at a time per database server, across
    test processes. CI runs two suites against one server, whose default
    max_connections is 100: two crowds of 50 at once were refused ("sorry, too
    many clients already")."""
    if connection.vendor != "postgresql":
        yield
        return
    params = connection.get_connection_params()
    name = f"i2v-tests-connection-crowd-{params.get('host') or 'socket'}-{params.get('port') or 5432}.lock"
    with open(Path(tempfile.gettempdir()) / name, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_together(count: int, work: Callable[[int], object], timeout: float = 120) -> list[tuple[str, object]]:
    """Run ``work(i)`` in ``count`` threads started at once; each result is
    ("ok", value) or ("error", exception)."""
    with server_connections_to_spare():
        return _run_together(count, work, timeout)


def _run_together(count: int, work: Callable[[int], object], timeout: float) -> list[tuple[str, object]]:
    barrier = threading.Barrier(count)
    results: list[tuple[str, object]] = [("missing", None)] * count

    def thread_main(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = ("ok", work(index))
        except BaseException as exc:  # recorded and asserted on by the caller
            results[index] = ("error", exc)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=thread_main, args=(i,), name=f"credit-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [thread.name for thread in threads if thread.is_alive()]
    assert not stuck, f"threads still running after {timeout} s: {stuck}"
    return results


class BalanceWatcher:
    """Samples a user's balance from its own connection while threads run."""

    def __init__(self, user) -> None:
        self.user = user
        self.seen: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="balance-watcher")

    def _watch(self) -> None:
        try:
            while not self._stop.is_set():
                self.seen.append(CreditAccount.objects.get(user=self.user).balance)
                time.sleep(0.002)
        finally:
            connection.close()

    def __enter__(self) -> BalanceWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)


def outcome(result: tuple[str, object]) -> str:
    status, value = result
    return type(value).__name__ if status == "error" else status


def distinct_uploads(user, count: int) -> list[Upload]:
    """``count`` upload rows, made here in the main thread. They share one
    image's files: normalising an image is the slow part and not under test."""
    first = make_upload(user, width=320, height=180)
    fields = {f.attname: getattr(first, f.attname) for f in Upload._meta.concrete_fields if not f.primary_key}
    return [first] + [Upload.objects.create(**fields) for _ in range(count - 1)]


def settle_kinds(job: Job) -> list[str]:
    return sorted(job.ledger.filter(kind__in=[LedgerEntry.CAPTURE, LedgerEntry.RELEASE]).values_list("kind", flat=True))


def test_fifty_simultaneous_jobs_by_a_user_who_can_afford_ten_make_exactly_ten():
    user = UserFactory(credits=10)
    uploads = distinct_uploads(user, THREADS)

    started = time.monotonic()
    with BalanceWatcher(user) as watcher:
        results = run_together(
            THREADS, lambda i: create_job(owner=user, upload=uploads[i], provider="local", enqueue=False)
        )
    elapsed = time.monotonic() - started

    outcomes = Counter(outcome(result) for result in results)
    assert outcomes == {"ok": 10, "InsufficientCredits": 40}, (outcomes, [v for s, v in results if s == "error"][:3])
    refusals = [value for status, value in results if status == "error"]
    assert all(refusal.cost == 1 and refusal.balance == 0 for refusal in refusals)
    created = {value.pk for status, value in results if status == "ok"}
    assert set(Job.objects.filter(owner=user).values_list("pk", flat=True)) == created
    assert LedgerEntry.objects.filter(user=user, kind=LedgerEntry.HOLD).count() == 10
    assert ledger.balance_of(user) == 0 == ledger.ledger_sum(user)
    assert watcher.seen and min(watcher.seen) >= 0, watcher.seen
    # balance_after of the holds walks 9, 8, ... 0: each hold saw the one before it.
    afters = sorted(
        LedgerEntry.objects.filter(user=user, kind=LedgerEntry.HOLD).values_list("balance_after", flat=True)
    )
    assert afters == list(range(10))
    assert list(audit.discrepancies()) == []
    print(f"{THREADS} concurrent create_job calls took {elapsed:.2f} s")


# Known bug (reported, not fixed here): capture() and release() each check
# ``_settled`` before writing, outside any lock, and the unique constraint is per
# (job, kind), so a capture and a release that both pass the check both land.
# Callers today settle only inside a compare-and-set transition (the test after
# these two), which serializes them; the ledger on its own does not.


def settle_concurrently(job: Job) -> tuple[list, list[str]]:
    def settle(index: int):
        mine = Job.objects.get(pk=job.pk)  # each thread loads its own copy, as a worker would
        return ledger.capture(mine) if index % 2 else ledger.release(mine, "concurrent test")

    with BalanceWatcher(job.owner) as watcher:
        results = run_together(THREADS, settle)
    assert [value for status, value in results if status == "error"] == []
    assert min(watcher.seen) >= 0
    return results, settle_kinds(job)


def assert_settled_once(job: Job, results: list, kinds: list[str], balance_before: int) -> None:
    assert len(kinds) == 1, f"one job settled {len(kinds)} times: {kinds}"
    # Every thread that wrote or found an entry got that same one row.
    entries = {value.pk for status, value in results if status == "ok" and value is not None}
    assert entries == set(job.ledger.filter(kind=kinds[0]).values_list("pk", flat=True))
    expected = balance_before + {"capture": 0, "release": job.cost}[kinds[0]]
    assert ledger.balance_of(job.owner) == expected == ledger.ledger_sum(job.owner)
    # Give the job the status its settlement means; then the audit agrees.
    Job.objects.filter(pk=job.pk).update(status=Job.COMPLETED if kinds == ["capture"] else Job.FAILED)
    assert list(audit.discrepancies()) == []


def test_fifty_threads_capturing_and_releasing_one_job_settle_it_once():
    user = UserFactory(credits=10)
    for _ in range(3):  # a few rounds, so a narrow window is likelier to show
        job = make_job(user, upload=make_upload(user, width=320, height=180))
        before = ledger.balance_of(user)
        results, kinds = settle_concurrently(job)
        assert_settled_once(job, results, kinds, before)


def test_capture_and_release_racing_past_the_settled_check_still_settle_once(monkeypatch):
    """The same race with its window held open: every thread has made its
    check before any writes. A correct ledger decides inside the write (a lock
    or a constraint), so this changes nothing for it but a short wait."""
    user = UserFactory(credits=5)
    job = make_job(user)
    gate = threading.Barrier(THREADS)
    real_settled = ledger._settled

    def settled_then_wait(job):
        answer = real_settled(job)
        try:
            gate.wait(timeout=2)  # a lock held around the check breaks the gate: then nobody waits
        except threading.BrokenBarrierError:
            pass
        return answer

    monkeypatch.setattr(ledger, "_settled", settled_then_wait, raising=False)
    results, kinds = settle_concurrently(job)
    assert_settled_once(job, results, kinds, 4)


def test_fifty_threads_completing_failing_and_cancelling_one_job_settle_it_once():
    """The pipeline's way: each settle rides a compare-and-set transition."""
    user = UserFactory(credits=5)
    job = make_job(user)
    Job.objects.filter(pk=job.pk).update(status=Job.FINALIZING)

    def finish(index: int):
        mine = Job.objects.get(pk=job.pk)
        if index % 3 == 0:
            return pipeline.transition(mine, Job.COMPLETED, "done", from_status=Job.FINALIZING, then=ledger.capture)
        if index % 3 == 1:
            return pipeline.fail(mine, "x", "failed in a race")
        return pipeline.transition(
            mine,
            Job.CANCELLED,
            "cancelled in a race",
            from_status=Job.FINALIZING,
            then=lambda j: ledger.release(j, "Cancelled: not charged"),
        )

    results = run_together(THREADS, finish)

    assert [value for status, value in results if status == "error"] == []
    assert sum(1 for status, value in results if value is True) == 1  # one transition won
    job.refresh_from_db()
    assert job.is_final
    assert job.events.filter(from_status=Job.FINALIZING).count() == 1
    assert settle_kinds(job) == (["capture"] if job.status == Job.COMPLETED else ["release"])
    assert ledger.balance_of(user) == ledger.ledger_sum(user) == (4 if job.status == Job.COMPLETED else 5)
    assert list(audit.discrepancies()) == []
