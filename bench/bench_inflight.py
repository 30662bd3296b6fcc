"""Many Stability jobs in flight at once: our queue + sweeper against an ideal poller.

Run from the repository root::

    .venv/bin/python bench/bench_inflight.py [--scale] [--jobs 1000] [--floor 10] [--min-wait 60] [--spread 40]

(``make bench-inflight`` and ``make bench-inflight-scale``: issue 13's figure,
1,000 jobs in flight at Stability's 10 s floor, on SQLite and the ORM broker,
and with ``--scale`` on PostgreSQL and django-q2's Redis broker.)

Everything runs on 127.0.0.1 in a throwaway directory: its own SQLite file
(with ``--scale``, a throwaway database on the local PostgreSQL and db 5 of
the local Redis), media and scratch folders, and the fake Stability server
(tests/fakes) in this process. The fake refuses (429) any poll of a job sooner than ``--floor``
seconds after the last one, and job ``i`` becomes ready at a scripted time,
uniformly random (seeded) between ``--min-wait`` and ``--min-wait +
--spread`` seconds after the start of the phase.

Phase 1, ours: a real ``manage.py qcluster`` (``--workers``, default 2) and a
real ``manage.py runsweeper`` are started as subprocesses with the project's
default settings (sweep every ``SWEEP_INTERVAL`` s, leases, grace), the poll
floor set to ``--floor`` (``STABILITY_POLL_INTERVAL``), then ``--jobs``
stability jobs are created through ``create_job`` and enqueued on the ORM
broker, as the web page does. When every job is final the figures are read:
completion latency (the job's ``completed`` JobEvent minus the moment the
fake made its result ready), the fake's own fetch latency (first 200 with the
video minus ready), result GETs per job, floor violations, and the CPU time of
every process of the cluster and of the sweeper (``/proc``, start-up
excluded). The tracking window is the stretch from the last submit to the
first finish (``--min-wait`` s after the start): every job in flight, none
ready, so what the processes spend in it is the cost of tracking alone; the
ideal poller's CPU is read over the same window of its phase.

Phase 2, the ideal poller: a fresh batch of the same number of jobs on the
same fake, with the same finish times relative to the phase start and the
same submit times as phase 1 (replayed), polled by a plain thread pool in a
child process with no database and no queue, each job exactly ``--floor`` s
after the answer to its previous poll, through the same provider client
(``StabilityProvider().poll``, which streams the MP4 to a file and checks it).
Ratios between the phases hold on a noisy machine better than absolute times
do; the load average at the start and the end is printed with the figures.

The fake runs with TCP_NODELAY (``--fake-nagle`` leaves Nagle on, as the
fake ships: every small answer then waits ~40 ms for a delayed ACK).

A default run takes about five minutes on 2 cores. ``--floor 2`` (5x
Stability's real poll rate) is the earlier figure's configuration, with
``--jobs 500 --min-wait 20``. Cluster, sweeper and ideal-poller
logs are kept in bench/out/.
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import os
import queue
import random
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUT = ROOT / "bench" / "out"
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOG_MARKERS = ("ERROR", "CRITICAL", "Traceback", "WARNING", "Connection pool is full")


# --- small helpers ------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "i2v_site.settings")
    import django

    django.setup()


def process_table(session_ids: Iterable[int]) -> dict[int, tuple[int, float, float]]:
    """pid -> (session id, own CPU s, CPU s of its reaped children) for every
    live process in the given sessions.

    utime+stime is a process's own time; cutime+cstime holds only children that
    exited and were reaped, so adding both over the live processes of a tree
    counts every process once (django-q2 recycles its workers: their CPU ends
    up in their parent's c-times).
    """
    wanted = set(session_ids)
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        rest = raw[raw.rindex(")") + 2 :].split()
        session = int(rest[3])
        if session not in wanted:
            continue
        own = (int(rest[11]) + int(rest[12])) / CLK_TCK
        reaped = (int(rest[13]) + int(rest[14])) / CLK_TCK
        table[int(entry.name)] = (session, own, reaped)
    return table


def session_cpu(table: dict[int, tuple[int, float, float]]) -> dict[int, tuple[int, float]]:
    """Per session id: (live processes, CPU seconds) from a process table."""
    totals: dict[int, tuple[int, float]] = {}
    for session, own, reaped in table.values():
        count, cpu = totals.get(session, (0, 0.0))
        totals[session] = (count + 1, cpu + own + reaped)
    return totals


def cpu_by_name(sessions: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process tree (by session id)."""
    table = session_cpu(process_table(sessions.values()))
    return {name: table[sid][1] for name, sid in sessions.items() if sid in table}


def cluster_roles(log: Path, main_pid: int) -> dict[int, str]:
    """pid -> role of the qcluster processes, from django-q's start-up lines."""
    roles = {main_pid: "main"}
    markers = {"ready for work at ": "workers", "monitoring at ": "monitor", "pushing tasks at ": "pusher"}
    if log.exists():
        for line in log.open(errors="replace"):
            for marker, role in markers.items():
                if marker in line:
                    pid = line.rsplit(marker, 1)[1].split()[0]
                    if pid.isdigit():
                        roles[int(pid)] = role
    return roles


def cpu_by_role(
    start: dict[int, tuple[int, float, float]], end: dict[int, tuple[int, float, float]], session: int, log: Path
) -> dict[str, float]:
    """CPU seconds spent between two process tables by each role in the cluster."""
    roles = cluster_roles(log, session)
    spent: dict[str, float] = {}
    for pid, (sid, own, reaped) in end.items():
        if sid != session:
            continue
        _, own0, reaped0 = start.get(pid, (sid, 0.0, 0.0))
        role = roles.get(pid, "sentinel")
        spent[role] = spent.get(role, 0.0) + own - own0
        if reaped - reaped0 > 0:
            # The sentinel reaps recycled workers.
            key = "recycled workers" if role == "sentinel" else f"{role} children"
            spent[key] = spent.get(key, 0.0) + reaped - reaped0
    return spent


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a subprocess's whole session (it was started with start_new_session)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(8)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(8)
    except ProcessLookupError:
        pass
    # Stray members of the session (a worker that outlived its parent).
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def log_excerpt(path: Path, limit: int = 40) -> tuple[dict[str, int], list[str]]:
    """Counts of worrying markers in a log and the first lines that carry one."""
    counts = dict.fromkeys(LOG_MARKERS, 0)
    lines: list[str] = []
    if not path.exists():
        return counts, lines
    with path.open(errors="replace") as handle:
        for line in handle:
            hit = False
            for marker in LOG_MARKERS:
                if marker in line:
                    counts[marker] += 1
                    hit = True
            if hit and len(lines) < limit:
                lines.append(line.rstrip())
    return counts, lines


def poll_gaps(requests, ids: set[str]) -> list[float]:
    """Seconds between consecutive result GETs of the same job, over the jobs in ``ids``."""
    last: dict[str, float] = {}
    gaps = []
    for record in sorted(requests, key=lambda r: r.time):
        job_id = record.path.rsplit("/", 1)[-1]
        if job_id not in ids:
            continue
        if job_id in last:
            gaps.append(record.time - last[job_id])
        last[job_id] = record.time
    return gaps


def peak_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """Most intervals open at one instant."""
    edges = []
    for start, end in intervals:
        edges.append((start, 1))
        edges.append((end, -1))
    edges.sort(key=lambda edge: (edge[0], edge[1]))
    peak = current = 0
    for _, delta in edges:
        current += delta
        peak = max(peak, current)
    return peak


# --- the ideal poller (child process) ----------------------------------------------


def ideal_child(spec_path: str) -> None:
    """Poll the jobs listed in the spec, each exactly ``floor`` s after its last poll.

    No database, no queue: a heap of due times and a thread pool calling
    ``StabilityProvider().poll``. Writes per-job fetch times and this process's
    CPU time to ``spec["out"]``.
    """
    spec = json.loads(Path(spec_path).read_text())
    setup_django()
    from providers.base import PollContext, ProviderError
    from providers.stability import StabilityProvider

    provider = StabilityProvider()
    floor = float(spec["floor"])
    work = Path(spec["work"])
    jobs = spec["jobs"]
    deadline = float(spec["deadline"])
    results = [
        {"id": job["id"], "fetched_at": None, "polls": 0, "retries": 0, "failed": "", "errors": []} for job in jobs
    ]
    done: queue.SimpleQueue = queue.SimpleQueue()

    def poll_one(index: int) -> None:
        folder = work / str(index)
        context = PollContext(video_path=folder / "video.mp4", poster_path=folder / "poster.jpg")
        started = time.time()
        try:
            state = provider.poll(jobs[index]["id"], context)
        except ProviderError as exc:
            done.put((index, started, time.time(), "retry", exc.retry_after, f"{exc.code}: {exc.detail[:200]}"))
            return
        except Exception as exc:  # anything else is a bug worth seeing, not a hang
            done.put((index, started, time.time(), "retry", None, f"{type(exc).__name__}: {exc}"))
            return
        finished = time.time()
        if state.state == "succeeded":
            shutil.rmtree(folder, ignore_errors=True)
        done.put((index, started, finished, state.state, None, state.error_detail or ""))

    heap = [(float(job["first_poll"]), index) for index, job in enumerate(jobs)]
    heapq.heapify(heap)
    outstanding = 0
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    with ThreadPoolExecutor(max_workers=int(spec["threads"])) as pool:
        while (heap or outstanding) and time.time() < deadline:
            wait = 0.05 if not heap else max(0.0, min(0.05, heap[0][0] - time.time()))
            try:
                item = done.get(timeout=wait) if wait > 0 else done.get_nowait()
            except queue.Empty:
                item = None
            while item is not None:
                outstanding -= 1
                index, started, finished, state, retry_after, detail = item
                result = results[index]
                result["polls"] += 1
                if state == "succeeded":
                    result["fetched_at"] = finished
                elif state == "running":
                    # From the answer, not the request: the fake timestamps a
                    # poll when it reads it, so this never lands under the floor.
                    heapq.heappush(heap, (finished + floor, index))
                elif state == "retry":
                    result["retries"] += 1
                    if len(result["errors"]) < 3:
                        result["errors"].append(detail)
                    heapq.heappush(heap, (max(started + floor, finished + (retry_after or floor)), index))
                else:
                    result["failed"] = f"{state}: {detail}"
                try:
                    item = done.get_nowait()
                except queue.Empty:
                    item = None
            now = time.time()
            while heap and heap[0][0] <= now:
                _, index = heapq.heappop(heap)
                outstanding += 1
                pool.submit(poll_one, index)
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_end.ru_utime - cpu_start.ru_utime) + (cpu_end.ru_stime - cpu_start.ru_stime)
    Path(spec["out"]).write_text(json.dumps({"jobs": results, "cpu_seconds": cpu, "unfinished": len(heap)}))


