"""Keeps one django-q2 cluster running, and replaces it when it stalls or dies.

``manage.py runworker`` runs this in place of a bare ``qcluster``: the
cluster is its child, in a process group of its own, and dies with it. Once
a second the supervisor looks at the cluster from outside (see
``jobs/cluster_watch.py``); when the cluster has stalled it says why in the
log, kills the whole group (a stalled cluster cannot stop itself) and starts
a fresh one. A cluster that exits is started again, with a growing pause if
it keeps exiting. Tasks the old cluster had taken are not lost: the sweeper
hands their jobs over again once no cluster holds them.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.conf import settings

from jobs.cluster_watch import BEATS_ENV, MONITOR, WORKER, Beats, ClusterState, StallWatch, cluster_status
from jobs.lifelines import start_child, stop_tree
from jobs.tasks import shared_broker

log = logging.getLogger("jobs.supervisor")

CHECK_EVERY = 1.0
# A cluster that stalled holds queue locks it cannot give back: it cannot
# stop by itself (SIGTERM waits for workers that never take the stop message).
STALLED_STOP_GRACE = 0.0
# Seconds a fresh cluster gets to report its status for the first time.
STARTUP_GRACE = 20.0
RESTART_BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
# A cluster that ran this long before exiting counts as healthy again.
HEALTHY_RUN = 60.0
# A cluster that came up (reported its status) and then ran this long was not
# in a crash loop: killed from outside (an OOM kill, an operator) or stalled
# in service. Its successor waits the first pause, not a growing one.
SETTLED_RUN = 10.0


def restart_pause(failures: int, ran: float, came_up: bool) -> tuple[int, float]:
    """After a cluster ended having run ``ran`` seconds: how many ended in a
    row too soon (counting this one), and the pause before the next start."""
    if ran > HEALTHY_RUN:
        failures = 0
    elif came_up and ran > SETTLED_RUN:
        failures = 1
    else:
        failures += 1
    return failures, RESTART_BACKOFF[min(failures, len(RESTART_BACKOFF)) - 1] if failures else 0.0


class ClusterSupervisor:
    def __init__(self, *, stall_seconds: float, stop_grace: float, beats_folder: Path) -> None:
        self.stall_seconds = stall_seconds
        self.stop_grace = stop_grace
        self.beats = Beats(beats_folder)
        self.stopping = threading.Event()
        self.proc: subprocess.Popen | None = None
        self.replacements = 0
        self.came_up = False  # whether the current cluster has reported its status

    def request_stop(self, *_) -> None:
        self.stopping.set()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        failures = 0
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                self._start()
                stalled = self._watch()
                if self.stopping.is_set():
                    break
                stop_tree(self.proc, STALLED_STOP_GRACE if stalled else self.stop_grace)
                self.replacements += 1
                failures, pause = restart_pause(failures, time.monotonic() - started, self.came_up)
                if pause:
                    log.warning("starting a new worker cluster in %.0f s", pause)
                self.stopping.wait(pause)
        finally:
            if self.proc is not None:
                log.info("stopping the worker cluster (pid %s)", self.proc.pid)
                stop_tree(self.proc, self.stop_grace)
            shutil.rmtree(self.beats.folder, ignore_errors=True)
        return 0

    def _start(self) -> None:
        self.beats.clear()
        self.came_up = False
        command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "runworker", "--cluster-process"]
        env = {**os.environ, BEATS_ENV: str(self.beats.folder)}
        # SIGKILL: if we die, nobody is left to wait for a slow clean stop.
        self.proc = start_child(command, death_signal=signal.SIGKILL, env=env)
        log.info("worker cluster started (pid %s)", self.proc.pid)

    def _watch(self) -> bool:
        """Wait until the cluster exits (False) or stalls (True), or we stop."""
        watch = StallWatch(self.stall_seconds, time.time(), STARTUP_GRACE)
        status_trouble = False
        while not self.stopping.wait(CHECK_EVERY):
            code = self.proc.poll()
            if code is not None:
                log.error("worker cluster (pid %s) exited with code %s; starting a new one", self.proc.pid, code)
                return False
            try:
                status = cluster_status(self.proc.pid, shared_broker())
            except Exception as exc:  # the cache is down: judge by nothing rather than guess
                if not status_trouble:
                    log.warning("cannot read the worker cluster's status (%s); watching again when it can", exc)
                status_trouble = True
                continue
            status_trouble = False
            self.came_up = self.came_up or status is not None
            seen = ClusterState(
                now=time.time(),
                status_seen=status is not None,
                tasks_waiting=getattr(status, "task_q_size", 0),
                results_waiting=getattr(status, "done_q_size", 0),
                worker_beat=self.beats.last(WORKER),
                monitor_beat=self.beats.last(MONITOR),
                idle_workers=self.beats.idle_among(getattr(status, "workers", None) or []),
            )
            reason = watch.check(seen)
            if reason:
                log.error("worker cluster (pid %s) stalled: %s; replacing it", self.proc.pid, reason)
                return True
        return False
