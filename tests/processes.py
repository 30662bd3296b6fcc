"""Real worker processes for tests: a django-q2 cluster and the sweeper,
sharing the test database and files (the test must use a transactional db)."""

from __future__ import annotations

import os
import signal
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


class Cluster:
    """qcluster + sweeper subprocesses sharing the test database and files."""

    def __init__(self, settings, tmp_path: Path, **extra_env: str) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "I2V_VAR_DIR": str(tmp_path / "var"),
            "I2V_ENV_FILE": str(tmp_path / "none.env"),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "WORK_DIR": str(settings.WORK_DIR),
            "Q_WORKERS": "2",
            "Q_TIMEOUT": "15",
            "Q_RETRY": "20",
            "JOB_LEASE_SECONDS": "16",
            "JOB_DISPATCH_GRACE": "30",
            "SWEEP_INTERVAL": "0.2",
            "Q_SYNC": "false",
            "SECRET_KEY": settings.SECRET_KEY,  # tasks are signed with it
            **extra_env,
        }
        self.procs: dict[str, subprocess.Popen] = {}
        self.log = tmp_path / "cluster.log"

    def start(self, name: str) -> None:
        command = "qcluster" if name == "worker" else "runsweeper"
        handle = self.log.open("a")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "manage.py", command],
            cwd=ROOT,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, so a kill takes every worker
        )

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        for name in list(self.procs):
            self.kill(name)


@pytest.fixture
def cluster_factory(settings, tmp_path, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)  # enqueue through the real ORM broker
    settings.WORK_DIR = tmp_path / "work"
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
