"""``manage.py serve``: the web server, the worker cluster and the sweeper together.

Each component runs in a process group of its own and dies with ``serve``
(even after a ``kill -9``: see ``jobs/lifelines.py``). A component that
exits while ``serve`` is not stopping is started again after a pause that
grows while it keeps exiting, so a database outage or a crash of one part
never takes the others down.
"""

from __future__ import annotations

import errno
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from jobs.lifelines import start_child, stop_tree
from jobs.service_checks import unreachable_services

RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)
# A component that ran this long before exiting starts again at once.
HEALTHY_RUN = 60.0
# Seconds the components get to stop (the worker finishes its tasks) before they are killed.
STOP_GRACE = 20.0
WEB_WORKERS = 2


@dataclass
class Component:
    name: str
    command: list[str]
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None


class Command(BaseCommand):
    help = "Start web (gunicorn), worker (runworker) and sweeper; restart any that exits; Ctrl-C stops all."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1:8000", help="host:port for the web server.")
        parser.add_argument("--web-workers", type=int, default=WEB_WORKERS)
        parser.add_argument("--dev", action="store_true", help="Use runserver (auto-reload) instead of gunicorn.")

    def handle(self, *args, bind: str, web_workers: int, dev: bool, **options):
        host, port = _parse_bind(bind)
        _check_port_free(host, port)
        problems = unreachable_services()
        if problems:
            raise CommandError("\n".join(problems))
        run_dir = settings.VAR_DIR / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        web = [*manage, "runserver", bind] if dev else gunicorn_command(bind, web_workers, run_dir)
        components = [
            Component("web", web),
            Component("worker", [*manage, "runworker"]),
            Component("sweeper", [*manage, "runsweeper"]),
        ]
        stopping = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stopping.set())
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        for component in components:
            self._start(component)
        self.stdout.write(self.style.SUCCESS(f"i2v is running on http://{bind}/  (Ctrl-C stops it)"))
        try:
            while not stopping.wait(0.5):
                for component in components:
                    self._tend(component)
        finally:
            self.stderr.write("stopping web, worker and sweeper")
            stoppers = [
                threading.Thread(target=stop_tree, args=(c.proc, STOP_GRACE)) for c in components if c.proc is not None
            ]
            for stopper in stoppers:
                stopper.start()
            for stopper in stoppers:
                stopper.join()

    def _start(self, component: Component) -> None:
        component.proc = start_child(component.command, death_signal=signal.SIGTERM)
        component.started_at = time.monotonic()
        component.restart_at = None

    def _tend(self, component: Component) -> None:
        """Start again a component that exited, after its pause."""
        now = time.monotonic()
        if component.restart_at is not None:
            if now >= component.restart_at:
                self.stderr.write(f"starting {component.name} again")
                self._start(component)
            return
        code = component.proc.poll()
        if code is None:
            return
        stop_tree(component.proc, 0)  # whatever it left behind goes too
        if now - component.started_at > HEALTHY_RUN:
            component.failures = 0
        pause = RESTART_BACKOFF[min(component.failures, len(RESTART_BACKOFF) - 1)]
        component.failures += 1
        component.restart_at = now + pause
        self.stderr.write(f"{component.name} exited with code {code}; starting it again in {pause:.0f} s")


def gunicorn_command(bind: str, web_workers: int, run_dir: Path) -> list[str]:
    """The web server's command line (``bench/bench_hot_read.py`` starts the same one)."""
    return [
        *(sys.executable, "-m", "gunicorn", "i2v_site.wsgi"),
        *("--config", "python:i2v_site.gunicorn_conf"),
        # sync workers stayed balanced here where gthread left one idle.
        *("--bind", bind, "--workers", str(web_workers), "--worker-class", "sync", "--timeout", "60"),
        *("--access-logfile", "-"),
        # Its control socket goes with our other run-time files, not into the home folder.
        *("--control-socket", str(run_dir / "gunicorn.ctl")),
        # sendfile bypasses gunicorn's byte count: the access log showed 0 for every download.
        "--no-sendfile",
    ]


def _parse_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise CommandError(f"--bind {bind!r}: expected host:port, such as 127.0.0.1:8000")
    return host.strip("[]"), int(port)


def _check_port_free(host: str, port: int) -> None:
    """Refuse to start, saying what to do, when the web port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise CommandError(f"Cannot listen on {host}:{port}: {exc.strerror}.") from None
            raise CommandError(
                f"Port {port} on {host} is already in use (another i2v, or another program). "
                f"Stop that program, or choose another port: make run PORT={port + 1} "
                f"(or manage.py serve --bind {host}:{port + 1})."
            ) from None