# --- the benchmark -----------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs in flight (default 1000)")
    parser.add_argument("--floor", type=float, default=10.0, help="poll floor in seconds (default 10, Stability's)")
    parser.add_argument("--min-wait", type=float, default=60.0, help="earliest finish, s after the start (default 60)")
    parser.add_argument("--spread", type=float, default=40.0, help="finish times spread over this many s (default 40)")
    parser.add_argument("--workers", type=int, default=2, help="Q_WORKERS for the qcluster (default 2)")
    parser.add_argument("--threads", type=int, default=64, help="threads of the ideal poller (default 64)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the finish times (default 1)")
    parser.add_argument("--deadline", type=float, default=0.0, help="give up a phase after this many s (default auto)")
    parser.add_argument(
        "--fake-nagle", action="store_true", help="leave Nagle on in the fake server (~40 ms per small answer)"
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="PostgreSQL (a throwaway database on 127.0.0.1:5432) and django-q2's Redis broker "
        "(127.0.0.1:6379, db 5) instead of SQLite and the ORM broker",
    )
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=None,
        help="with --scale: keep database connections this many seconds (the DATABASE_URL's conn_max_age)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--ideal-child", metavar="SPEC", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


PG_SERVER = "postgres://postgres@127.0.0.1:5432"
REDIS_BROKER = "redis://127.0.0.1:6379/5"


