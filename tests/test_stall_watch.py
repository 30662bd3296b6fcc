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
