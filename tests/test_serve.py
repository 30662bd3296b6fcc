"""``manage.py serve``: web, worker and sweeper as one program that behaves.

It refuses a taken port with advice, logs the size of every download, keeps
gunicorn's control socket in the var folder, starts a component again when
it dies, and takes every process it started with it when it is killed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from django.conf import settings
from django.test import Client

from jobs.models import Job
from tests.factories import UserFactory, make_job
from tests.processes import (
    ROOT,
    alive,
    children,
    command_line,
    descendants,
    free_port,
    wait_for,
    wait_until,
)
from tests.storage_harness import storage_is_remote

pytestmark = pytest.mark.slow


def http_get(url: str, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def test_serve_refuses_a_taken_port_and_says_how_to_pick_another(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env={**os.environ, "I2V_VAR_DIR": str(tmp_path / "var"), "I2V_ENV_FILE": str(tmp_path / "none.env")},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode != 0
    assert f"Port {port} on 127.0.0.1 is already in use" in result.stderr
    assert f"make run PORT={port + 1}" in result.stderr
    assert "i2v is running" not in result.stdout


@pytest.mark.parametrize("name", ["CACHE_URL", "Q_BROKER_URL"])
def test_serve_stops_at_once_naming_a_redis_that_does_not_answer(tmp_path, name):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        result = subprocess.run(
            [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{free_port()}"],
            cwd=ROOT,
            env={
                **os.environ,
                "I2V_VAR_DIR": str(tmp_path / "var"),
                "I2V_ENV_FILE": str(tmp_path / "none.env"),
                name: f"redis://127.0.0.1:{port}/0",
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode != 0
    assert name in result.stderr and "does not answer" in result.stderr
    assert "i2v is running" not in result.stdout


def test_check_deploy_names_a_redis_that_does_not_answer(tmp_path):
    # What a machine running gunicorn, qcluster or runsweeper alone (no serve) can run first.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        result = subprocess.run(
            [sys.executable, "manage.py", "check", "--deploy"],
            cwd=ROOT,
            env={
                **os.environ,
                "I2V_VAR_DIR": str(tmp_path / "var"),
                "I2V_ENV_FILE": str(tmp_path / "none.env"),
                "CACHE_URL": f"redis://127.0.0.1:{closed.getsockname()[1]}/0",
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode != 0
    assert "i2v.E001" in result.stderr and "CACHE_URL does not answer" in result.stderr


def test_make_run_listens_where_port_says():
    result = subprocess.run(["make", "-n", "run", "PORT=8123"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "manage.py serve --bind 127.0.0.1:8123" in result.stdout


@pytest.mark.django_db(transaction=True)
def test_serve_logs_download_sizes_restarts_a_dead_part_and_dies_whole(cluster_factory, tmp_path):
    port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    cluster = cluster_factory(HOME=str(home))
    serve = cluster.start("serve", "--bind", f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_get(f"{base}/login/")[0] == 200, 90, cluster.log_text)

    user = UserFactory()
    client = Client()
    client.force_login(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    job = wait_for(make_job(user, enqueue=True), lambda j: j.is_final, 90, cluster)
    assert job.status == Job.COMPLETED, job.error_message

    # The access log counts the bytes of a whole download and of a range.
    video = f"/jobs/{job.pk}/video.mp4?download=1"
    status, body = http_get(base + video, Cookie=cookie)
    assert status == 200 and len(body) == job.video_bytes > 0
    status, part = http_get(base + video, Cookie=cookie, Range="bytes=0-99")
    assert status == 206 and len(part) == 100
    if storage_is_remote():
        # The web answers with a redirect to the storage, which serves the bytes (and the range).
        wait_until(lambda: cluster.log_text().count(f'"GET {video} HTTP/1.1" 302 ') == 2, 10, cluster.log_text)
    else:
        wait_until(lambda: f'"GET {video} HTTP/1.1" 200 {len(body)} ' in cluster.log_text(), 10, cluster.log_text)
        wait_until(lambda: f'"GET {video} HTTP/1.1" 206 100 ' in cluster.log_text(), 10, cluster.log_text)

    # gunicorn's control socket sits with the other run-time files, not in the home folder.
    assert (tmp_path / "var" / "run" / "gunicorn.ctl").exists()
    assert list(home.iterdir()) == []

    # A part that dies is started again; the rest keep running.
    def sweeper_pid() -> int | None:
        found = [pid for pid in children(serve.pid) if "runsweeper" in command_line(pid)]
        return found[0] if found else None

    first = sweeper_pid()
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: (sweeper_pid() or first) != first, 30, cluster.log_text)
    assert "sweeper exited with code -9; starting it again" in cluster.log_text()
    assert serve.poll() is None

    # kill -9 of serve: gunicorn and its workers, the worker cluster and the sweeper all go.
    tree = wait_until(lambda: (found := descendants(serve.pid)) and len(found) >= 8 and found, 30, "tree")
    assert any("gunicorn" in command_line(pid) for pid in tree)
    assert any("--cluster-process" in command_line(pid) for pid in tree)
    os.kill(serve.pid, signal.SIGKILL)
    serve.wait(10)
    wait_until(
        lambda: not [pid for pid in tree if alive(pid)],
        30,
        lambda: "still alive: " + ", ".join(command_line(pid) for pid in tree if alive(pid)),
    )
    assert http_get(f"{base}/login/")[0] == 0  # the port is free again
