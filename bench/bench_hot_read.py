"""The hot read: the status polls clients repeat, against real gunicorn, next to a plain view.

Run from the repository root (``make bench-hot-read`` runs the same)::

    .venv/bin/python bench/bench_hot_read.py [--database sqlite|postgres|both] [--seconds 3]
        [--rounds 7] [--connections 16] [--jobs 3000] [--profile] [--cpu-only] [--conn-max-age 0]
        [--setups sync:2,sync:4,gthread:2:4] [--unprepared]

For each database (SQLite in a temporary var directory with the default file
cache; or PostgreSQL ``i2v_perf`` with the Redis cache ``redis://127.0.0.1:6379/7``,
which also counts the request budgets) it makes a throwaway install of ``--jobs``
jobs from 20 users (half completed with a video, a few running, queued, failed,
cancelled or expired, four timeline events each, a third made through the queue
API), starts gunicorn with the command line ``manage.py serve`` uses (its config
module, 2 sync workers) and ``bench/hot_read_site``'s extra view, and measures,
each poll rotating over 200 (key, job) pairs of every state:

0. CPU time per request in-process (Django's test client, no HTTP): robust
   against other work on the machine, unlike requests/s.
1. ``wrk`` with ``--connections`` connections, ``--rounds`` rounds interleaved
   (a first warm-up round is not counted): median requests/s and median p99 of

   * a plain Django view doing the same database read (key check, the job row
     by id and owner, a small JSON): the floor;
   * ``GET /api/v1/jobs/{id}`` (native API, Bearer key);
   * ``GET /api/img2video/result/{id}`` (Stability-compatible API);
   * ``GET /queue/local/requests/{id}/status`` (queue API, fal's ``Key`` scheme).

   With each: the web workers' CPU time per answer (their utime + stime over
   the run / answers), which, unlike requests/s, other work on the machine
   hardly blurs, and the whole machine's (web workers, PostgreSQL, Redis, wrk).
   ``--setups`` runs other gunicorn set-ups side by side instead of serve's
   (``class:workers[:threads]``), each run interleaved; ``--unprepared`` runs
   each beside itself with PostgreSQL's prepared statements off.

Goal (issue 13): each endpoint at least 0.8x the plain view's throughput, p99 < 25 ms.
``--profile`` prints the top functions of a cProfile of each endpoint in-process.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
USERS = 20
TARGETS = 200
POSTGRES = "postgres://postgres@127.0.0.1:5432/i2v_perf"
REDIS_CACHE = "redis://127.0.0.1:6379/7"
ENDPOINTS = {
    "plain Django view": "/bench/plain-job/{id}",
    "native GET /api/v1/jobs/{id}": "/api/v1/jobs/{id}",
    "Stability result": "/api/img2video/result/{id}",
    "queue status": "/queue/local/requests/{id}/status",
}
SCHEME = {"queue status": "Key"}  # what fal-client sends; the others send Bearer
GOAL_RATIO, GOAL_P99_MS = 0.8, 25.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


class Server:
    """gunicorn as ``manage.py serve`` starts it (``serve.gunicorn_command``)."""

    def __init__(self, env: dict[str, str], var: Path, setup: str = "", variant: str = "") -> None:
        """``setup``: empty for the set-up ``serve`` uses, else ``class:workers[:threads]`` (``gthread:2:4``).
        ``variant`` names what ``env`` changes from the install's own settings."""
        from jobs.management.commands.serve import WEB_WORKERS, gunicorn_command

        bind = f"127.0.0.1:{free_port()}"
        self.url = f"http://{bind}"
        (var / "run").mkdir(exist_ok=True)
        label = (setup.replace(":", "-") or "serve") + (f"-{variant}" if variant else "")
        self.variant = variant
        self.log = var / f"gunicorn-{label}.log"
        kind, workers, threads = [*setup.split(":"), "", "", ""][:3]
        (var / "run" / label).mkdir()
        command = gunicorn_command(bind, int(workers or WEB_WORKERS), var / "run" / label)
        # Trying other set-ups: gunicorn takes the last of a repeated option.
        command += ["--worker-class", kind] if kind else []
        command += ["--threads", threads] if threads else []
        self.as_serve = not setup
        self.setup = " ".join(part for part in command[command.index("--workers") :] if "/" not in part)
        with self.log.open("a") as handle:
            self.proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if get(f"{self.url}/bench/plain-job/00000000-0000-0000-0000-000000000000") == 401:
                return
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"gunicorn did not start; see {self.log}:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(20)

    def cpu_seconds(self) -> float:
        """User + system CPU the web workers have used so far (the master only waits)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:  # ppid
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick


def host_cpu_seconds() -> float:
    """CPU time every process on the machine has used so far (/proc/stat: all but idle and iowait)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, lua: Path, seconds: float, connections: int) -> tuple[float, float, int, int]:
    """Requests/s, p99 in ms, the count of answers that were not 2xx, and of all answers."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(lua), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    done = int(re.search(r"(\d+) requests in", out)[1])
    return rate, _ms(*p99.groups()), int(bad[1]) if bad else 0, done


def seed(jobs: int) -> list[tuple[str, str, str]]:
    """A realistic install; returns the polled (key, job id, state) triples."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from jobs import ledger
    from jobs.apikeys import create_api_key
    from jobs.creation import create_upload
    from jobs.models import Job, JobEvent, QueueRequest
    from tests.factories import photo_bytes

    rng = random.Random(13)
    users, keys = [], {}
    for n in range(USERS):
        user = get_user_model().objects.create(username=f"bench{n}")
        ledger.open_account(user)
        keys[user.pk] = create_api_key(user=user, name="bench")[1]
        users.append(user)
    upload = create_upload(owner=users[0], source=photo_bytes(640, 384), filename="photo.jpg")
    # Finished jobs most, some still going, as an install that has run a while.
    states = [Job.COMPLETED] * 50 + [Job.FAILED] * 10 + [Job.CANCELLED] * 5 + [Job.EXPIRED] * 15
    states += [Job.RUNNING] * 8 + [Job.SUBMITTED] * 4 + [Job.QUEUED] * 8
    now = timezone.now()
    rows, events, asked = [], [], []
    for n in range(jobs):
        status = rng.choice(states)
        created = now - timedelta(minutes=jobs - n)
        job = Job(
            owner=users[n % USERS],
            upload=upload,
            provider="local",
            width=1024,
            height=576,
            cfg_scale=1.8,
            motion_bucket_id=127,
            seed=rng.randrange(1, 2**31),
            extra_params={"duration": 4, "fps": 12},
            cost=10,
            status=status,
            created_at=created,
            progress=1.0 if status == Job.COMPLETED else rng.random() if status == Job.RUNNING else 0.0,
        )
        if status not in (Job.QUEUED,):
            job.submitted_at = created + timedelta(seconds=2)
            # What a remote provider's last answer looks like (a prediction with its logs): ~1.5 KB of JSON.
            job.provider_job_id = f"pred-{n:08d}"
            job.provider_response = {
                "id": job.provider_job_id,
                "status": "processing",
                "input": {"seed": job.seed, "cfg_scale": 1.8, "motion_bucket_id": 127, "fps": 12},
                "logs": "".join(
                    f"{step}%|{'#' * (step // 10)}| {step}/100 [00:{step:02d}<00:40]\n" for step in range(0, 100, 5)
                ),
                "metrics": {"predict_time": 38.2},
                "urls": {"get": f"https://provider.invalid/v1/predictions/{n}", "cancel": "…"},
            }
        if status in Job.FINAL_STATES:
            job.finished_at = created + timedelta(seconds=40)
            job.expires_at = job.finished_at + timedelta(hours=24)
        if status == Job.COMPLETED:
            job.video = f"videos/bench/{n}.mp4"
            job.poster = f"posters/bench/{n}.jpg"
            job.video_frames, job.video_duration, job.video_bytes = 48, 4.0, 812_345
            job.seed_used, job.finish_reason = job.seed, "SUCCESS"
        if status == Job.FAILED:
            job.error_code, job.error_message = "provider_error", "The provider could not make this video."
            job.error_detail = "Traceback (most recent call last):\n" + "  File ...\n" * 30
        rows.append(job)
        trail = [Job.QUEUED, Job.PREPARING, Job.SUBMITTED, Job.RUNNING]
        trail = trail[: trail.index(status) + 1] if status in trail else [*trail, status]
        for step, (before, after) in enumerate(zip(["", *trail], trail, strict=False)):
            events.append(JobEvent(job=job, at=created + timedelta(seconds=step), from_status=before, to_status=after))
        if n % 3 == 0:
            asked.append(QueueRequest(job=job, model_id="local"))
    Job.objects.bulk_create(rows, batch_size=500)
    JobEvent.objects.bulk_create(events, batch_size=1000)
    QueueRequest.objects.bulk_create(asked, batch_size=1000)
    # Polled: the queue API's jobs (every endpoint can read them), mostly finished ones with a
    # video and running ones: what clients repeat.
    polled = [job for n, job in enumerate(rows) if n % 3 == 0]
    rng.shuffle(polled)
    wanted = {Job.COMPLETED: 100, Job.RUNNING: 40, Job.SUBMITTED: 15, Job.QUEUED: 25, Job.FAILED: 20}
    targets = []
    for job in polled:
        if wanted.get(job.status, 0) > 0:
            wanted[job.status] -= 1
            targets.append((keys[job.owner_id], str(job.pk), job.status))
    rng.shuffle(targets)
    return targets[:TARGETS]


