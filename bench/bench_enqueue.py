"""Enqueue to start: from a job's create transaction committing to its first step starting.

Run from the repository root (``make bench-enqueue`` runs the same)::

    .venv/bin/python bench/bench_enqueue.py [--jobs 100] [--polls 0.2,0.05,0.03] [--idle-seconds 10]
        [--no-redis] [--conn-max-age 60] [--database sqlite|postgres]

For the ORM broker at each ``poll`` in ``--polls`` (``Q_POLL``), then for the
Redis broker (``redis://127.0.0.1:6379/8``), it makes a throwaway install
(SQLite in a temporary var directory, or with ``--database postgres`` the
PostgreSQL database ``i2v_bench_enqueue``, made anew, whose connections are kept
as the settings keep them: ``--conn-max-age 0`` opens one per task), starts a real ``manage.py runworker``
(the supervisor, the qcluster and its 2 workers), lets it run one job to warm
up, then:

1. idle CPU: the CPU time the worker's whole process tree used over
   ``--idle-seconds`` with nothing to do, as a share of one core;
2. ``--jobs`` sequential jobs (local provider, 2-frame clips), each created in
   a transaction whose first ``on_commit`` callback notes the commit's time
   (the enqueue is the next callback), each waited for until it is final, then
   a random pause of 0-300 ms so the creations fall anywhere in the pusher's
   cycle. Start: the ``preparing`` event the first step writes (``JobEvent.at``,
   after the worker's claim of the job). p50, p95 and max of start - commit.

Goals (issue 13): ORM broker p50/p95 <= 50 ms, Redis broker <= 5 ms, without a
busy idle loop.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REDIS_BROKER = "redis://127.0.0.1:6379/8"
POSTGRES = "postgres://postgres@127.0.0.1:5432/i2v_bench_enqueue"
TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its live descendants."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / TICKS
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo += children.get(current, [])
    return total


def wait_until(condition, timeout: float, what: str, interval: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


def run_one(label: str, extra_env: dict[str, str], args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="i2v-bench-enqueue-") as tmp:
        var = Path(tmp)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "i2v_site.settings",
            "DATABASE_URL": f"sqlite:///{var / 'bench.sqlite3'}",
            "I2V_VAR_DIR": str(var),
            "I2V_ENV_FILE": str(var / "none.env"),
            "SECRET_KEY": "bench-enqueue-" + "x" * 40,  # tasks are signed with it: the same on both sides
            "LOCAL_FRAMES": "2",
            "Q_WORKERS": "2",
            **extra_env,
        }
        if args.database == "postgres":
            import psycopg

            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
                conn.execute("DROP DATABASE IF EXISTS i2v_bench_enqueue WITH (FORCE)")
                conn.execute("CREATE DATABASE i2v_bench_enqueue")
            env["DATABASE_URL"] = POSTGRES
        if args.conn_max_age is not None:
            env["DATABASE_URL"] += f"?conn_max_age={args.conn_max_age}&conn_health_checks=true"
        env.pop("CACHE_URL", None)
        if "Q_BROKER_URL" not in extra_env:
            env.pop("Q_BROKER_URL", None)
        os.environ.clear()
        os.environ.update(env)
        import django

        django.setup()
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.db import transaction

        from jobs import ledger
        from jobs.creation import create_job, create_upload
        from jobs.models import Job, JobEvent
        from tests.factories import photo_bytes

        if settings.Q_BROKER_URL:
            import redis

            redis.Redis.from_url(REDIS_BROKER).flushdb()
        call_command("migrate", verbosity=0)
        user = get_user_model().objects.create(username="bench")
        ledger.open_account(user, starting=1_000_000)
        upload = create_upload(owner=user, source=photo_bytes(320, 192), filename="photo.jpg")

        log = (var / "worker.log").open("w")
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "runworker"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:

            def one_job() -> float:
                committed: list[float] = []
                with transaction.atomic():
                    transaction.on_commit(lambda: committed.append(time.time()))
                    job = create_job(owner=user, upload=upload, provider="local", extra_params={"duration": 1})
                started = wait_until(
                    lambda: (
                        JobEvent.objects.filter(job=job, to_status=Job.PREPARING).values_list("at", flat=True).first()
                    ),
                    120,
                    f"job {job.pk} to start (see {var / 'worker.log'})",
                    0.002,
                )
                wait_until(
                    lambda: Job.objects.filter(pk=job.pk, status__in=Job.FINAL_STATES).exists(),
                    120,
                    f"job {job.pk} to finish",
                    0.02,
                )
                return (started.timestamp() - committed[0]) * 1000

            one_job()  # warm-up: the cluster is up and has run a task
            time.sleep(1)
            before, started = tree_cpu(worker.pid), time.monotonic()
            time.sleep(args.idle_seconds)
            idle = (tree_cpu(worker.pid) - before) / (time.monotonic() - started) * 100
            rng = random.Random(5)
            waits = []
            for _ in range(args.jobs):
                waits.append(one_job())
                time.sleep(rng.uniform(0, 0.3))
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(60)
        waits.sort()
        p95 = waits[min(len(waits) - 1, round(0.95 * len(waits)) - 1)]
        print(
            f"   {label:<28}{statistics.median(waits):>8.1f}{p95:>8.1f}{waits[-1]:>8.1f}{min(waits):>8.1f}"
            f"{idle:>12.1f}%   load {os.getloadavg()[0]:.1f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--polls", default="0.2,0.05,0.03", help="ORM broker poll values (Q_POLL) to measure")
    parser.add_argument("--idle-seconds", type=float, default=10)
    parser.add_argument("--redis", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=None,
        help="keep database connections this many seconds (DATABASE_URL's ?conn_max_age=, with health checks); "
        "default: as the settings do (kept 60 s on PostgreSQL, not on SQLite)",
    )
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one configuration per process
    args = parser.parse_args()
    if args.one:
        label, _, pairs = args.one.partition("|")
        run_one(label, dict(pair.split("=", 1) for pair in pairs.split(",")), args)
        return
    configurations = [(f"ORM broker, Q_POLL={poll}", f"Q_POLL={poll}") for poll in args.polls.split(",") if poll]
    if args.redis:
        configurations.append(("Redis broker", f"Q_BROKER_URL={REDIS_BROKER}"))
    kept = "as the settings keep them" if args.conn_max_age is None else f"conn_max_age={args.conn_max_age}"
    print(
        f"{args.jobs} sequential jobs each, {'PostgreSQL' if args.database == 'postgres' else 'SQLite'} "
        f"(connections {kept}), 1 runworker (2 workers), ms from commit to first step"
    )
    print(f"   {'broker':<28}{'p50':>8}{'p95':>8}{'max':>8}{'min':>8}{'idle CPU':>13}")
    for label, pairs in configurations:
        # Django is set up once per process: each configuration in a process of its own.
        argv = ["--jobs", str(args.jobs), "--idle-seconds", str(args.idle_seconds)]
        argv += ["--database", args.database]
        if args.conn_max_age is not None:
            argv += ["--conn-max-age", str(args.conn_max_age)]
        subprocess.run([sys.executable, __file__, *argv, "--one", f"{label}|{pairs}"], check=True)


if __name__ == "__main__":
    main()
