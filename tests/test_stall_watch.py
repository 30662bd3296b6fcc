"""How runworker tells a stalled cluster from a slow one (no processes here;
tests/test_worker_stall.py kills real ones)."""

from __future__ import annotations

from jobs.cluster_watch import ClusterState, StallWatch

WINDOW = 10.0


def state(now: float, **fields) -> ClusterState:
    return ClusterState(
        now=now,
        status_seen=fields.get("status_seen", True),
        tasks_waiting=fields.get("tasks", 0),
        results_waiting=fields.get("results", 0),
        worker_beat=fields.get("worker_beat"),
        monitor_beat=fields.get("monitor_beat"),
        idle_workers=fields.get("idle", 0),
    )


def watch() -> StallWatch:
    return StallWatch(WINDOW, started_at=0.0, startup=20.0)


def test_tasks_waiting_with_no_worker_beat_for_the_window_is_a_stall():
    w = watch()
    assert w.check(state(100, tasks=1, worker_beat=50)) is None
    assert w.check(state(109, tasks=1, worker_beat=50)) is None
    assert "blocked worker queue" in w.check(state(110, tasks=1, worker_beat=50))


def test_a_busy_worker_beating_is_no_stall_however_long_tasks_wait():
    w = watch()
    for now in range(100, 200, 2):
        assert w.check(state(now, tasks=3, worker_beat=now - 1)) is None


def test_a_queue_that_empties_starts_the_clock_again():
    w = watch()
    w.check(state(100, tasks=1))
    w.check(state(105, tasks=0))
    assert w.check(state(112, tasks=1)) is None
    assert w.check(state(122, tasks=1)) is not None


def test_results_the_monitor_never_saves_are_a_stall():
    w = watch()
    w.check(state(100, results=2, monitor_beat=90))
    assert "blocked result queue" in w.check(state(110, results=2, monitor_beat=90))
    w = watch()
    w.check(state(100, results=2, monitor_beat=90))
    assert w.check(state(110, results=2, monitor_beat=108)) is None  # saving, just busy


def test_a_missing_status_record_counts_after_startup_then_at_once():
    w = watch()
    assert w.check(state(25, status_seen=False)) is None  # still starting
    assert "sentinel" in w.check(state(30, status_seen=False))
    w = watch()
    w.check(state(5))  # up early
    assert w.check(state(14, status_seen=False)) is None
    assert "sentinel" in w.check(state(15, status_seen=False))


def test_tasks_waiting_beside_an_idle_worker_are_a_blocked_queue_within_seconds():
    # A worker killed while it held the queue's read lock: the one started in
    # its place sits idle, another is busy on a long task and keeps beating.
    w = watch()
    assert w.check(state(100, tasks=2, idle=1, worker_beat=99)) is None
    assert w.check(state(102, tasks=2, idle=1, worker_beat=101)) is None
    reason = w.check(state(103, tasks=2, idle=1, worker_beat=103))
    assert "1 worker(s) sat idle" in reason and "blocked worker queue" in reason


def test_an_idle_worker_that_takes_the_waiting_task_is_no_stall():
    w = watch()
    w.check(state(100, tasks=1, idle=1))
    w.check(state(102, tasks=0, idle=0, worker_beat=101))  # taken: the worker is busy now
    assert w.check(state(104, tasks=1, idle=1, worker_beat=101)) is None
    assert w.check(state(106, tasks=0, idle=2, worker_beat=105)) is None
    assert w.check(state(108, tasks=0, idle=2, worker_beat=105)) is None  # idle with nothing to do


def test_an_idle_worker_cannot_make_a_short_window_longer():
    w = StallWatch(2.0, started_at=0.0, startup=20.0)
    w.check(state(100, tasks=1, idle=1))
    assert w.check(state(102, tasks=1, idle=1)) is not None
