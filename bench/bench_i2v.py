"""The original I2V API's flow under load: Pika jobs (CLIP, then Pika) next to Stability jobs.

Run from the repository root::

    .venv/bin/python bench/bench_i2v.py [--jobs 200] [--floor 2] [--spread 40]

Everything runs on 127.0.0.1 in a throwaway directory (its own SQLite file,
media and scratch folders). In this process: the fakes of tests/fakes (an
image host, Replicate, Pika, Stability and the G.A.M.E callback receiver),
with finish times scripted per job. As subprocesses: a real ``manage.py
runworker`` (the supervised django-q2 cluster, ``--workers``) and a real
``manage.py runsweeper``, with the project's default sweep interval, leases
and grace, and every poll floor (``REPLICATE_POLL_INTERVAL``,
``PIKA_POLL_INTERVAL``, ``STABILITY_POLL_INTERVAL``) set to ``--floor``.

Phase A: ``--jobs`` requests to ``POST /api/v1/i2v`` (the Django test client in
this process, a real API key, one image URL per request), so each job first
has its prompt written by the CLIP fake (ready ``--clip-min``..``--clip-max`` s
after its prediction is created), then is submitted to the Pika fake (ready
``--min-wait``..``--min-wait + --spread`` s after its submit, seeded). Per job:
the CLIP stage's latency (CLIP result ready -> Pika submit arrives), and the
time from the Pika result being ready to the callback's arrival at the
receiver.

Phase B: as many requests to the same endpoint with the Pika token cleared in
this process, so ``I2V_COMPAT_PROVIDER=stability`` picks Stability: one stage,
the same waits (by index) after the submit, and a callback too. Per job: the
Stability result ready -> ``completed`` and -> callback arrival.

Both phases share the worker and the sweeper; the CPU of each phase is read
from /proc between the phases (start-up excluded) and divided by the jobs.
Bounded: each phase gives up after ``--deadline`` s (default: auto). Logs are
kept in bench/out/. A default run takes about four minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inflight import (
    OUT,
    configure_environment,
    log_excerpt,
    percentile,
    poll_gaps,
    process_table,
    session_cpu,
    setup_django,
    start_process,
    stop_process,
)

# --- timed fakes: results ready at scripted moments, not after N polls ------------------


def timed_fakes():
    """The fake classes, with finish times by the clock (imported late: tests.* needs the path)."""
    from tests.fakes.callback_receiver import FakeCallbackReceiver
    from tests.fakes.pika_server import FakePikaServer
    from tests.fakes.replicate_server import FakeReplicateServer

    class StampedJobs(dict):
        """Pika's job table, calling ``on_new(id)`` when a job is first stored (its submit)."""

        def __init__(self, on_new: Callable[[str], None]) -> None:
            super().__init__()
            self.on_new = on_new

        def __setitem__(self, key, value) -> None:
            if key not in self:
                self.on_new(key)
            super().__setitem__(key, value)

    class TimedPika(FakePikaServer):
        """A Pika fake whose job is "finished" from ``wait(index)`` s after its submit."""

        def __init__(self, token: str, wait: Callable[[int], float]) -> None:
            super().__init__(token)
            self.wait = wait
            self.submitted_at: dict[str, float] = {}
            self.ready_at: dict[str, float] = {}
            self.jobs = StampedJobs(self._stamp)
            self.looks: list[SimpleNamespace] = []  # every poll: (time, path), as poll_gaps reads them

        def _stamp(self, job_id: str) -> None:
            now = time.time()
            self.submitted_at[job_id] = now
            self.ready_at[job_id] = now + self.wait(len(self.submitted_at) - 1)

        def job_status(self, job) -> str:
            self.looks.append(SimpleNamespace(time=time.time(), path=f"/jobs/{job.id}"))
            if job.failed_with:
                return job.failed_with
            return "finished" if time.time() >= self.ready_at[job.id] else "pending"

    class TimedReplicate(FakeReplicateServer):
        """A Replicate fake whose prediction succeeds from ``wait(index)`` s after its creation."""

        def __init__(self, token: str, wait: Callable[[int], float]) -> None:
            super().__init__(token)
            self.wait = wait
            self.ready_at: dict[str, float] = {}
            self.looks: list[SimpleNamespace] = []

        def new_prediction(self, model, version, inputs, webhook=None):
            prediction = super().new_prediction(model, version, inputs, webhook)
            with self.lock:
                self.ready_at[prediction.id] = time.time() + self.wait(len(self.ready_at))
            return prediction

        def advance(self, prediction) -> None:
            self.looks.append(SimpleNamespace(time=time.time(), path=f"/v1/predictions/{prediction.id}"))
            if time.time() < self.ready_at[prediction.id]:
                with self.lock:
                    if prediction.status in ("starting", "processing"):
                        prediction.status = "processing"
                        prediction.polls += 1
                return
            with self.lock:  # due: the next look finishes it
                prediction.polls = max(prediction.polls, self.script.finish_after_polls - 1)
            super().advance(prediction)

    class TimedReceiver(FakeCallbackReceiver):
        """The callback receiver, noting when each request arrived."""

        def __init__(self) -> None:
            super().__init__()
            self.arrivals: list[tuple[float, str]] = []

        def _handle(self, handler) -> None:
            self.arrivals.append((time.time(), handler.path))
            super()._handle(handler)

    return TimedPika, TimedReplicate, TimedReceiver


