"""Noticing a django-q2 cluster that has stopped working, from outside it.

django-q2's workers wait on one multiprocessing queue, each holding the
queue's read lock while it waits. A worker killed there (the out-of-memory
killer picks the biggest process) never releases the lock: the other workers
and every worker the cluster starts in its place block for good, while the
cluster's main process looks alive and SIGTERM no longer stops it (it waits
for workers that cannot take its stop message). The monitor, alone on the
result queue, has the same weakness. Nothing inside the cluster notices, so
the supervisor (``manage.py runworker``) watches three things:

* the cluster's own status record (django-q2's ``Stat``, saved by its
  sentinel twice a second): when it stops coming, the sentinel is gone;
* tasks waiting in the cluster's internal queue while a worker sits idle: a
  worker that can read the queue takes a waiting task within milliseconds,
  so the queue is blocked (seen in seconds, even while another worker is
  busy on a long task);
* tasks waiting in the cluster's internal queue while no worker has started,
  finished or been busy with a task: the workers are blocked;
* results waiting for the monitor while it has saved none: the monitor is.

Workers and the monitor leave "beats" (file times in a folder the supervisor
gives the cluster): a worker on each task start and end, and every couple of
seconds while a task runs, so a long render never looks like a stall. Each
worker also marks itself busy while it runs a task (a file named for its pid).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from jobs.lifelines import set_death_signal

BEATS_ENV = "I2V_CLUSTER_BEATS"
WORKER, MONITOR = "worker", "monitor"
BUSY = "busy-"  # + a worker's pid: it is running a task
# A busy worker beats this often; well under any sensible stall window.
BUSY_BEAT_SECONDS = 2.0
# Tasks waiting this long beside an idle worker mean it cannot read the queue.
IDLE_WITH_TASKS_SECONDS = 3.0


class Beats:
    """Last-seen times, one file per kind, in a folder of our own."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def touch(self, kind: str) -> None:
        path = self.folder / kind
        try:
            os.utime(path)
        except FileNotFoundError:
            path.touch()

    def last(self, kind: str) -> float | None:
        try:
            return (self.folder / kind).stat().st_mtime
        except FileNotFoundError:
            return None

    def clear(self) -> None:
        for kind in (WORKER, MONITOR):
            (self.folder / kind).unlink(missing_ok=True)
        for marker in self.folder.glob(f"{BUSY}*"):
            marker.unlink(missing_ok=True)

    def mark_busy(self, pid: int, busy: bool) -> None:
        marker = self.folder / f"{BUSY}{pid}"
        if busy:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def idle_among(self, pids: list[int]) -> int:
        """How many of these worker processes are not running a task."""
        return sum(1 for pid in pids if not (self.folder / f"{BUSY}{pid}").exists())


# --- Inside the cluster's processes ----------------------------------------------


class _WorkerBeat:
    """Beats for one worker process: at task start and end, and while busy."""

    def __init__(self, beats: Beats) -> None:
        self.beats = beats
        self.busy = False
        self.thread: threading.Thread | None = None

    def started(self, **_) -> None:
        self.busy = True
        self.beats.mark_busy(os.getpid(), True)
        self.beats.touch(WORKER)
        if self.thread is None:  # one per worker process, started after the fork
            self.thread = threading.Thread(target=self._while_busy, name="i2v-beat", daemon=True)
            self.thread.start()

    def finished(self, **_) -> None:
        self.busy = False
        self.beats.mark_busy(os.getpid(), False)
        self.beats.touch(WORKER)

    def _while_busy(self) -> None:
        while True:
            time.sleep(BUSY_BEAT_SECONDS)
            if self.busy:
                self.beats.touch(WORKER)


_installed: list = []  # the receivers, kept alive (signals hold weak references)


