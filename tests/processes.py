"""Real worker processes for tests: a django-q2 cluster (bare or under
``runworker``) and the sweeper, sharing the test database, files and cache
(the test must use a transactional db)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django_q.conf import Conf

from jobs.models import Job

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    return f"postgres://{user}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def shared_files_env(settings) -> dict[str, str]:
    """What a child process needs to see this test's files: its MEDIA_ROOT, or
    its folder of the bucket when storage is remote (the rest of the S3
    settings come from the environment)."""
    env = {"MEDIA_ROOT": str(settings.MEDIA_ROOT)}
    if getattr(settings, "AWS_STORAGE_BUCKET_NAME", ""):
        env["AWS_LOCATION"] = settings.AWS_LOCATION
    return env


def shared_cache_url(settings) -> str:
    """The test's cache as a CACHE_URL: its file cache folder, or the shared
    cache server the suite runs with."""
    cache = settings.CACHES["default"]
    if cache["BACKEND"].endswith("FileBasedCache"):
        return f"filecache://{cache['LOCATION']}"
    return os.environ["CACHE_URL"]


def empty_redis_broker() -> None:
    """Tasks a previous test's cluster left in a Redis broker would reach this
    test's workers (the ORM broker's queue is rolled back with the test's data)."""
    if Conf.ORM:
        return
    from jobs.tasks import shared_broker

    shared_broker().connection.flushdb()


class Cluster:
    """qcluster + sweeper subprocesses sharing the test database and files."""

    BASE_ENV = {"JOB_LEASE_SECONDS": "16", "JOB_DISPATCH_GRACE": "30", "SWEEP_INTERVAL": "0.2"}

    def __init__(self, settings, tmp_path: Path, **extra_env: str) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "I2V_VAR_DIR": str(tmp_path / "var"),
            "I2V_ENV_FILE": str(tmp_path / "none.env"),
            **shared_files_env(settings),
            "WORK_DIR": str(settings.WORK_DIR),
            "Q_WORKERS": "2",
            "Q_TIMEOUT": "15",
            "Q_RETRY": "20",
            **self.BASE_ENV,
            "Q_SYNC": "false",
            "SECRET_KEY": settings.SECRET_KEY,  # tasks are signed with it
            # The clusters' status records live in the cache; the test reads them too.
            "CACHE_URL": shared_cache_url(settings),
            "WORKER_STALL_SECONDS": "6",
            **extra_env,
        }
        self.procs: dict[str, subprocess.Popen] = {}
        self.log = tmp_path / "cluster.log"

    # "sweeper2": a second sweeper beside the first, as on a second machine.
    COMMANDS = {
        "worker": "qcluster",
        "runworker": "runworker",
        "runworker2": "runworker",  # a second supervised cluster, as on a second machine
        "sweeper": "runsweeper",
        "sweeper2": "runsweeper",
        "serve": "serve",
    }

    def start(self, name: str, *args: str) -> subprocess.Popen:
        command = self.COMMANDS[name]
        handle = self.log.open("a")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "manage.py", command, *args],
            cwd=ROOT,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, so a kill takes every worker
        )
        return self.procs[name]

    def kill(self, name: str) -> None:
        """Kill the process, its group, and (by their death signal) whatever it started."""
        proc = self.procs.pop(name)
        tree = descendants(proc.pid) if proc.poll() is None else []
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # the test killed it already
            pass
        proc.wait(10)
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in tree) and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        for name in list(self.procs):
            self.kill(name)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def cluster_status(main_pid: int, timeout: float = 60):
    """django-q2's status record of the cluster whose main process is ``main_pid``,
    once it shows all its processes."""
    from jobs.cluster_watch import cluster_status as find

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stat = find(main_pid)
        if stat is not None and stat.workers and stat.pusher and stat.monitor:
            return stat
        time.sleep(0.2)
    raise AssertionError(f"cluster {main_pid} never reported its status")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            text = (task / "children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        found.extend(int(child) for child in text)
    return found


def descendants(pid: int) -> list[int]:
    found = children(pid)
    for child in list(found):
        found.extend(descendants(child))
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except FileNotFoundError:
        return ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has died


def wait_until(condition, timeout: float, message, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(message() if callable(message) else message)


@pytest.fixture
def cluster_factory(settings, tmp_path, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)  # enqueue through the real ORM broker
    settings.WORK_DIR = tmp_path / "work"
    # Jobs created here get the due times the workers and sweeper expect.
    settings.JOB_DISPATCH_GRACE = int(Cluster.BASE_ENV["JOB_DISPATCH_GRACE"])
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
        }
    }
    # Before the test makes anything: a task it queues before starting a cluster
    # (or while one restarts) must still be there for the workers.
    empty_redis_broker()
    clusters: list[Cluster] = []

    def make(**env: str) -> Cluster:
        cluster = Cluster(settings, tmp_path, **env)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop()


def wait_for(job: Job, predicate, timeout: float, cluster: Cluster) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if predicate(job):
            return job
        time.sleep(0.1)
    raise AssertionError(
        f"timed out; job is {job.status} ({job.status_message}); log:\n{cluster.log.read_text()[-3000:]}"
    )
