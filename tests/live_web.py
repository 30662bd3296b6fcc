"""A real gunicorn serving the test database, for tests that need several web
processes at once (the test must use a transactional database)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.processes import ROOT, database_url, shared_files_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveWeb:
    def __init__(self, settings, tmp_path: Path, *, workers: int = 3, **extra_env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "gunicorn.log"
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "I2V_VAR_DIR": str(tmp_path / "var"),
            "I2V_ENV_FILE": str(tmp_path / "none.env"),
            **shared_files_env(settings),
            "RATE_LIMIT_DIR": str(settings.RATE_LIMIT_DIR),
            "SECRET_KEY": settings.SECRET_KEY,
            "ALLOWED_HOSTS": "127.0.0.1",
            **extra_env,
        }
        command = [sys.executable, "-m", "gunicorn", "i2v_site.wsgi", "--bind", f"127.0.0.1:{self.port}"]
        command += ["--workers", str(workers), "--worker-class", "sync", "--timeout", "120"]
        with self.log.open("a") as handle:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited:\n{self.log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{self.url}/api/v1/credits", timeout=5)
            except urllib.error.HTTPError:
                return  # it answers (401 without a key)
            except OSError:
                time.sleep(0.2)
                continue
            return
        raise AssertionError(f"gunicorn did not answer:\n{self.log.read_text()[-3000:]}")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
        request = urllib.request.Request(f"{self.url}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