# --- processes ------------------------------------------------------------------------


def child_sessions(parent: int) -> set[int]:
    """Pids of the parent's children: the supervisor's only child is the cluster,
    which leads a session of its own (``start_new_session``)."""
    try:
        return {int(pid) for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()}
    except (FileNotFoundError, ProcessLookupError):
        return set()


class CpuMeter:
    """CPU seconds of the worker (supervisor + cluster sessions) and of the sweeper."""

    def __init__(self, worker_pid: int, sweeper_pid: int) -> None:
        self.worker_pid, self.sweeper_pid = worker_pid, sweeper_pid
        self.cluster_sessions: set[int] = set()

    def read(self) -> dict[str, float]:
        self.cluster_sessions |= child_sessions(self.worker_pid)
        totals = session_cpu(process_table({self.worker_pid, self.sweeper_pid, *self.cluster_sessions}))
        worker = sum(cpu for sid, (_, cpu) in totals.items() if sid != self.sweeper_pid)
        return {"worker": worker, "sweeper": totals.get(self.sweeper_pid, (0, 0.0))[1]}

    def processes(self) -> int:
        return sum(count for count, _ in session_cpu(process_table(self.cluster_sessions)).values())


def check_alive(procs: dict) -> None:
    for name, proc in procs.items():
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see its log in {OUT}")


def wait_for_startup(procs: dict, meter: CpuMeter, workers: int) -> None:
    """Until the cluster has forked its workers and the CPU of the trees is quiet (a second
    with less than 50 ms spent), for at most 90 s."""
    readings = [sum(meter.read().values())]
    for _ in range(90):
        time.sleep(1.0)
        check_alive(procs)
        readings.append(sum(meter.read().values()))
        if meter.processes() >= workers + 2 and readings[-1] - readings[-2] < 0.05:
            return
    raise RuntimeError("the worker cluster did not start within 90 s")


# --- the benchmark -------------------------------------------------------------------