def lua_for(path: str, scheme: str, targets: list[tuple[str, str, str]], file: Path) -> Path:
    rows = ", ".join(f'{{"{path.format(id=job)}", "{scheme} {key}"}}' for key, job, _ in targets)
    file.write_text(
        f"local t = {{{rows}}}\nlocal i = 0\n"
        "request = function()\n  i = i % #t + 1\n"
        '  return wrk.format("GET", t[i][1], {["Authorization"] = t[i][2]})\nend\n'
    )
    return file


def run_one(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="i2v-bench-hot-read-") as tmp:
        var = Path(tmp)
        (var / "staticfiles").mkdir()  # whitenoise warns without it
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.hot_read_site.settings",
            "I2V_VAR_DIR": str(var),
            "I2V_ENV_FILE": str(var / "none.env"),
            "ALLOWED_HOSTS": "127.0.0.1",
            "API_RATE": "1000000/minute",  # measured: the counting; never refused
        }
        if args.database == "postgres":
            import psycopg

            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
                conn.execute("DROP DATABASE IF EXISTS i2v_perf WITH (FORCE)")
                conn.execute("CREATE DATABASE i2v_perf")
            import redis

            redis.Redis.from_url(REDIS_CACHE).flushdb()
            env.update(DATABASE_URL=POSTGRES, CACHE_URL=REDIS_CACHE)
            label = "PostgreSQL + Redis cache (budgets counted in Redis)"
        else:
            env["DATABASE_URL"] = f"sqlite:///{var / 'bench.sqlite3'}"
            env.pop("CACHE_URL", None)
            label = "SQLite + file cache (budgets counted in files)"
        if args.conn_max_age is not None:
            env["DATABASE_URL"] += f"?conn_max_age={args.conn_max_age}&conn_health_checks=true"
            label += f", conn_max_age={args.conn_max_age}"
        elif args.database == "postgres":
            label += ", connections kept 60 s (the settings' default)"
        os.environ.clear()
        os.environ.update(env)
        import django

        django.setup()
        import logging

        from django.core.management import call_command

        # The Stability API answers a failed job 500, as Stability does; Django logs each as an error.
        logging.getLogger("django.request").setLevel(logging.CRITICAL)

        call_command("migrate", verbosity=0)
        started = time.monotonic()
        targets = seed(args.jobs)
        mix = {}
        for _, _, state in targets:
            mix[state] = mix.get(state, 0) + 1
        print(f"== {label}")
        print(
            f"   {args.jobs} jobs seeded in {time.monotonic() - started:.0f} s; polled: {len(targets)} jobs "
            f"({', '.join(f'{n} {s}' for s, n in sorted(mix.items()))})"
        )

        from django.db import connection
        from django.test import Client

        clients = {}
        for key, _, _ in targets:
            for scheme in ("Bearer", "Key"):
                clients[(key, scheme)] = Client(HTTP_AUTHORIZATION=f"{scheme} {key}", HTTP_HOST="127.0.0.1")

        def poll(name: str, n: int) -> int:
            key, job, _ = targets[n % len(targets)]
            return clients[(key, SCHEME.get(name, "Bearer"))].get(ENDPOINTS[name].format(id=job)).status_code

        queries: dict[str, float] = {}
        for name in ENDPOINTS:
            codes = {poll(name, n) for n in range(len(targets))}
            assert codes <= {200, 202, 404, 500}, (name, codes)  # 404/500: expired/failed in the Stability API
            from django.test.utils import CaptureQueriesContext

            with CaptureQueriesContext(connection) as captured:
                for n in range(len(targets)):
                    poll(name, n)
            queries[name] = len(captured) / len(targets)

        cpu: dict[str, list[float]] = {name: [] for name in ENDPOINTS}
        count = 400
        for round_number in range(args.rounds + 1):
            for name in ENDPOINTS:
                started = time.process_time()
                for n in range(count):
                    poll(name, n)
                if round_number:
                    cpu[name].append((time.process_time() - started) / count * 1e6)
        print(f"0. CPU per request in-process ({count} requests x {args.rounds} rounds, median) and queries")
        floor = statistics.median(cpu["plain Django view"])
        print(f"   {'endpoint':<30}{'µs CPU':>9}{'vs plain':>10}{'queries':>9}")
        for name in ENDPOINTS:
            median = statistics.median(cpu[name])
            print(f"   {name:<30}{median:>9.0f}{median / floor:>9.2f}x{queries[name]:>9.2f}")

        if args.profile:
            for name in ENDPOINTS:
                profile = cProfile.Profile()
                profile.enable()
                for n in range(count):
                    poll(name, n)
                profile.disable()
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(45)
                print(f"--- profile: {name}\n{out.getvalue()}")

        if args.cpu_only:
            return
        luas = {
            name: lua_for(path, SCHEME.get(name, "Bearer"), targets, var / f"{n}.lua")
            for n, (name, path) in enumerate(ENDPOINTS.items())
        }
        connection.close()  # the seeding connection is not kept open beside gunicorn's
        load = os.getloadavg()
        setups = [part.strip() for part in args.setups.split(",") if part.strip()] or [""]
        servers = [Server(env, var, setup) for setup in setups]
        if args.unprepared and args.database == "postgres":
            url = env["DATABASE_URL"]
            unprepared = {**env, "DATABASE_URL": f"{url}{'&' if '?' in url else '?'}prepared_statements=false"}
            servers += [Server(unprepared, var, setup, "unprepared") for setup in setups]
        runs = [(name, server) for name in ENDPOINTS for server in servers]
        rates: dict = {run: [] for run in runs}
        p99s: dict = {run: [] for run in runs}
        # The web workers' CPU per answer: unlike requests/s, what other work on the machine does not blur.
        served_cpu: dict = {run: [] for run in runs}
        # Everything the machine spent per answer: the web workers, PostgreSQL, Redis and wrk itself.
        host_cpu: dict = {run: [] for run in runs}
        non2xx: dict = dict.fromkeys(runs, 0)
        try:
            for round_number in range(args.rounds + 1):  # the first round warms up and is not counted
                # Each round starts with another endpoint, so a drift in the machine's load
                # does not always fall on the same one.
                shift = round_number % len(runs)
                for run in runs[shift:] + runs[:shift]:
                    name, server = run
                    before, host_before = server.cpu_seconds(), host_cpu_seconds()
                    rate, p99, bad, done = wrk(server.url, luas[name], args.seconds, args.connections)
                    if round_number:
                        rates[run].append(rate)
                        p99s[run].append(p99)
                        non2xx[run] += bad
                        served_cpu[run].append((server.cpu_seconds() - before) / max(done, 1) * 1e6)
                        host_cpu[run].append((host_cpu_seconds() - host_before) / max(done, 1) * 1e6)
        finally:
            for server in servers:
                server.stop()
        after = os.getloadavg()
        for server in servers:
            how = "as `serve` starts it" if server.as_serve else "NOT as `serve` starts it"
            how += ", DATABASE_URL …?prepared_statements=false" if server.variant == "unprepared" else ""
            print(
                f"1. wrk, {args.connections} connections, gunicorn {how} ({server.setup}), "
                f"{args.seconds:g} s per run, {args.rounds} rounds interleaved (medians)"
            )
            print(f"   load average before/after: {load[0]:.1f} / {after[0]:.1f} on {os.cpu_count()} cores")
            floor = ("plain Django view", server)
            plain, plain_cpu = rates[floor], statistics.median(served_cpu[floor])
            plain_host = statistics.median(host_cpu[floor])
            print(
                f"   {'endpoint':<30}{'req/s':>8}{'vs plain':>10}{'p99 ms':>8}{'non-2xx':>9}"
                f"{'µs CPU':>8}{'vs plain':>10}{'host µs':>9}{'vs plain':>10}  goal   all rounds (req/s)"
            )
            for name in ENDPOINTS:
                run = (name, server)
                rate, p99 = statistics.median(rates[run]), statistics.median(p99s[run])
                # The ratio within each round (the load the machine had then), then their median.
                ratio = statistics.median(mine / base for mine, base in zip(rates[run], plain, strict=True))
                met = (
                    ""
                    if name.startswith("plain")
                    else ("met" if ratio >= GOAL_RATIO and p99 < GOAL_P99_MS else "MISSED")
                )
                every = ", ".join(f"{r:.0f}" for r in rates[run])
                cpu_used = statistics.median(served_cpu[run])
                host_used = statistics.median(host_cpu[run])
                print(
                    f"   {name:<30}{rate:>8.0f}{ratio:>9.2f}x{p99:>8.1f}{non2xx[run]:>9}"
                    f"{cpu_used:>8.0f}{cpu_used / plain_cpu:>9.2f}x{host_used:>9.0f}{host_used / plain_host:>9.2f}x"
                    f"  {met:<6} {every}"
                )
        print("   (vs plain: the median over rounds of the ratio within a round)")
        print("   (µs CPU: the web workers' CPU time per answer during the runs, median over rounds)")
        print("   (host µs: the whole machine's CPU time per answer: web workers, databases, wrk and the rest)")
        print("   (non-2xx: the polled failed jobs, which the Stability API answers 500 as Stability does)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=None,
        help="DATABASE_URL's ?conn_max_age= (0: a connection per request); default: as the settings keep them",
    )
    parser.add_argument(
        "--unprepared",
        action="store_true",
        help="PostgreSQL: also run each set-up with prepared statements off, interleaved with the others",
    )
    parser.add_argument("--cpu-only", action="store_true", help="only part 0 (no gunicorn, no wrk)")
    parser.add_argument(
        "--setups",
        default="",
        help="gunicorn set-ups side by side instead of serve's: class:workers[:threads], comma-separated "
        "(e.g. sync:2,sync:4,gthread:2:4)",
    )
    args = parser.parse_args()
    if args.database != "both":
        run_one(args)
        return
    for database in ("sqlite", "postgres"):  # each in a process of its own: Django is set up once per process
        argv = [a for a in sys.argv[1:] if not a.startswith("--database")]
        subprocess.run([sys.executable, __file__, "--database", database, *argv], check=True)


if __name__ == "__main__":
    main()