def scale_database(create: bool) -> str:
    """A throwaway PostgreSQL database for --scale (made, or dropped)."""
    import psycopg

    name = f"i2v_bench_inflight_{os.getpid()}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if create:
            conn.execute(f"CREATE DATABASE {name}")
    return f"{PG_SERVER}/{name}"


def kept_connections(seconds: int | None) -> str:
    return "" if seconds is None else f"?conn_max_age={seconds}&conn_health_checks=true"


def empty_redis_broker() -> None:
    import redis

    redis.Redis.from_url(REDIS_BROKER).flushdb()


def configure_environment(
    tmp: Path, floor: float, workers: int, api_key: str, scale: bool, conn_max_age: int | None = None
) -> None:
    """Everything settings read, set before django.setup() (and inherited by subprocesses)."""
    var = tmp / "var"
    var.mkdir()
    if scale:
        empty_redis_broker()
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "i2v_site.settings",
            "I2V_ENV_FILE": str(tmp / "none.env"),  # never the checkout's .env
            "DATABASE_URL": scale_database(create=True) + kept_connections(conn_max_age)
            if scale
            else f"sqlite:///{var / 'bench.sqlite3'}",
            "Q_BROKER_URL": REDIS_BROKER if scale else "",
            "I2V_VAR_DIR": str(var),
            "MEDIA_ROOT": str(tmp / "media"),
            "WORK_DIR": str(tmp / "work"),
            "SECRET_KEY": secrets.token_urlsafe(50),  # tasks are signed with it: one for all processes
            "Q_WORKERS": str(workers),
            "Q_SYNC": "false",
            "STABILITY_API_KEY": api_key,
            "STABILITY_POLL_INTERVAL": f"{floor:g}",
            "DEFAULT_PROVIDER": "stability",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )


