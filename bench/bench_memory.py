"""Memory a web worker spends on the largest images it accepts, before and now.

Run from the repository root (``make bench-memory`` runs the same)::

    .venv/bin/python bench/bench_memory.py [--baseline a3f87c4] [--repeat 3]

For each of two code trees, the baseline commit (unpacked with ``git archive``;
by default the commit before the intake was changed) and this working tree, it
makes a throwaway install (SQLite, its own var directory), starts real gunicorn
as ``make run`` does (sync workers) and posts ``POST /api/v1/jobs`` with the
largest images the API accepts:

* PNG, 6300x6300 RGBA (39.7 MP, under the 40 MP cap; 151 MiB decoded);
* baseline JPEG, 11900x7470 (88.9 MP, under the 89 MP cap for baseline JPEG);
* progressive JPEG, 7900x5060 (40.0 MP, under its 40 MP cap).

once with one worker and one request at a time, once with two workers and two
requests at once. For every worker it reads ``/proc/<pid>/status``: the peak
(``VmHWM``, reset through ``/proc/<pid>/clear_refs`` before each request) and
the resident size (``VmRSS``) after the answer, both as growth over the
worker's resident size before the request. ``--repeat`` sends each image that
many times (the worst figures are shown): memory kept after one request is
what a worker carries into every later one. Figures are MiB.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASELINE = "a3f87c4"  # the last commit before this change to the intake

IMAGES = {
    "PNG 6300x6300 RGBA": ("png", 6300, 6300),
    "JPEG 11900x7470": ("jpeg", 11900, 7470),
    "progressive JPEG 7900x5060": ("progressive", 7900, 5060),
}


def make_image(kind: str, width: int, height: int) -> bytes:
    """A smooth picture (so it compresses under the 10 MB cap) of exactly this size."""
    import numpy as np
    from PIL import Image

    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    channels = [np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)), (x + y) / 2]
    if kind == "png":
        channels.append(np.full((height, width), 200, np.float32))
    pixels = np.dstack([np.broadcast_to(c, (height, width)).astype(np.uint8) for c in channels])
    out = io.BytesIO()
    picture = Image.fromarray(pixels, "RGBA" if kind == "png" else "RGB")
    if kind == "png":
        picture.save(out, "PNG")
    else:
        picture.save(out, "JPEG", quality=85, progressive=kind == "progressive")
    return out.getvalue()


def mib(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Install:
    """One code tree with its own database, a user and an API key."""

    def __init__(self, tree: Path, var: Path) -> None:
        self.tree, self.var = tree, var
        var.mkdir(parents=True)
        (var / "staticfiles").mkdir()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "i2v_site.settings",
            "DATABASE_URL": f"sqlite:///{var / 'db.sqlite3'}",
            "I2V_VAR_DIR": str(var),
            "I2V_ENV_FILE": str(var / "none.env"),
            "ALLOWED_HOSTS": "127.0.0.1",
            "STARTING_CREDITS": "100000",
            "API_RATE": "100000/minute",
            "PYTHONPATH": str(tree),
        }
        self.manage("migrate", "--noinput", "-v0")
        self.key = self.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; from jobs import ledger; "
            "from jobs.apikeys import create_api_key; u = get_user_model().objects.create(username='bench'); "
            "ledger.open_account(u); print(create_api_key(user=u, name='bench')[1])",
        ).split()[-1]

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=self.tree, env=self.env, capture_output=True, text=True
        )
        if done.returncode:
            raise SystemExit(f"manage.py {' '.join(args)} failed in {self.tree}:\n{done.stderr[-2000:]}")
        return done.stdout


class Gunicorn:
    def __init__(self, install: Install, workers: int) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.install = install
        command = [sys.executable, "-m", "gunicorn", "i2v_site.wsgi", "--bind", self.url.removeprefix("http://")]
        command += ["--workers", str(workers), "--worker-class", "sync", "--timeout", "120"]
        self.log = install.var / "gunicorn.log"
        with self.log.open("a") as handle:
            self.proc = subprocess.Popen(
                command, cwd=install.tree, env=install.env, stdout=handle, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.workers = self._children()
            if len(self.workers) == workers and self.get("/api/v1/credits") == 200:
                break
            time.sleep(0.3)
        else:
            self.stop()
            raise SystemExit(f"gunicorn did not start:\n{self.log.read_text()[-2000:]}")
        # Warm every worker up (imports, connections) so its size before a request is its real size.
        for _ in range(10 * workers):
            self.get("/api/v1/credits")
        self.start_size = max(mib(pid, "VmRSS") for pid in self.workers)

    def _children(self) -> list[int]:
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as children:
                return [int(pid) for pid in children.read().split()]
        except OSError:
            return []

    def get(self, path: str) -> int:
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.install.key}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status
        except (urllib.error.URLError, OSError) as exc:
            return getattr(exc, "code", 0)

    def post_image(self, data: bytes, filename: str) -> tuple[int, float]:
        boundary = uuid.uuid4().hex
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        body += data + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="provider"\r\n\r\nlocal'.encode()
        body += f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(
            self.url + "/api/v1/jobs",
            data=body,
            headers={
                "Authorization": f"Bearer {self.install.key}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        return status, time.monotonic() - started

    def measure(self, data: bytes, filename: str, concurrent: int) -> list[dict]:
        """Send ``concurrent`` posts at once; each worker's peak and kept growth, and the answers."""
        before = {}
        for pid in self.workers:
            with open(f"/proc/{pid}/clear_refs", "w") as refs:
                refs.write("5")  # the peak (VmHWM) starts again from the current size
            before[pid] = mib(pid, "VmRSS")
        answers: list[tuple[int, float]] = []
        barrier = threading.Barrier(concurrent)

        def send() -> None:
            barrier.wait()
            answers.append(self.post_image(data, filename))

        threads = [threading.Thread(target=send) for _ in range(concurrent)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rows = []
        for pid in self.workers:
            peak, kept = mib(pid, "VmHWM") - before[pid], mib(pid, "VmRSS") - before[pid]
            rows.append({"pid": pid, "rss_before": before[pid], "peak": peak, "kept": kept})
        return [{"answers": answers, "workers": rows}]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def unpack(commit: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="commit to compare with (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="requests per image and setting (worst shown)")
    parser.add_argument("--json", action="store_true", help="also print every measurement as JSON")
    args = parser.parse_args()

    images = {name: make_image(*spec) for name, spec in IMAGES.items()}
    results = []
    with tempfile.TemporaryDirectory(prefix="i2v-bench-memory-") as tmp:
        trees = {
            f"before ({args.baseline})": unpack(args.baseline, Path(tmp) / "before"),
            "now": ROOT,
        }
        for label, tree in trees.items():
            install = Install(tree, Path(tmp) / f"var-{len(results)}-{label.split()[0]}")
            for concurrent in (1, 2):
                web = Gunicorn(install, workers=concurrent)
                try:
                    for name, data in images.items():
                        suffix = "png" if name.startswith("PNG") else "jpg"
                        for attempt in range(args.repeat):
                            for run in web.measure(data, f"big.{suffix}", concurrent):
                                results.append(
                                    {
                                        "tree": label,
                                        "concurrent": concurrent,
                                        "image": name,
                                        "attempt": attempt,
                                        "start": web.start_size,
                                        **run,
                                    }
                                )
                finally:
                    web.stop()

    print(f"Peak and kept memory per web worker (MiB over its size before the request), worst of {args.repeat}")
    print("(worker size: after warming up -> largest after a request; the images are sent in the order shown)")
    print(f"{'image':<28}{'tree':<20}{'at once':>8}{'answers':>9}{'peak':>8}{'kept':>8}{'worker size':>15}{'time':>7}")
    for name, data in images.items():
        kind, width, height = IMAGES[name]
        decoded = width * height * (4 if kind == "png" else 3) / 2**20
        for label in trees:
            for concurrent in (1, 2):
                runs = [r for r in results if (r["image"], r["tree"], r["concurrent"]) == (name, label, concurrent)]
                answers = sorted({status for run in runs for status, _ in run["answers"]})
                busy = [w for run in runs for w in run["workers"]]
                peak = max((w["peak"] for w in busy), default=0.0)
                kept = max((w["kept"] for w in busy), default=0.0)
                size = max((w["rss_before"] + w["kept"] for w in busy), default=0.0)
                sizes = f"{runs[0]['start']:.0f} -> {size:.0f}"
                slowest = max(seconds for run in runs for _, seconds in run["answers"])
                print(
                    f"{name:<28}{label:<20}{concurrent:>8}{','.join(map(str, answers)):>9}"
                    f"{peak:>+8.0f}{kept:>+8.0f}{sizes:>15}{slowest:>6.1f}s"
                )
        print(f"{'':<28}({len(data) / 2**20:.1f} MiB file, {decoded:.0f} MiB decoded)")
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
