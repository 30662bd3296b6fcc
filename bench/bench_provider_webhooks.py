"""Provider webhooks against polling alone: from the provider finishing to the integrator told.

Run from the repository root::

    .venv/bin/python bench/bench_provider_webhooks.py [--jobs 200] [--floor 2] [--spread 20]
    .venv/bin/python bench/bench_provider_webhooks.py --provider pipelet   # make bench-hooks-pipelet

Everything runs on 127.0.0.1 in a throwaway directory (its own SQLite file,
media and scratch folders). In this process: an image host, the fake Replicate
(tests/fakes) whose predictions finish by the clock (``--min-wait`` ..
``--min-wait + --spread`` s after their creation, seeded), and the G.A.M.E
callback receiver, standing for the integrator's webhook. As subprocesses: a
real gunicorn (``PUBLIC_BASE_URL``: it takes Replicate's webhooks at
``/hooks/replicate``), a real ``manage.py runworker`` and ``manage.py
runsweeper``, with ``REPLICATE_POLL_INTERVAL`` = ``--floor``.

Jobs are made through ``POST /api/v1/i2v`` (the Django test client here, a real
API key), with ``I2V_COMPAT_PROVIDER=replicate`` (Stable Video Diffusion, no
prompt stage), so each job's end goes out through the callback outbox as an
I2V callback. Phase W: the fake posts each prediction's signed ``completed``
webhook the moment it finishes. Phase P: the same, with the fake sending no
webhooks: polling alone. Same processes, same settings, one after the other.
Per job: provider finish -> job ``completed`` (its timeline row) and ->
the callback's arrival at the receiver.

With ``--provider pipelet`` the provider is the fake Pipelet instead (Wan 2.2
fast, ``I2V_COMPAT_PROVIDER=pipelet`` with a ``DEFAULT_PROMPT``,
``PIPELET_POLL_INTERVAL`` = ``--floor``): each job is taken by a worker at once
(its unsigned ``acquired`` webhook) and finishes by the clock (``completed``,
the base64 video merged in), posted to ``/hooks/pipelet/<token>`` once each,
never retried; phase P sends none.

Bounded: each phase gives up after ``--deadline`` s. Logs in bench/out/.
A default run takes about four to five minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_i2v import CpuMeter, check_alive, timed_fakes, wait_for_startup
from bench_inflight import OUT, ROOT, configure_environment, percentile, setup_django, start_process, stop_process

SVD = "stability-ai/stable-video-diffusion:3f0457e4619daac51203dedb472816fd4af51f3149fa7a9e0b5ffcf1b8172438"


def clocked_replicate(wait):
    """The fake Replicate, each prediction finishing ``wait(index)`` s after its creation."""
    from tests.fakes.replicate_server import FakeReplicateServer

    class ClockedReplicate(FakeReplicateServer):
        def __init__(self, token: str) -> None:
            super().__init__(token)
            self.finished_at: dict[str, float] = {}
            self.created_count = 0

        def new_prediction(self, model, version, inputs, webhook=None):
            prediction = super().new_prediction(model, version, inputs, webhook)
            with self.lock:
                index = self.created_count
                self.created_count += 1
            timer = threading.Timer(wait(index), self.finish, args=(prediction.id,))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
            return prediction

        def finish(self, prediction_id: str) -> None:
            self.finished_at[prediction_id] = time.time()
            super().finish(prediction_id)

        def advance(self, prediction) -> None:
            # Looks change nothing: the clock finishes a prediction.
            with self.lock:
                if prediction.status == "starting":
                    prediction.status = "processing"

    return ClockedReplicate


def clocked_pipelet(wait):
    """The fake Pipelet, each job taken at once and finishing ``wait(index)`` s after its creation."""
    from tests.fakes.pipelet_server import FakePipeletServer

    class ClockedPipelet(FakePipeletServer):
        def __init__(self, token: str) -> None:
            super().__init__(token)
            self.script.finish_after_seconds = 0.0  # by the clock: polls change nothing
            self.finished_at: dict[str, float] = {}
            self.created_count = 0

        def started(self, job) -> None:
            with self._lock:
                index = self.created_count
                self.created_count += 1
                events = self._move(job, "IN_PROGRESS")
                job.polls = len(self.script.queue_positions) + 1
            self._send_hooks(job, events)
            timer = threading.Timer(wait(index), self.finish, args=(job.id,))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()

        def finish(self, request_id: str) -> None:
            self.finished_at[request_id] = time.time()
            super().finish(request_id)

    return ClockedPipelet


class Provider:
    """What the bench reads from either fake, keyed by our ``provider_job_id``."""

    def __init__(self, name: str, fake) -> None:
        self.name, self.fake = name, fake

    def key(self, provider_job_id: str) -> str:
        return provider_job_id.partition(":")[2] if self.name == "pipelet" else provider_job_id

    def finished(self, provider_job_id: str) -> float | None:
        return self.fake.finished_at.get(self.key(provider_job_id))

    def reads(self, provider_job_id: str) -> int:
        if self.name == "pipelet":
            return len([r for r in self.fake.polls if f"/requests/{self.key(provider_job_id)}/" in r.path])
        return len(self.fake.calls("GET", f"/v1/predictions/{provider_job_id}"))

    def hooks(self, provider_job_ids: set[str]) -> list[tuple[str, str, int | str | None, float]]:
        """(provider_job_id, event, answer, when) of each webhook sent about these jobs."""
        if self.name == "pipelet":
            model = next(iter(provider_job_ids), ":").partition(":")[0]
            sent = [(f"{model}:{h.job_id}", h.event, h.status, h.at) for h in self.fake.webhooks_sent]
        else:
            sent = [(s.prediction_id, "completed", s.status, s.at) for s in self.fake.webhooks_sent]
        return [row for row in sent if row[0] in provider_job_ids]

    def creates(self) -> int:
        return len(self.fake.creates) if self.name == "pipelet" else len(self.fake.calls("POST", "/v1/"))

    def send_webhooks(self, on: bool) -> None:
        self.fake.script.send_webhooks = on


def start_gunicorn(port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "gunicorn", "i2v_site.wsgi", "--bind", f"127.0.0.1:{port}"]
    handle = log.open("a")
    try:
        return subprocess.Popen(
            [*command, "--workers", "2", "--worker-class", "sync", "--timeout", "60"],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        handle.close()


def wait_for_web(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("gunicorn exited at start-up; see bench/out/hooks-web.log")
        try:
            urllib.request.urlopen(f"{url}/hooks/replicate", timeout=5)
        except urllib.error.HTTPError:
            return  # it answers (405 for a GET)
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer within 90 s")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


OPTIONS = [
    ("--provider", str, "replicate", "replicate (signed webhooks) or pipelet (unsigned, token URL)"),
    ("--jobs", int, 200, "jobs per phase (default 200)"),
    ("--floor", float, 2.0, "REPLICATE_/PIPELET_POLL_INTERVAL, the poll floor, in seconds (default 2)"),
    ("--min-wait", float, 10.0, "a prediction finishes at least this many s after its creation (default 10)"),
    ("--spread", float, 100.0, "plus up to this many s (default 100): about two finishes a second"),
    ("--workers", int, 2, "Q_WORKERS of the cluster (default 2)"),
    ("--seed", int, 1, "seed of the waits (default 1)"),
    ("--deadline", float, 240.0, "give up a phase after this many s (default 240)"),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for flag, kind, default, text in OPTIONS:
        parser.add_argument(flag, type=kind, default=default, help=text)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse_args(argv)


def stats(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{percentile(values, 50):.2f} / {percentile(values, 95):.2f} / {max(values):.2f} s"


def run(args: argparse.Namespace) -> int:
    if args.jobs < 1 or args.floor <= 0 or args.spread < 0 or args.min_wait < 0:
        raise SystemExit("--jobs >= 1, --floor > 0, --spread and --min-wait >= 0")
    if args.provider not in ("replicate", "pipelet"):
        raise SystemExit("--provider is replicate or pipelet")
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="i2v-bench-hooks-"))
    n = args.jobs
    rng = random.Random(args.seed)
    waits = [args.min_wait + rng.random() * args.spread for _ in range(2 * n)]
    wall_start = time.monotonic()
    load_start = os.getloadavg()
    procs: dict[str, subprocess.Popen] = {}
    stack = []
    try:
        from PIL import Image

        from tests.fakes.image_server import ImageServer

        _, _, TimedReceiver = timed_fakes()
        png = io.BytesIO()
        Image.new("RGB", (1024, 576), (40, 90, 200)).save(png, "PNG")
        images = ImageServer(png.getvalue()).__enter__()
        stack.append(lambda: images.__exit__(None, None, None))
        clocked = clocked_pipelet if args.provider == "pipelet" else clocked_replicate
        fake = clocked(lambda i: waits[i % len(waits)])("bench" + secrets.token_hex(6)).__enter__()
        stack.append(lambda: fake.__exit__(None, None, None))
        provider = Provider(args.provider, fake)
        receiver = TimedReceiver().start()
        stack.append(receiver.stop)
        port = free_port()
        web_url = f"http://127.0.0.1:{port}"

        configure_environment(tmp, args.floor, args.workers, "sk-unused-" + secrets.token_hex(4))
        if args.provider == "pipelet":
            os.environ.update(
                {
                    "PIPELET_BASE_URL": fake.base_url,
                    "PIPELET_API_KEY": fake.token,
                    "PIPELET_POLL_INTERVAL": f"{args.floor:g}",
                    "PIPELET_OUTPUT": "base64",
                    "DEFAULT_PROMPT": "the camera drifts slowly forward",
                    "REPLICATE_API_TOKEN": "",  # no CLIP stage: the default prompt
                }
            )
        else:
            os.environ.update(
                {
                    "REPLICATE_BASE_URL": fake.base_url,
                    "REPLICATE_API_TOKEN": fake.token,
                    "REPLICATE_POLL_INTERVAL": f"{args.floor:g}",
                    "REPLICATE_VIDEO_MODEL": SVD,
                }
            )
        os.environ.update(
            {
                "PUBLIC_BASE_URL": web_url,
                "I2V_COMPAT_PROVIDER": args.provider,
                "PIKAPI_BEARER_TOKEN": "",
                "CALLBACK_API_URL": f"{receiver.base_url}/requests",
                "GAME_API_KEY": "game-bench-key",
                "SAFE_FETCH_ALLOW": ",".join([images.address, fake.address, receiver.address]),
                "ALLOWED_HOSTS": "127.0.0.1",
                "API_RATE": "100000/minute",
            }
        )
        warnings.filterwarnings("ignore", message="No directory at")  # whitenoise: no collected static here
        setup_django()

        from django.core.management import call_command
        from django_q.conf import Conf

        from jobs import ledger
        from jobs.models import CallbackDelivery, Job, JobEvent
        from tests.api_helpers import key_client

        Conf.SYNC = False  # enqueue through the real ORM broker
        logging.getLogger("django-q").setLevel(logging.WARNING)
        call_command("migrate", verbosity=0, interactive=False)
        client = key_client()
        ledger.grant(user=client.user, amount=n * 1000, reason="benchmark")

        logs = {name: OUT / f"hooks-{name}.log" for name in ("worker", "sweeper", "web")}
        for path in logs.values():
            path.write_text("")  # this run's lines only
        print(f"{n} {args.provider} jobs per phase, poll floor {args.floor:g} s, Q_WORKERS={args.workers}", flush=True)
        procs["web"] = start_gunicorn(port, logs["web"])
        procs["worker"] = start_process("runworker", logs["worker"])
        procs["sweeper"] = start_process("runsweeper", logs["sweeper"])
        wait_for_web(web_url, procs["web"])
        meter = CpuMeter(procs["worker"].pid, procs["sweeper"].pid)
        wait_for_startup({k: procs[k] for k in ("worker", "sweeper")}, meter, args.workers)
        print("  started", flush=True)

        def phase(name: str, prefix: str, webhooks: bool) -> dict:
            provider.send_webhooks(webhooks)
            t0 = time.time()
            refused = []
            for i in range(n):
                response = client.post(
                    "/api/v1/i2v",
                    {"image_id": f"{images.base_url}/{prefix}/{i}.png"},
                    format="json",
                    HTTP_X_REQUEST_ID=f"{prefix}-{i}",
                    HTTP_HOST="127.0.0.1",
                )
                if response.status_code != 200:
                    refused.append(f"{response.status_code} {response.content[:200]!r}")
            print(f"  {name}: {n} requests answered in {time.time() - t0:.1f} s ({len(refused)} refused)", flush=True)
            if len(refused) == n:
                raise RuntimeError(f"{name}: every request was refused, e.g. {refused[0]}")
            ids = list(Job.objects.filter(request_id__startswith=f"{prefix}-").values_list("pk", flat=True))
            pending = missing = n
            while time.time() < t0 + args.deadline:
                check_alive(procs)
                pending = Job.objects.filter(pk__in=ids).exclude(status__in=Job.FINAL_STATES).count()
                arrived = {path for _, path in receiver.arrivals if path.startswith(f"/requests/{prefix}-")}
                missing = len(ids) - len(arrived)
                if pending == 0 and missing <= 0:
                    break
                time.sleep(0.25)
            print(
                f"  {name}: done after {time.time() - t0:.1f} s ({pending} not final, {missing} callbacks missing)",
                flush=True,
            )
            return {"ids": ids, "refused": refused}

        w = phase("phase W (provider webhooks)", "w", True)
        p = phase("phase P (polling alone)", "p", False)
        for proc in procs.values():
            stop_process(proc)

        # --- figures ------------------------------------------------------------------
        first_arrival: dict[str, float] = {}
        for at, path in receiver.arrivals:
            first_arrival.setdefault(path.removeprefix("/requests/").removesuffix("/callback"), at)
        completed_at = {
            job_id: at.timestamp()
            for job_id, at in JobEvent.objects.filter(to_status=Job.COMPLETED)
            .exclude(from_status=Job.COMPLETED)
            .values_list("job_id", "at")
        }

        def figures(info: dict) -> dict:
            rows = list(Job.objects.filter(pk__in=info["ids"]).values("pk", "request_id", "status", "provider_job_id"))
            to_completed, to_callback, handover, reads = [], [], [], 0
            sent = provider.hooks({row["provider_job_id"] for row in rows})
            answered: dict[str, float] = {}
            for job_ref, event, status, at in sent:
                if event == "completed" and status == 200:
                    answered.setdefault(job_ref, at)
            to_answered = []
            for row in rows:
                finished = provider.finished(row["provider_job_id"])
                reads += provider.reads(row["provider_job_id"])
                if finished is None:
                    continue
                if row["provider_job_id"] in answered:
                    to_answered.append(answered[row["provider_job_id"]] - finished)
                if row["pk"] in completed_at:
                    to_completed.append(completed_at[row["pk"]] - finished)
                if row["request_id"] in first_arrival:
                    to_callback.append(first_arrival[row["request_id"]] - finished)
                    if row["pk"] in completed_at:
                        handover.append(first_arrival[row["request_id"]] - completed_at[row["pk"]])
            return {
                "completed": sum(1 for row in rows if row["status"] == Job.COMPLETED),
                "callbacks": len(to_callback),
                "delivered": CallbackDelivery.objects.filter(
                    job_id__in=info["ids"], status=CallbackDelivery.DELIVERED
                ).count(),
                "to_completed": to_completed,
                "to_callback": to_callback,
                "to_answered": to_answered,
                "handover": handover,
                "reads": reads / max(1, len(rows)),
                "hooks_ok": sum(1 for row in sent if row[2] == 200),
                "hooks_other": sum(1 for row in sent if row[2] != 200),
                "creates": len(rows),
            }

        fw, fp = figures(w), figures(p)
        creates = provider.creates()
    finally:
        for proc in procs.values():
            stop_process(proc)
        for stop in reversed(stack):
            stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    table = [
        ("", "W: provider webhooks", "P: polling alone"),
        ("jobs completed", f"{fw['completed']} / {n}", f"{fp['completed']} / {n}"),
        ("callbacks arrived", f"{fw['callbacks']} ({fw['delivered']} delivered)", f"{fp['callbacks']}"),
        ("finish -> completed p50/p95/max", stats(fw["to_completed"]), stats(fp["to_completed"])),
        ("finish -> callback p50/p95/max", stats(fw["to_callback"]), stats(fp["to_callback"])),
        ("  of which finish -> webhook answered", stats(fw["to_answered"]), "-"),
        ("  of which completed -> callback", stats(fw["handover"]), stats(fp["handover"])),
        ("webhooks 200 / other answers", f"{fw['hooks_ok']} / {fw['hooks_other']}", f"{fp['hooks_ok']} (none sent)"),
        ("provider status reads per job", f"{fw['reads']:.2f}", f"{fp['reads']:.2f}"),
    ]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    print()
    print(
        f"{n} {args.provider} jobs per phase; poll floor {args.floor:g} s; provider jobs finish "
        f"{args.min_wait:g}-{args.min_wait + args.spread:g} s after creation (seed {args.seed}); "
        f"{creates} provider jobs created for {2 * n} jobs; Q_WORKERS={args.workers}, {os.cpu_count()} CPUs"
    )
    for row in table:
        print("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
    if fw["to_callback"] and fp["to_callback"]:
        w95, p95 = percentile(fw["to_callback"], 95), percentile(fp["to_callback"], 95)
        print(
            f"goals: webhooks p95 {w95:.2f} s (goal <= 1 s: {'met' if w95 <= 1 else 'NOT met'}); polling p95 "
            f"{p95:.2f} s (goal <= floor + 1 = {args.floor + 1:g} s: {'met' if p95 <= args.floor + 1 else 'NOT met'}); "
            f"ratio p50 polling/webhooks {percentile(fp['to_callback'], 50) / percentile(fw['to_callback'], 50):.1f}x"
        )
    for label, info in (("W", w), ("P", p)):
        for line in info["refused"][:3]:
            print(f"phase {label} refused: {line}")
    load_end = os.getloadavg()
    print(
        f"load average (1/5/15 min) at the start {' '.join(f'{v:.2f}' for v in load_start)}, "
        f"at the end {' '.join(f'{v:.2f}' for v in load_end)}; total wall time {time.monotonic() - wall_start:.0f} s"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