def start_process(command: str, log: Path) -> subprocess.Popen:
    handle = log.open("a")
    try:
        return subprocess.Popen(
            [sys.executable, "manage.py", command],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own session: CPU accounting and one kill for the whole tree
        )
    finally:
        handle.close()


def run(args: argparse.Namespace) -> int:
    if args.jobs < 1 or args.floor <= 0 or args.spread < 0 or args.min_wait < 0:
        raise SystemExit("--jobs must be >= 1, --floor > 0, --spread and --min-wait >= 0")
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="i2v-bench-inflight-"))
    procs: dict[str, subprocess.Popen] = {}
    fake = None
    wall_start = time.monotonic()
    load_start = os.getloadavg()
    try:
        from tests.fakes import stability_server
        from tests.fakes.stability_server import FakeStabilityServer

        # http.server sends the headers and the body in two writes; with Nagle
        # on, the body of every small answer (each 202) waits for the client's
        # delayed ACK, ~40 ms here. Real servers set TCP_NODELAY: so does the
        # fake here, unless --fake-nagle asks for it as it ships.
        stability_server._Handler.disable_nagle_algorithm = not args.fake_nagle
        fake = FakeStabilityServer(api_key="sk-bench-" + secrets.token_hex(8)).start()
        fake.script.min_interval = args.floor
        configure_environment(tmp, args.floor, args.workers, fake.api_key, args.scale, args.conn_max_age)
        os.environ["STABILITY_BASE_URL"] = fake.base_url
        setup_django()

        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django_q.conf import Conf

        from jobs.creation import create_job, create_upload
        from jobs.models import Job, JobEvent
        from tests.factories import photo_bytes
        from tests.fakes.stability_server import sample_mp4

        Conf.SYNC = False  # enqueue through the real ORM broker
        logging.getLogger("django-q").setLevel(logging.WARNING)  # not a line per enqueue here
        call_command("migrate", verbosity=0, interactive=False)
        sample_mp4(1024, 576, fake.script.frames, fake.script.fps)  # made once, before anything is timed

        n = args.jobs
        rng = random.Random(args.seed)
        offsets = [args.min_wait + rng.random() * args.spread for _ in range(n)]
        deadline_s = args.deadline or (args.min_wait + args.spread + 20 * args.floor + 300)
        late_submits: list[int] = []
        phase = {"t0": 0.0}

        def finish_at(index: int) -> float:
            # Called by the fake at submit time; a job submitted after its
            # scripted time is ready at once (and counted).
            scripted = phase["t0"] + offsets[index % n]
            now = time.time()
            if now > scripted:
                late_submits.append(index)
                return now
            return scripted

        fake.script.finish_at = finish_at

        user = get_user_model().objects.create_user("bench", "bench@example.com", "bench-password")
        upload = create_upload(owner=user, source=photo_bytes(1200, 700), filename="photo.jpg")
        try:  # when jobs cost credits, give the bench user enough for every job
            from jobs import ledger
        except ImportError:
            ledger = None
        if ledger is not None and hasattr(ledger, "grant"):
            from providers.registry import provider_class

            ledger.grant(user=user, amount=n * max(int(provider_class("stability").cost), 1) * 2, reason="benchmark")

        # --- phase 1: ours ---------------------------------------------------------
        worker_log, sweeper_log = OUT / "inflight-qcluster.log", OUT / "inflight-sweeper.log"
        for log in (worker_log, sweeper_log):
            log.write_text("")
        print(
            f"phase 1: {n} jobs, floor {args.floor:g} s, ready {args.min_wait:g}-{args.min_wait + args.spread:g} s "
            f"after the start; qcluster Q_WORKERS={args.workers} + runsweeper; fake at {fake.base_url}",
            flush=True,
        )
        procs["qcluster"] = start_process("qcluster", worker_log)
        procs["sweeper"] = start_process("runsweeper", sweeper_log)
        sessions = {name: proc.pid for name, proc in procs.items()}
        # Wait for start-up: every worker process forked and the CPU of the tree quiet.
        ready_by = time.monotonic() + 60
        previous = -1.0
        while time.monotonic() < ready_by:
            time.sleep(1.0)
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode} during start-up")
            snapshot = session_cpu(process_table(sessions.values()))
            count = snapshot[sessions["qcluster"]][0]
            total = sum(cpu for _, cpu in snapshot.values())
            if count >= args.workers + 2 and total - previous < 0.05:
                break
            previous = total
        startup_table = process_table(sessions.values())
        startup = session_cpu(startup_table)
        startup_cpu = {name: startup[pid][1] for name, pid in sessions.items()}
        print(
            f"  started: qcluster {startup[sessions['qcluster']][0]} processes, "
            f"start-up CPU {sum(startup_cpu.values()):.2f} s",
            flush=True,
        )

        t0 = time.time()
        phase["t0"] = t0
        # Created side by side, as many web requests would: on PostgreSQL each
        # creation waits on its commits' disk flushes, and one at a time the
        # last jobs would reach the queue long after the first.
        from django.db import connection as db_connection

        def create(_: int):
            try:
                return create_job(owner=user, upload=upload, provider="stability", enqueue=True)
            finally:
                db_connection.close()

        if args.scale:
            with ThreadPoolExecutor(max_workers=8) as creators:
                jobs = list(creators.map(create, range(n)))
        else:  # SQLite has one writer: threads would only queue for it
            jobs = [create_job(owner=user, upload=upload, provider="stability", enqueue=True) for _ in range(n)]
        created_in = time.time() - t0
        job_ids = [job.pk for job in jobs]
        print(f"  {n} jobs created and enqueued in {created_in:.1f} s", flush=True)

        phase_deadline = t0 + deadline_s
        next_report = time.time() + 10
        pending = n
        # The tracking window: every job submitted, none ready yet. What the
        # processes spend in it is the cost of keeping jobs in flight alone.
        track: dict[str, float] = {}
        while time.time() < phase_deadline:
            now = time.time()
            if "start" not in track and len(fake.jobs) >= n:
                track["start"] = now
                track.update({f"{name} start": cpu for name, cpu in cpu_by_name(sessions).items()})
            if "start" in track and "end" not in track and now >= max(t0 + args.min_wait, track["start"] + 1.0):
                track["end"] = now
                track.update({f"{name} end": cpu for name, cpu in cpu_by_name(sessions).items()})
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}; see {worker_log} / {sweeper_log}")
            pending = Job.objects.filter(pk__in=job_ids).exclude(status__in=Job.FINAL_STATES).count()
            if pending == 0:
                break
            if time.time() >= next_report:
                print(f"  t+{time.time() - t0:5.0f} s: {n - pending} final, {pending} in flight", flush=True)
                next_report += 10
            time.sleep(0.25)
        ours_wall = time.time() - t0
        end_table = process_table(sessions.values())
        end = session_cpu(end_table)
        run_cpu = {name: end[pid][1] - startup_cpu[name] for name, pid in sessions.items()}
        cluster_split = cpu_by_role(startup_table, end_table, sessions["qcluster"], worker_log)
        for proc in procs.values():
            stop_process(proc)
        if pending:
            print(f"  DEADLINE: {pending} jobs still in flight after {deadline_s:.0f} s", flush=True)
        print(f"  all final after {ours_wall:.1f} s", flush=True)

        rows = list(
            Job.objects.filter(pk__in=job_ids).values(
                "pk", "status", "provider_job_id", "polls", "error_code", "error_message", "error_detail"
            )
        )
        completed_at: dict = {}
        for job_id, at in (
            JobEvent.objects.filter(job_id__in=job_ids, to_status=Job.COMPLETED)
            .exclude(from_status=Job.COMPLETED)
            .values_list("job_id", "at")
        ):
            completed_at.setdefault(job_id, []).append(at.timestamp())
        timings = {t["id"]: t for t in fake.timings()}
        ours_ids = {row["provider_job_id"] for row in rows if row["provider_job_id"]}
        submits_1 = len(fake.jobs)
        gets_1 = sum(1 for r in fake.polls if r.path.rsplit("/", 1)[-1] in ours_ids)
        ours_polls = list(fake.polls)
        ours_gaps = poll_gaps(ours_polls, ours_ids)
        status_counts: dict[str, int] = {}
        for row in rows:
            status_counts[row["status"]] = status_counts.get(row["status"], 0) + 1
        ours_latency, ours_fetch, ours_inflight = [], [], []
        for row in rows:
            timing = timings.get(row["provider_job_id"])
            if timing is None:
                continue
            if timing["first_fetched_at"] is not None:
                ours_inflight.append((timing["submitted_at"], timing["first_fetched_at"]))
            if timing["fetch_latency"] is not None:
                ours_fetch.append(timing["fetch_latency"])
            if row["status"] == Job.COMPLETED and row["pk"] in completed_at and timing["finished_at"] is not None:
                ours_latency.append(min(completed_at[row["pk"]]) - timing["finished_at"])
        twice_completed = sum(1 for times in completed_at.values() if len(times) > 1)
        ours_violations = sum(timings[i]["floor_violations"] for i in ours_ids if i in timings)
        ours_passed_polls = sum(timings[i]["polls"] for i in ours_ids if i in timings)
        last_submit = max((timings[i]["submitted_at"] for i in ours_ids if i in timings), default=t0) - t0
        failures = [row for row in rows if row["status"] != Job.COMPLETED][:5]

        # --- phase 2: the ideal poller ------------------------------------------------
        print(f"phase 2: ideal poller, {n} fresh jobs, same finish and submit times, {args.threads} threads")
        submit_offsets = []
        for job in fake.jobs[:n]:
            submit_offsets.append(max(0.0, job.submitted_at - t0))
        while len(submit_offsets) < n:  # only if phase 1 did not submit them all
            submit_offsets.append(created_in)
        fake.script.finish_at = None
        fake.script.never_finish = True  # finish times are set below, per job
        t1 = time.time() + 1.0
        ideal_jobs = []
        for k in range(n):
            job = fake.add_job(width=1024, height=576)
            with fake._lock:
                job.finish_at = t1 + offsets[k]
                job.submitted_at = t1 + submit_offsets[k]
            ideal_jobs.append({"id": job.id, "first_poll": t1 + submit_offsets[k] + args.floor})
        spec_path, result_path = tmp / "ideal.json", tmp / "ideal-result.json"
        spec_path.write_text(
            json.dumps(
                {
                    "floor": args.floor,
                    "jobs": ideal_jobs,
                    "threads": args.threads,
                    "work": str(tmp / "ideal-work"),
                    "out": str(result_path),
                    "deadline": t1 + deadline_s,
                }
            )
        )
        ideal_log = OUT / "inflight-ideal.log"
        with ideal_log.open("w") as handle:
            procs["ideal"] = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--ideal-child", str(spec_path)],
                cwd=ROOT,
                env=dict(os.environ),
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        ideal_track: dict[str, float] = {}
        if "start" in track:
            # The same window, relative to the phase's start, as phase 1's.
            window = (t1 + track["start"] - t0, t1 + args.min_wait)
            for key, at in zip(("start", "end"), window, strict=True):
                while procs["ideal"].poll() is None and time.time() < at:
                    time.sleep(0.05)
                ideal_track[key] = time.time()
                ideal_track[f"ideal {key}"] = cpu_by_name({"ideal": procs["ideal"].pid}).get("ideal", 0.0)
        code = procs["ideal"].wait(deadline_s + 120)
        ideal_wall = time.time() - t1
        if code != 0 or not result_path.exists():
            raise RuntimeError(f"ideal poller exited with {code}; see {ideal_log}")
        ideal = json.loads(result_path.read_text())
        timings = {t["id"]: t for t in fake.timings()}
        ideal_ids = {job["id"] for job in ideal_jobs}
        ideal_latency, ideal_fetch = [], []
        for result in ideal["jobs"]:
            timing = timings[result["id"]]
            if timing["fetch_latency"] is not None:
                ideal_fetch.append(timing["fetch_latency"])
            if result["fetched_at"] is not None and timing["finished_at"] is not None:
                ideal_latency.append(result["fetched_at"] - timing["finished_at"])
        ideal_done = sum(1 for result in ideal["jobs"] if result["fetched_at"] is not None)
        ideal_failed = sum(1 for result in ideal["jobs"] if result["failed"])
        ideal_gets = sum(1 for r in fake.polls if r.path.rsplit("/", 1)[-1] in ideal_ids)
        ideal_gaps = poll_gaps(fake.polls, ideal_ids)
        ideal_violations = sum(timings[i]["floor_violations"] for i in ideal_ids)
        ideal_retries = sum(result["retries"] for result in ideal["jobs"])
        ideal_errors = [e for result in ideal["jobs"] for e in result["errors"]][:5]
    finally:
        for proc in procs.values():
            stop_process(proc)
        if fake is not None:
            fake.stop()
        if args.scale:
            scale_database(create=False)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    # --- report ----------------------------------------------------------------------
    total_wall = time.monotonic() - wall_start
    cpu_ours = sum(run_cpu.values())
    worker_counts, worker_lines = log_excerpt(worker_log)
    sweeper_counts, sweeper_lines = log_excerpt(sweeper_log)
    ideal_counts, ideal_lines = log_excerpt(ideal_log)

    def ms(seconds: float) -> str:
        return f"{seconds:.2f} s"

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}" if b > 0 else "n/a"

    p50, p95 = percentile(ours_latency, 50), percentile(ours_latency, 95)
    i50, i95 = percentile(ideal_latency, 50), percentile(ideal_latency, 95)
    table = [
        ("", "ours (queue + sweeper)", "ideal poller"),
        ("jobs", str(n), str(n)),
        (
            "completed / failed / other",
            f"{status_counts.get('completed', 0)} / {status_counts.get('failed', 0)} / "
            f"{n - status_counts.get('completed', 0) - status_counts.get('failed', 0)}",
            f"{ideal_done} / {ideal_failed} / {n - ideal_done - ideal_failed}",
        ),
        ("completion latency p50", ms(p50), ms(i50)),
        ("completion latency p95", ms(p95), ms(i95)),
        ("completion latency max", ms(percentile(ours_latency, 100)), ms(percentile(ideal_latency, 100))),
        ("fetch latency p50 (fake)", ms(percentile(ours_fetch, 50)), ms(percentile(ideal_fetch, 50))),
        ("fetch latency p95 (fake)", ms(percentile(ours_fetch, 95)), ms(percentile(ideal_fetch, 95))),
        ("result GETs per job", f"{gets_1 / n:.2f}", f"{ideal_gets / n:.2f}"),
        ("gap between polls of a job p50", ms(percentile(ours_gaps, 50)), ms(percentile(ideal_gaps, 50))),
        ("gap between polls of a job p95", ms(percentile(ours_gaps, 95)), ms(percentile(ideal_gaps, 95))),
        ("floor violations (429)", str(ours_violations), str(ideal_violations)),
        (
            "CPU (start-up excluded)",
            f"{cpu_ours:.1f} s ({run_cpu['qcluster']:.1f} cluster + {run_cpu['sweeper']:.1f} sweeper)",
            f"{ideal['cpu_seconds']:.1f} s",
        ),
        ("CPU per job", f"{cpu_ours * 1000 / n:.1f} ms", f"{ideal['cpu_seconds'] * 1000 / n:.1f} ms"),
        ("wall time of the phase", ms(ours_wall), ms(ideal_wall)),
    ]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    print()
    print(
        f"{n} jobs, poll floor {args.floor:g} s, ready {args.min_wait:g}-{args.min_wait + args.spread:g} s after "
        f"the start (seed {args.seed}), Q_WORKERS={args.workers}, {os.cpu_count()} CPUs, "
        f"{'PostgreSQL + Redis broker' if args.scale else 'SQLite + ORM broker'}"
    )
    for row in table:
        print("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
    tasks = sum(1 for line in worker_log.open(errors="replace") if " Processed " in line)
    print(
        "ours: cluster CPU by process: "
        + ", ".join(f"{role} {cpu:.1f} s" for role, cpu in sorted(cluster_split.items(), key=lambda kv: -kv[1]))
    )
    if tasks:
        print(
            f"ours: {tasks} queue tasks run (django-q's 'Processed' log lines), "
            f"{tasks / ours_wall:.1f} per s, {cpu_ours * 1000 / tasks:.1f} ms CPU each"
        )
    print(f"ratio ours/ideal: p50 {ratio(p50, i50)}, p95 {ratio(p95, i95)} (goal p95 <= 1.3)")
    if "end" in track and track["start"] < t0 + args.min_wait - 1.0:
        span = track["end"] - track["start"]
        cluster = track["qcluster end"] - track["qcluster start"]
        sweeper = track["sweeper end"] - track["sweeper start"]
        looks = sum(1 for r in ours_polls if track["start"] <= r.time < track["end"])
        ideal_cpu = ideal_track["ideal end"] - ideal_track["ideal start"]
        ideal_span = ideal_track["end"] - ideal_track["start"]
        print(
            f"tracking ({n} in flight, none ready, {span:.1f} s from the last submit to the first finish): "
            f"cluster {100 * cluster / span:.1f}% of one core, sweeper {100 * sweeper / span:.1f}%, "
            f"ideal poller {100 * ideal_cpu / ideal_span:.1f}%; {looks / span:.0f} polls/s, "
            f"{1000 * (cluster + sweeper) / max(looks, 1):.2f} ms CPU per poll (cluster + sweeper)"
        )
        print(f"goal: cluster under 25% of one core tracking {n} jobs: {'met' if cluster / span < 0.25 else 'MISSED'}")
    else:
        print("tracking: no window (jobs were still being submitted when the first was ready; raise --min-wait)")
    print(
        f"ours: jobs created in {created_in:.1f} s, last submit {last_submit:.1f} s after the start, "
        f"{submits_1} submits for {n} jobs, {len(late_submits)} submitted after their scripted finish, "
        f"{twice_completed} completed twice, {ours_passed_polls / n:.2f} polls per job passed the floor"
    )
    peak = peak_overlap(ours_inflight)
    held = sum(end - start for start, end in ours_inflight)
    print(
        f"workers: the FastAPI original holds one worker asleep per in-flight job: {peak} at the peak of this run "
        f"({held / max(len(ours_inflight), 1):.0f} s each on average); ours: {args.workers} worker processes, "
        f"busy {cpu_ours:.1f} CPU-s in {ours_wall:.0f} s ({100 * cpu_ours / ours_wall / args.workers:.0f}% of "
        f"{args.workers} cores, {cpu_ours * 1000 / n:.1f} ms per job)"
    )
    load_end = os.getloadavg()
    print(
        f"load average (1/5/15 min) at the start {' '.join(f'{v:.2f}' for v in load_start)}, "
        f"at the end {' '.join(f'{v:.2f}' for v in load_end)}"
    )
    print(f"total wall time {total_wall:.0f} s; logs: {worker_log}, {sweeper_log}, {ideal_log}")
    for name, counts, lines in (
        ("qcluster", worker_counts, worker_lines),
        ("sweeper", sweeper_counts, sweeper_lines),
        ("ideal poller", ideal_counts, ideal_lines),
    ):
        found = {marker: count for marker, count in counts.items() if count}
        print(f"{name} log: " + (", ".join(f"{m} x{c}" for m, c in found.items()) if found else "clean"))
        for line in lines[:15]:
            print("    " + line[:300])
    for row in failures:
        print(f"not completed: job {row['pk']} {row['status']} {row['error_code']}: {row['error_message']}")
        if row["error_detail"]:
            print(f"    {row['error_detail'][:300]}")
    if ideal_retries:
        print(f"ideal poller: {ideal_retries} polls answered with an error and retried")
    for error in ideal_errors:
        print(f"ideal poller retry: {error}")
    if ideal.get("unfinished"):
        print(f"ideal poller: {ideal['unfinished']} jobs still unfinished at its deadline")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.ideal_child:
        ideal_child(args.ideal_child)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
