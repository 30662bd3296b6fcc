"""``runworker`` keeps jobs moving whatever part of its cluster is killed.

A worker killed while it waits for a task leaves the cluster's queue locked
(the other workers then block for good); a killed monitor does the same to
the result queue. The supervisor notices, says so in the log and replaces
the cluster. Each kill here is followed by a new job that must complete
with nobody acting, within 90 s: the stall is seen after WORKER_STALL_SECONDS
(10 s), then a new cluster starts its processes and renders, which on a CI
host running three suites side by side can take longer than 30 s.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from jobs.models import Job
from tests.factories import UserFactory, make_job
from tests.processes import alive, children, cluster_status, descendants, wait_for, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RECOVERY = 90  # seconds a job created after a kill may take to complete


def cluster_main(cluster) -> int:
    supervisor = cluster.procs["runworker"].pid
    return wait_until(lambda: children(supervisor), 30, "runworker started no cluster")[0]


def cluster_end(cluster, main: int) -> str:
    """How the supervisor saw cluster ``main`` end: "exited", "stalled", or "" if it has not."""
    log = cluster.log_text()
    return next((end for end in ("exited", "stalled") if f"worker cluster (pid {main}) {end}" in log), "")


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def busiest(pids: list[int]) -> int:
    before = {pid: cpu_ticks(pid) for pid in pids}
    time.sleep(0.5)
    return max(pids, key=lambda pid: cpu_ticks(pid) - before[pid])


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), 10, f"process {pid} survived SIGKILL")


def completes_in_time(user, cluster) -> None:
    job = make_job(user, enqueue=True)
    job = wait_for(job, lambda j: j.is_final, RECOVERY, cluster)
    assert job.status == Job.COMPLETED, job.error_message


def test_jobs_keep_completing_after_any_cluster_process_is_killed(cluster_factory):
    cluster = cluster_factory(LOCAL_FRAMES="240", WORKER_STOP_GRACE="3")
    cluster.start("runworker")
    cluster.start("sweeper")
    user = UserFactory(credits=100)
    wait_for(make_job(user, enqueue=True), lambda j: j.is_final, 90, cluster)  # the cluster is up

    # Idle workers, killed while they wait on the task queue (what the OOM killer
    # does). One of them holds the queue's lock; which one cannot be seen, so all go.
    main = cluster_main(cluster)
    for worker in cluster_status(main).workers:
        kill(worker)
    completes_in_time(user, cluster)
    # Seen by the workers started in their place sitting idle beside the waiting task.
    assert "stalled" in cluster.log_text() and "sat idle (a blocked worker queue)" in cluster.log_text()

    # The monitor: the job still runs, but results pile up unsaved until the cluster is
    # replaced, unless django-q2's own sentinel notices the death first and starts a new
    # monitor. Either way the log says what happened.
    main = cluster_main(cluster)
    kill(cluster_status(main).monitor)
    completes_in_time(user, cluster)
    wait_until(
        lambda: "blocked result queue" in cluster.log_text() or "reincarnated monitor" in cluster.log_text(),
        RECOVERY,
        cluster.log_text,
    )
    completes_in_time(user, cluster)

    # The sentinel, which guards the others: the cluster exits and a new one starts.
    # The cluster whose monitor was killed may still be replaced for its blocked
    # result queue after the jobs above completed (its new monitor cannot take
    # the lock the dead one held). A sentinel killed in a cluster that was being
    # replaced anyway shows nothing, so that round is taken again on the next one.
    for _ in range(2):
        main = cluster_main(cluster)
        kill(cluster_status(main).sentinel)
        completes_in_time(user, cluster)
        # The orphaned workers may finish that job before the supervisor has seen the cluster go.
        end = wait_until(lambda main=main: cluster_end(cluster, main), RECOVERY, cluster.log_text)
        if end == "exited":
            break
    assert end == "exited", cluster.log_text()

    # The pusher.
    main = cluster_main(cluster)
    kill(cluster_status(main).pusher)
    completes_in_time(user, cluster)

    # A busy worker, mid-render (its own job recovers when its lease runs out:
    # test_worker_process.py): new jobs still complete.
    main = cluster_main(cluster)
    workers = cluster_status(main).workers
    rendering = make_job(user, enqueue=True)
    wait_for(rendering, lambda j: j.status == Job.RUNNING, RECOVERY, cluster)
    kill(busiest(workers))
    completes_in_time(user, cluster)

    # A stalled cluster cannot stop itself (its stop message never reaches the
    # blocked workers); runworker still stops on SIGTERM and takes it along.
    main = cluster_main(cluster)
    for worker in cluster_status(main).workers:
        kill(worker)
    supervisor = cluster.procs["runworker"]
    tree = descendants(supervisor.pid)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(30) == 0
    wait_until(lambda: not [pid for pid in tree if alive(pid)], 15, "cluster processes outlived runworker")
