"""How soon ``runworker``'s supervisor starts a new cluster after one ended."""

from __future__ import annotations

from types import SimpleNamespace

from jobs import supervisor
from jobs.supervisor import ClusterSupervisor, restart_pause


def test_a_cluster_that_keeps_dying_before_it_comes_up_waits_longer_each_time():
    failures, pauses = 0, []
    for _ in range(7):
        failures, pause = restart_pause(failures, ran=3.0, came_up=False)
        pauses.append(pause)
    assert pauses == [1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 30.0]


def test_a_cluster_that_came_up_and_ran_a_while_before_a_kill_restarts_after_the_first_pause():
    failures = 0
    for _ in range(5):  # killed from outside every 15 s, say
        failures, pause = restart_pause(failures, ran=15.0, came_up=True)
        assert pause == 1.0


def test_a_cluster_that_died_soon_after_coming_up_still_backs_off():
    failures, _ = restart_pause(0, ran=3.0, came_up=True)
    failures, pause = restart_pause(failures, ran=3.0, came_up=True)
    assert pause == 2.0


def test_a_cluster_that_ran_a_minute_restarts_at_once():
    assert restart_pause(4, ran=61.0, came_up=False) == (0, 0.0)


def test_the_supervisor_notes_that_a_cluster_came_up_once_it_reports_its_status(monkeypatch, tmp_path):
    watcher = ClusterSupervisor(stall_seconds=60, stop_grace=1, beats_folder=tmp_path / "beats")
    exits = iter([None, 0])  # running at the first look, gone at the second
    watcher.proc = SimpleNamespace(pid=4242, poll=lambda: next(exits))
    monkeypatch.setattr(supervisor, "CHECK_EVERY", 0.01)
    monkeypatch.setattr(supervisor, "shared_broker", lambda: None)
    monkeypatch.setattr(supervisor, "cluster_status", lambda pid, broker: SimpleNamespace(task_q_size=0, done_q_size=0))

    watcher._watch()

    assert watcher.came_up