# (flag, type, default, help)
OPTIONS = [
    ("--jobs", int, 200, "jobs in flight per phase (default 200)"),
    ("--floor", float, 2.0, "every poll floor, in seconds (default 2; the real ones are 2 to 10)"),
    ("--clip-min", float, 2.0, "CLIP ready at least this many s after its prediction is made (default 2)"),
    ("--clip-max", float, 6.0, "and at most this many s (default 6)"),
    ("--min-wait", float, 20.0, "the video ready at least this many s after its submit (default 20)"),
    ("--spread", float, 40.0, "plus up to this many s (default 40)"),
    ("--workers", int, 2, "Q_WORKERS of the cluster (default 2)"),
    ("--seed", int, 1, "seed of the waits (default 1)"),
    ("--deadline", float, 0.0, "give up a phase after this many s (default: enough for the waits)"),
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
    if args.jobs < 1 or args.floor <= 0 or args.spread < 0 or args.min_wait < 0 or args.clip_max < args.clip_min:
        raise SystemExit("--jobs >= 1, --floor > 0, --spread, --min-wait >= 0 and --clip-max >= --clip-min")
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="i2v-bench-i2v-"))
    n = args.jobs
    rng = random.Random(args.seed)
    video_waits = [args.min_wait + rng.random() * args.spread for _ in range(n)]
    clip_waits = [args.clip_min + rng.random() * (args.clip_max - args.clip_min) for _ in range(n)]
    deadline_s = args.deadline or (args.clip_max + args.min_wait + args.spread + 20 * args.floor + 240)
    wall_start = time.monotonic()
    load_start = os.getloadavg()
    procs: dict = {}
    stack = []
    try:
        from tests.fakes import stability_server
        from tests.fakes.image_server import ImageServer
        from tests.fakes.stability_server import FakeStabilityServer

        TimedPika, TimedReplicate, TimedReceiver = timed_fakes()
        stability_server._Handler.disable_nagle_algorithm = True
        from PIL import Image

        png = io.BytesIO()
        Image.new("RGB", (1024, 576), (200, 90, 40)).save(png, "PNG")
        images = ImageServer(png.getvalue()).__enter__()
        stack.append(lambda: images.__exit__(None, None, None))
        pika = TimedPika("pika-bench-" + secrets.token_hex(6), lambda i: video_waits[i % n]).__enter__()
        stack.append(lambda: pika.__exit__(None, None, None))
        replicate = TimedReplicate("r8_bench" + secrets.token_hex(6), lambda i: clip_waits[i % n]).__enter__()
        stack.append(lambda: replicate.__exit__(None, None, None))
        receiver = TimedReceiver().start()
        stack.append(receiver.stop)
        stab = FakeStabilityServer(api_key="sk-bench-" + secrets.token_hex(8)).start()
        stack.append(stab.stop)
        stab.script.min_interval = args.floor
        stab.script.finish_at = lambda index: time.time() + video_waits[index % n]

        configure_environment(tmp, args.floor, args.workers, stab.api_key)
        os.environ.update(
            {
                "STABILITY_BASE_URL": stab.base_url,
                "PIKAPI_BASE_URL": pika.base_url,
                "PIKAPI_BEARER_TOKEN": pika.token,
                "PIKA_POLL_INTERVAL": f"{args.floor:g}",
                "REPLICATE_BASE_URL": replicate.base_url,
                "REPLICATE_API_TOKEN": replicate.token,
                "REPLICATE_POLL_INTERVAL": f"{args.floor:g}",
                "CALLBACK_API_URL": f"{receiver.base_url}/requests",
                "GAME_API_KEY": "game-bench-key",
                "I2V_COMPAT_PROVIDER": "stability",
                "SAFE_FETCH_ALLOW": ",".join(
                    [images.address, pika.address, replicate.address, receiver.address, stab.base_url[7:]]
                ),
                "API_RATE": "100000/minute",
            }
        )
        warnings.filterwarnings("ignore", message="No directory at")  # whitenoise: no collected static here
        setup_django()

        from django.conf import settings
        from django.core.management import call_command
        from django_q.conf import Conf

        from jobs.models import CallbackDelivery, Job, JobEvent
        from tests.api_helpers import key_client

        Conf.SYNC = False  # enqueue through the real ORM broker
        logging.getLogger("django-q").setLevel(logging.WARNING)
        call_command("migrate", verbosity=0, interactive=False)
        client = key_client()
        from jobs import ledger

        ledger.grant(user=client.user, amount=n * 1000, reason="benchmark")

        logs = {"worker": OUT / "i2v-worker.log", "sweeper": OUT / "i2v-sweeper.log"}
        worker_log, sweeper_log = logs["worker"], logs["sweeper"]
        print(f"{n} jobs per phase, every poll floor {args.floor:g} s, Q_WORKERS={args.workers}", flush=True)
        for name, command in (("worker", "runworker"), ("sweeper", "runsweeper")):
            logs[name].write_text("")  # this run's lines only
            procs[name] = start_process(command, logs[name])
        meter = CpuMeter(procs["worker"].pid, procs["sweeper"].pid)
        wait_for_startup(procs, meter, args.workers)
        startup = meter.read()
        print(f"  started: start-up CPU {sum(startup.values()):.2f} s", flush=True)

        def phase(name: str, prefix: str) -> dict:
            """Send n requests, wait for every job to end and its callback to arrive."""
            t0 = time.time()
            refused = []
            for i in range(n):
                response = client.post(
                    "/api/v1/i2v",
                    {"image_id": f"{images.base_url}/{prefix}/{i}.png"},
                    format="json",
                    HTTP_X_REQUEST_ID=f"{prefix}-{i}",
                    HTTP_HOST="127.0.0.1",  # an allowed host; links in callbacks start with it
                )
                if response.status_code != 200:
                    refused.append(f"{response.status_code} {response.content[:200]!r}")
            created_in = time.time() - t0
            print(f"  {name}: {n} requests answered in {created_in:.1f} s ({len(refused)} refused)", flush=True)
            if len(refused) == n:
                raise RuntimeError(f"{name}: every request was refused, e.g. {refused[0]}")
            ids = list(Job.objects.filter(request_id__startswith=f"{prefix}-").values_list("pk", flat=True))
            next_report, pending, missing = time.time() + 15, len(ids), n
            while time.time() < t0 + deadline_s:
                check_alive(procs)
                pending = Job.objects.filter(pk__in=ids).exclude(status__in=Job.FINAL_STATES).count()
                arrived = {path for _, path in receiver.arrivals if path.startswith(f"/requests/{prefix}-")}
                missing = len(ids) - len(arrived)
                if pending == 0 and missing <= 0:
                    break
                if time.time() >= next_report:
                    print(
                        f"  t+{time.time() - t0:4.0f} s: {pending} in flight, {missing} callbacks to come", flush=True
                    )
                    next_report += 15
                time.sleep(0.25)
            wall = time.time() - t0
            cpu = meter.read()
            print(f"  {name}: done after {wall:.1f} s ({pending} not final, {missing} callbacks missing)", flush=True)
            return {"t0": t0, "wall": wall, "cpu": cpu, "ids": ids, "refused": refused, "created_in": created_in}

        a = phase("phase A (CLIP then Pika)", "a")
        settings.PIKAPI_BEARER_TOKEN = ""  # this process only: the endpoint now picks I2V_COMPAT_PROVIDER
        b = phase("phase B (Stability)", "b")
        for proc in procs.values():
            stop_process(proc)

        # --- figures ------------------------------------------------------------------
        first_arrival: dict[str, float] = {}
        arrivals_per: dict[str, int] = {}
        for at, path in receiver.arrivals:
            rid = path.removeprefix("/requests/").removesuffix("/callback")
            first_arrival.setdefault(rid, at)
            arrivals_per[rid] = arrivals_per.get(rid, 0) + 1
        completed_at: dict = {}
        events = JobEvent.objects.filter(to_status=Job.COMPLETED).exclude(from_status=Job.COMPLETED)
        for job_id, at in events.values_list("job_id", "at"):
            completed_at.setdefault(job_id, []).append(at.timestamp())
        stab_timings = {t["id"]: t for t in stab.timings()}

        def figures(info: dict, video_ready: Callable[[str], float | None]) -> dict:
            rows = list(
                Job.objects.filter(pk__in=info["ids"]).values(
                    "pk", "request_id", "status", "provider_job_id", "prompt_job_id", "error_code", "error_message"
                )
            )
            to_callback, to_completed, clip, statuses, handover = [], [], [], {}, []
            for row in rows:
                statuses[row["status"]] = statuses.get(row["status"], 0) + 1
                ready = video_ready(row["provider_job_id"])
                if ready is None:
                    continue
                if row["request_id"] in first_arrival:
                    to_callback.append(first_arrival[row["request_id"]] - ready)
                if row["pk"] in completed_at:
                    to_completed.append(min(completed_at[row["pk"]]) - ready)
                    if row["request_id"] in first_arrival:
                        handover.append(first_arrival[row["request_id"]] - min(completed_at[row["pk"]]))
                clip_ready = replicate.ready_at.get(row["prompt_job_id"])
                if clip_ready is not None and row["provider_job_id"] in pika.submitted_at:
                    clip.append(pika.submitted_at[row["provider_job_id"]] - clip_ready)
            rids = [row["request_id"] for row in rows]
            deliveries = CallbackDelivery.objects.filter(job_id__in=info["ids"])
            return {
                "rows": rows,
                "statuses": statuses,
                "to_callback": to_callback,
                "to_completed": to_completed,
                "clip": clip,
                "handover": handover,
                "callbacks": sum(1 for rid in rids if rid in first_arrival),
                "extra_callbacks": sum(arrivals_per.get(rid, 0) - 1 for rid in rids if rid in arrivals_per),
                "delivered": deliveries.filter(status=CallbackDelivery.DELIVERED).count(),
                "twice_completed": sum(1 for pk in info["ids"] if len(completed_at.get(pk, [])) > 1),
                "cpu": {k: info["cpu"][k] - info["cpu_before"][k] for k in info["cpu"]},
            }

        a["cpu_before"], b["cpu_before"] = startup, a["cpu"]
        fa = figures(a, lambda pid: pika.ready_at.get(pid))
        fb = figures(b, lambda pid: (stab_timings.get(pid) or {}).get("finished_at"))
        clip_preds = replicate.created("clip")
        clip_gets = len(replicate.calls("GET", "/v1/predictions/"))
        pika_submits = len(pika.submitted_at)
        pika_polls = sum(job.polls for job in pika.jobs.values())
        stab_submits = len(stab.jobs)
        stab_polls = sum(t["polls"] for t in stab_timings.values())
        gaps = {
            "clip": poll_gaps(replicate.looks, set(replicate.ready_at)),
            "pika": poll_gaps(pika.looks, set(pika.ready_at)),
            "stability": poll_gaps(stab.polls, set(stab_timings)),
        }
        stab_violations = sum(t["floor_violations"] for t in stab_timings.values())
    finally:
        for proc in procs.values():
            stop_process(proc)
        for stop in reversed(stack):
            stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    # --- report ----------------------------------------------------------------------
    def cpu_cell(f: dict) -> str:
        total = sum(f["cpu"].values())
        return f"{total * 1000 / n:.1f} ms ({f['cpu']['worker']:.1f} s worker + {f['cpu']['sweeper']:.1f} s sweeper)"

    def status_cell(f: dict) -> str:
        done = f["statuses"].get("completed", 0)
        failed = f["statuses"].get("failed", 0)
        return f"{done} / {failed} / {n - done - failed}"

    table = [
        ("", "I2V: CLIP then Pika", "Stability"),
        ("jobs completed / failed / other", status_cell(fa), status_cell(fb)),
        (
            "callbacks arrived (+ repeats)",
            f"{fa['callbacks']} (+{fa['extra_callbacks']})",
            f"{fb['callbacks']} (+{fb['extra_callbacks']})",
        ),
        ("CLIP ready -> Pika submit p50/p95/max", stats(fa["clip"]), "-"),
        ("video ready -> completed p50/p95/max", stats(fa["to_completed"]), stats(fb["to_completed"])),
        ("video ready -> callback p50/p95/max", stats(fa["to_callback"]), stats(fb["to_callback"])),
        ("completed -> callback p50/p95/max", stats(fa["handover"]), stats(fb["handover"])),
        ("submits to the provider", f"{len(clip_preds)} CLIP + {pika_submits} Pika", str(stab_submits)),
        ("provider polls per job", f"{clip_gets / n:.2f} CLIP + {pika_polls / n:.2f} Pika", f"{stab_polls / n:.2f}"),
        (
            "gap between polls of a job p50/p95",
            f"{percentile(gaps['clip'], 50):.2f}/{percentile(gaps['clip'], 95):.2f} s CLIP, "
            f"{percentile(gaps['pika'], 50):.2f}/{percentile(gaps['pika'], 95):.2f} s Pika",
            f"{percentile(gaps['stability'], 50):.2f}/{percentile(gaps['stability'], 95):.2f} s",
        ),
        ("worker + sweeper CPU per job", cpu_cell(fa), cpu_cell(fb)),
        ("requests answered in", f"{a['created_in']:.1f} s", f"{b['created_in']:.1f} s"),
        ("wall time of the phase", f"{a['wall']:.1f} s", f"{b['wall']:.1f} s"),
    ]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    print()
    print(
        f"{n} jobs per phase; poll floors: CLIP (REPLICATE_POLL_INTERVAL) {args.floor:g} s, Pika (PIKA_POLL_INTERVAL) "
        f"{args.floor:g} s, Stability (STABILITY_POLL_INTERVAL, enforced by its fake) {args.floor:g} s; sweep every "
        f"{settings.SWEEP_INTERVAL:g} s; CLIP ready {args.clip_min:g}-{args.clip_max:g} s after its prediction, "
        f"video {args.min_wait:g}-{args.min_wait + args.spread:g} s after its submit (seed {args.seed}); "
        f"Q_WORKERS={args.workers}, {os.cpu_count()} CPUs"
    )
    for row in table:
        print("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
    print(
        f"delivered CallbackDelivery rows: {fa['delivered']} (A), {fb['delivered']} (B); completed twice: "
        f"{fa['twice_completed']} (A), {fb['twice_completed']} (B); Stability floor violations (429): {stab_violations}"
    )
    for label, info, f in (("A", a, fa), ("B", b, fb)):
        for line in info["refused"][:3]:
            print(f"phase {label} refused: {line}")
        for row in [r for r in f["rows"] if r["status"] != "completed"][:5]:
            print(
                f"phase {label} not completed: {row['request_id']} {row['status']} {row['error_code']}: "
                f"{row['error_message'][:200]}"
            )
    load_end = os.getloadavg()
    print(
        f"load average (1/5/15 min) at the start {' '.join(f'{v:.2f}' for v in load_start)}, "
        f"at the end {' '.join(f'{v:.2f}' for v in load_end)}"
    )
    print(f"total wall time {time.monotonic() - wall_start:.0f} s; logs: {worker_log}, {sweeper_log}")
    for name, path in (("worker", worker_log), ("sweeper", sweeper_log)):
        counts, lines = log_excerpt(path)
        found = {marker: count for marker, count in counts.items() if count}
        print(f"{name} log: " + (", ".join(f"{m} x{c}" for m, c in found.items()) if found else "clean"))
        for line in lines[:10]:
            print("    " + line[:300])
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