def prepare_cluster_process(beats_folder: str | None) -> None:
    """Called in the cluster's main process before django-q2 starts.

    Every process the cluster forks (sentinel, workers, pusher, monitor) is
    killed when its parent dies, so no part of a replaced cluster lives on;
    and workers and monitor leave beats where the supervisor looks.
    """
    parent = {"pid": os.getpid()}
    os.register_at_fork(
        before=lambda: parent.update(pid=os.getpid()),
        after_in_child=lambda: set_death_signal(signal.SIGKILL, parent["pid"]),
    )
    if not beats_folder:
        return
    from django_q.signals import post_execute, post_execute_in_worker, pre_execute

    beats = Beats(Path(beats_folder))
    worker = _WorkerBeat(beats)

    def monitor_saved(**_) -> None:
        beats.touch(MONITOR)

    pre_execute.connect(worker.started, dispatch_uid="i2v-beat-start")
    post_execute_in_worker.connect(worker.finished, dispatch_uid="i2v-beat-end")
    post_execute.connect(monitor_saved, dispatch_uid="i2v-beat-monitor")
    _installed.extend([worker, monitor_saved])


# --- In the supervisor ---------------------------------------------------------------


@dataclass
class ClusterState:
    """What the supervisor saw of its cluster at one moment (wall-clock seconds)."""

    now: float
    status_seen: bool  # the cluster's status record is there
    tasks_waiting: int  # in the cluster's internal queue, taken from the broker
    results_waiting: int  # finished, not yet saved and acknowledged by the monitor
    worker_beat: float | None
    monitor_beat: float | None
    idle_workers: int = 0  # of the workers its status record lists, those not running a task


class StallWatch:
    """Decides, from successive observations, that a cluster has stalled.

    A condition must hold for ``window`` seconds with no sign of progress:
    a slow but working cluster always shows some.
    """

    def __init__(self, window: float, started_at: float, startup: float) -> None:
        self.window = window
        # Tasks waiting beside an idle worker need no long look: the status record
        # is up to half a second old and read once a second.
        self.idle_window = min(window, IDLE_WITH_TASKS_SECONDS)
        self.status_last = started_at + startup  # give the cluster time to come up
        self.tasks_since: float | None = None
        self.results_since: float | None = None
        self.idle_since: float | None = None

    def check(self, seen: ClusterState) -> str | None:
        now = seen.now
        if seen.status_seen:
            self.status_last = now  # up: from now on a missing record counts at once
        elif now - self.status_last >= self.window:
            return f"its status record has not been updated for {now - self.status_last:.0f} s (its sentinel is gone)"
        if seen.status_seen:
            self.tasks_since = _since(self.tasks_since, seen.tasks_waiting, now)
            self.results_since = _since(self.results_since, seen.results_waiting, now)
            self.idle_since = _since(self.idle_since, min(seen.tasks_waiting, seen.idle_workers), now)
        if self.idle_since is not None and now - self.idle_since >= self.idle_window:
            return (
                f"{seen.tasks_waiting} task(s) have waited in its queue for {now - self.idle_since:.0f} s "
                f"while {seen.idle_workers} worker(s) sat idle (a blocked worker queue)"
            )
        quiet = _quiet_for(now, self.tasks_since, seen.worker_beat)
        if quiet is not None and quiet >= self.window:
            return (
                f"{seen.tasks_waiting} task(s) have waited in its queue for {quiet:.0f} s "
                "while no worker started, finished or worked on one (a blocked worker queue)"
            )
        quiet = _quiet_for(now, self.results_since, seen.monitor_beat)
        if quiet is not None and quiet >= self.window:
            return (
                f"{seen.results_waiting} finished task(s) have waited {quiet:.0f} s "
                "for the monitor, which saved none (a blocked result queue)"
            )
        return None


def _since(since: float | None, waiting: int, now: float) -> float | None:
    if waiting <= 0:
        return None
    return since if since is not None else now


def _quiet_for(now: float, waiting_since: float | None, beat: float | None) -> float | None:
    if waiting_since is None:
        return None
    return now - max(waiting_since, beat or 0.0)


def cluster_status(pid: int, broker=None):
    """The status record of the cluster whose main process is ``pid`` on this
    host; None when there is none. Raises when the cache cannot be read."""
    from django_q.status import Stat

    host = socket.gethostname()
    for stat in Stat.get_all(broker=broker):
        if stat.pid == pid and stat.host == host:
            return stat
    return None


def tasks_held_by_clusters(broker=None) -> int:
    """Tasks taken from the broker that wait in some cluster's internal queue."""
    from django_q.status import Stat

    return sum(max(stat.task_q_size, 0) for stat in Stat.get_all(broker=broker))
