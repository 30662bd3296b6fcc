"""Runs the web server, the django-q2 worker and the sweeper together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Start web (gunicorn), worker (qcluster) and sweeper; stop all when one stops or on Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1:8000")
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument("--dev", action="store_true", help="Use runserver (auto-reload) instead of gunicorn.")

    def handle(self, *args, bind: str, web_workers: int, dev: bool, **options):
        manage = [sys.executable, "manage.py"]
        if dev:
            web = [*manage, "runserver", bind]
        else:
            # sync workers stayed balanced here where gthread left one idle.
            web = [
                sys.executable,
                "-m",
                "gunicorn",
                "i2v_site.wsgi",
                "--bind",
                bind,
                "--workers",
                str(web_workers),
                "--worker-class",
                "sync",
                "--timeout",
                "60",
                "--access-logfile",
                "-",
            ]
        commands = {"web": web, "worker": [*manage, "qcluster"], "sweeper": [*manage, "runsweeper"]}
        procs = {name: subprocess.Popen(cmd, env=os.environ.copy()) for name, cmd in commands.items()}
        self.stdout.write(self.style.SUCCESS(f"i2v is running on http://{bind}/  (Ctrl-C stops it)"))

        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        code = 0
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with {proc.returncode}; stopping the others")
                    code = proc.returncode or 1
                    stopping = True
                    break
            time.sleep(0.5)
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        sys.exit(code)
