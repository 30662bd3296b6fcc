"""The fault gauntlet: crashes and outages on the scale configuration, and the invariants after each.

Run from the repository root (as root or as a user who may run PostgreSQL)::

    .venv/bin/python bench/bench_gauntlet.py [--seed N] [--jobs 50] [--kills 10]

Everything is private to the run and on 127.0.0.1: a PostgreSQL cluster made
with ``initdb`` in a temporary folder (as the ``postgres`` user when run as
root), a Redis server (django-q2's broker, db 0, and the cache, db 1), moto's
S3 server behind a TCP proxy (``tests/tcp_proxy.py``: the outage cuts the
proxy, since moto keeps its objects in memory and a restart would lose them),
and the fake Stability server (``tests/fakes``; a job is ready 2-5 s after its
submit, poll floor ``--floor``). The processes are the real ones:
``--workers`` ``manage.py runworker`` (each a supervised django-q2 cluster)
and ``--sweepers`` ``manage.py runsweeper``, with the settings of
``bench/gauntlet_site`` (the project's, plus a bench-only ``poison``
provider whose submit calls ``os._exit``).

Phase "kills": ``--jobs`` jobs created over ``--spread`` s and one poison job;
``--kills`` times, at seeded random moments, ``kill -9`` of a django-q2 worker
child (its cluster forks another) or of a whole cluster's process group (its
supervisor starts another). Phases "redis", "postgres", "s3": a fresh batch
each, then the private Redis stopped and started again (its queue is lost),
PostgreSQL stopped (fast) and started again, the S3 proxy cut for
``--s3-outage`` s.

After each phase: every job final and completed (the poison job failed and
not charged), at most one submit per job at the fake (every job the fake
accepted belongs to exactly one of ours), one hold and one capture per
completed job, one release and no capture per failed one, and at the end
``manage.py checkledger`` clean. For the kills: the jobs the killed worker
held (leased at the kill and still holding the same lease 3 s later) and the
time from its restart to their completion, against ``JOB_LEASE_SECONDS`` + 5 s.

Exits 1 when an invariant breaks. Logs are kept in bench/out/gauntlet-*.log.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUT = ROOT / "bench" / "out"
PY = sys.executable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = condition()
        except Exception:  # a server on its way up
            result = None
        if result:
            return result
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def descendants(pid: int) -> list[int]:
    found = children(pid)
    for child in list(found):
        found.extend(descendants(child))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except FileNotFoundError:
        return ""


# --- private servers ------------------------------------------------------------------


class Postgres:
    """A throwaway PostgreSQL cluster; run as ``postgres`` when we are root."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.log = OUT / "gauntlet-postgres.log"
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not bins:
            raise SystemExit("PostgreSQL's binaries are not in /usr/lib/postgresql/*/bin")
        self.bin = bins[-1]
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log.write_text("")
        if self.as_user:
            shutil.chown(self.folder, "postgres")
            shutil.chown(self.log, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -h 127.0.0.1 -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"


class Redis:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.pidfile = folder / "redis.pid"
        self.log = OUT / "gauntlet-redis.log"

    def start(self) -> None:
        subprocess.run(
            [
                *("redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"),
                *("--daemonize", "yes", "--pidfile", str(self.pidfile), "--logfile", str(self.log)),
            ],
            check=True,
        )
        wait_for(self.ping, 30, "Redis")

    def ping(self) -> bool:
        out = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True)
        return out.stdout.strip() == "PONG"

    def stop(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True)
        wait_for(lambda: not self.ping(), 30, "Redis to stop")


class S3:
    """moto's server, reached by the processes through a proxy we can cut."""

    def __init__(self, bucket: str) -> None:
        from tests.tcp_proxy import TcpProxy

        self.port = free_port()
        self.bucket = bucket
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=(OUT / "gauntlet-moto.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.port}",
            region_name="us-east-1",
            aws_access_key_id="gauntlet",
            aws_secret_access_key="gauntlet",
        )
        wait_for(lambda: client.create_bucket(Bucket=bucket) or True, 60, "moto")
        self.proxy = TcpProxy(("127.0.0.1", self.port))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}"

    def stop(self) -> None:
        self.proxy.close()
        stop_group(self.proc)


def stop_group(proc: subprocess.Popen, grace: float = 10) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


# --- the application's processes ------------------------------------------------------


class App:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}
        self.exits: list[str] = []

    def log(self, name: str) -> Path:
        return OUT / f"gauntlet-{name}.log"

    def start(self, name: str, command: str) -> None:
        with self.log(name).open("a") as handle:
            self.procs[name] = subprocess.Popen(
                [PY, "manage.py", command],
                cwd=ROOT,
                env=self.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        """A runworker or sweeper that exits is a finding; it is started again."""
        for name, proc in list(self.procs.items()):
            if proc.poll() is not None:
                self.exits.append(f"{name} (pid {proc.pid}) exited with {proc.returncode} at {time.strftime('%T')}")
                self.start(name, "runworker" if name.startswith("worker") else "runsweeper")

    def workers(self) -> list[str]:
        return [name for name in self.procs if name.startswith("worker")]

    def cluster_of(self, name: str) -> int | None:
        for pid in children(self.procs[name].pid):
            if "--cluster-process" in cmdline(pid) and alive(pid):
                return pid
        return None

    def worker_children(self, name: str) -> list[int]:
        """Live django-q2 worker processes of this runworker (from their start-up lines)."""
        tree = set(descendants(self.procs[name].pid))
        found = []
        for line in self.log(name).open(errors="replace"):
            if "ready for work at " in line:
                pid = line.rsplit("ready for work at ", 1)[1].split()[0]
                if pid.isdigit() and int(pid) in tree and alive(int(pid)):
                    found.append(int(pid))
        return found

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_group(proc)


# --- a kill and what it cost ------------------------------------------------------------


@dataclass
class Kill:
    at: float
    worker: str
    kind: str  # "child" or "cluster"
    pid: int
    restarted_at: float | None = None
    held: list = field(default_factory=list)  # job ids the dead worker held
    held_leases: list = field(default_factory=list)  # (job id, lease) as seen after the kill
    done_after_restart: dict = field(default_factory=dict)  # job id -> s from restart to final


def leased_now() -> dict:
    from django.utils import timezone

    from jobs.models import Job

    now = timezone.now()
    return dict(Job.objects.filter(lease_until__gt=now).values_list("pk", "lease_until"))


def watch_kill(kill: Kill, app: App, before: dict, old_workers: set, workers_per_cluster: int) -> None:
    """In a thread: when the killed worker was replaced, and which jobs it held."""
    from django.db import connection

    try:
        deadline = time.time() + 90
        while alive(kill.pid) and time.time() < deadline:
            time.sleep(0.01)
        while time.time() < deadline and kill.restarted_at is None:
            # Back once the cluster has its full count of workers again, one of them new.
            now_workers = set(app.worker_children(kill.worker))
            if len(now_workers) >= workers_per_cluster and now_workers - old_workers:
                kill.restarted_at = time.time()
            time.sleep(0.05)
        time.sleep(max(0.0, kill.at + 3 - time.time()))
        after = leased_now()
        kill.held = [(pk, lease) for pk, lease in before.items() if after.get(pk) == lease]
        kill.held_leases = list(kill.held)
    finally:
        connection.close()


# --- the checks -------------------------------------------------------------------------


@dataclass
class Verdict:
    phase: str
    jobs: int
    completed: int = 0
    failed: int = 0
    other: int = 0
    submits: int = 0
    extra_submits: int = 0
    charges_wrong: int = 0
    wall: float = 0.0
    problems: list = field(default_factory=list)


def db_retry(fn, timeout: float = 120):
    """Run a query from this process, riding out the PostgreSQL restart."""
    from django.db import close_old_connections, connection
    from django.db.utils import DatabaseError, InterfaceError

    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (DatabaseError, InterfaceError):
            if time.monotonic() > deadline:
                raise
            close_old_connections()
            connection.close()
            time.sleep(0.5)


def wait_final(job_ids: list, timeout: float, app: App) -> bool:
    from jobs.models import Job

    deadline = time.time() + timeout
    while time.time() < deadline:
        app.check_alive()
        pending = db_retry(lambda: Job.objects.filter(pk__in=job_ids).exclude(status__in=Job.FINAL_STATES).count())
        if not pending:
            return True
        time.sleep(0.25)
    return False


def check(phase: str, job_ids: list, poison_ids: list, fake, wall: float) -> Verdict:
    from jobs.models import Job, JobEvent, LedgerEntry

    verdict = Verdict(phase, len(job_ids), wall=wall)
    ours = {**{pk: False for pk in job_ids}, **{pk: True for pk in poison_ids}}
    rows = Job.objects.filter(pk__in=list(ours)).values("pk", "status", "provider_job_id", "error_code", "error_detail")
    entries: dict = {}
    for job_id, kind in LedgerEntry.objects.filter(job_id__in=list(ours)).values_list("job_id", "kind"):
        entries.setdefault(job_id, []).append(kind)
    for row in rows:
        pk, poison = row["pk"], ours[row["pk"]]
        kinds = sorted(entries.get(pk, []))
        if row["status"] == Job.COMPLETED:
            verdict.completed += 1
            if poison:
                verdict.problems.append(f"poison job {pk} completed")
            if kinds != sorted([LedgerEntry.HOLD, LedgerEntry.CAPTURE]):
                verdict.charges_wrong += 1
                verdict.problems.append(f"job {pk} completed with ledger entries {kinds}")
        elif row["status"] == Job.FAILED:
            verdict.failed += 1
            if not poison:
                verdict.problems.append(f"job {pk} failed: {row['error_code']} {row['error_detail'][:200]}")
            if kinds != sorted([LedgerEntry.HOLD, LedgerEntry.RELEASE]):
                verdict.charges_wrong += 1
                verdict.problems.append(f"job {pk} failed with ledger entries {kinds}")
        else:
            verdict.other += 1
            timeline = list(JobEvent.objects.filter(job_id=pk).order_by("at").values_list("at", "to_status", "message"))
            verdict.problems.append(f"job {pk} not final: {row['status']}; timeline {timeline[-5:]}")
        if poison and row["provider_job_id"]:
            verdict.problems.append(f"poison job {pk} reached the provider")
    provider_ids = [row["provider_job_id"] for row in rows if row["provider_job_id"]]
    verdict.submits = len(provider_ids)
    if len(set(provider_ids)) != len(provider_ids):
        verdict.problems.append("two jobs share a provider job id")
    for pk in poison_ids:
        row = next(r for r in rows if r["pk"] == pk)
        if row["status"] != Job.FAILED or "Quarantined" not in (row["error_detail"] or ""):
            verdict.problems.append(f"poison job {pk} is {row['status']}, not quarantined: {row['error_detail']!r}")
    return verdict


def orphan_submits(fake) -> list[str]:
    """Jobs the fake accepted that none of ours holds: a second submit for one job."""
    from jobs.models import Job

    known = set(Job.objects.exclude(provider_job_id="").values_list("provider_job_id", flat=True))
    return [job.id for job in fake.jobs if job.id not in known]


# --- the run ----------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill moments (default: random, printed)")
    parser.add_argument("--jobs", type=int, default=50, help="jobs in flight during the kills (default 50)")
    parser.add_argument("--spread", type=float, default=40.0, help="the jobs are created over this many s (40)")
    parser.add_argument("--kills", type=int, default=10, help="kill -9 this many times (default 10)")
    parser.add_argument("--workers", type=int, default=3, help="runworker processes (default 3)")
    parser.add_argument("--q-workers", type=int, default=2, help="Q_WORKERS of each cluster (default 2)")
    parser.add_argument("--sweepers", type=int, default=2, help="runsweeper processes (default 2)")
    parser.add_argument("--lease", type=int, default=10, help="JOB_LEASE_SECONDS (default 10)")
    parser.add_argument("--grace", type=int, default=15, help="JOB_DISPATCH_GRACE (default 15)")
    parser.add_argument("--max-attempts", type=int, default=5, help="JOB_MAX_ATTEMPTS (default 5, the project's)")
    parser.add_argument("--floor", type=float, default=1.0, help="the provider's poll floor, s (default 1)")
    parser.add_argument("--batch", type=int, default=15, help="jobs per outage phase (default 15)")
    parser.add_argument("--s3-outage", type=float, default=30.0, help="seconds the S3 proxy stays cut (30)")
    parser.add_argument("--down", type=float, default=5.0, help="seconds Redis and PostgreSQL stay down (5)")
    parser.add_argument("--phases", default="kills,redis,postgres,s3", help="which phases, comma-separated")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbelow(10**6)
    print(f"gauntlet seed {seed} (repeat with --seed {seed})", flush=True)
    rng = random.Random(seed)
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="i2v-gauntlet-"))
    os.chmod(tmp, 0o755)
    for old in OUT.glob("gauntlet-*.log"):
        old.unlink()
    pg = redis = s3 = fake = app = None
    verdicts: list[Verdict] = []
    kills: list[Kill] = []
    orphans: list[str] = []
    ledger_ok = None
    ledger_out = ""
    try:
        pg = Postgres(tmp / "pg")
        pg.init()
        redis = Redis(tmp)
        redis.start()
        s3 = S3("i2v-gauntlet")
        from tests.fakes.stability_server import FakeStabilityServer, sample_mp4

        fake = FakeStabilityServer(api_key="sk-gauntlet-" + secrets.token_hex(8)).start()
        fake.script.min_interval = args.floor
        fake_rng = random.Random(seed + 1)
        fake.script.finish_at = lambda index: time.time() + 2 + 3 * fake_rng.random()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.gauntlet_site.settings",
            "I2V_ENV_FILE": str(tmp / "none.env"),
            "DATABASE_URL": pg.url,
            "I2V_VAR_DIR": str(tmp / "var"),
            "MEDIA_ROOT": str(tmp / "media"),
            "WORK_DIR": str(tmp / "work"),
            "SECRET_KEY": secrets.token_urlsafe(50),
            "Q_BROKER_URL": f"redis://127.0.0.1:{redis.port}/0",
            "CACHE_URL": f"redis://127.0.0.1:{redis.port}/1",
            "AWS_STORAGE_BUCKET_NAME": s3.bucket,
            "AWS_S3_ENDPOINT_URL": s3.url,
            "AWS_S3_ADDRESSING_STYLE": "path",
            "AWS_ACCESS_KEY_ID": "gauntlet",
            "AWS_SECRET_ACCESS_KEY": "gauntlet",
            "AWS_S3_REGION_NAME": "us-east-1",
            "Q_WORKERS": str(args.q_workers),
            "Q_SYNC": "false",
            "Q_TIMEOUT": "30",
            "Q_RETRY": "60",
            "JOB_LEASE_SECONDS": str(args.lease),
            "JOB_DISPATCH_GRACE": str(args.grace),
            "JOB_MAX_ATTEMPTS": str(args.max_attempts),
            "SWEEP_INTERVAL": "0.2",
            "STABILITY_API_KEY": fake.api_key,
            "STABILITY_BASE_URL": fake.base_url,
            "STABILITY_POLL_INTERVAL": f"{args.floor:g}",
            "DEFAULT_PROVIDER": "stability",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        (tmp / "var").mkdir()
        os.environ.update(env)
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django_q.conf import Conf

        from jobs import ledger
        from jobs.creation import create_job, create_upload
        from tests.factories import photo_bytes

        Conf.SYNC = False
        logging.getLogger("django-q").setLevel(logging.WARNING)  # not a line per enqueue here
        call_command("migrate", verbosity=0, interactive=False)
        sample_mp4(1024, 576, fake.script.frames, fake.script.fps)
        user = get_user_model().objects.create_user("gauntlet", "gauntlet@example.com", "gauntlet-password")
        ledger.grant(user=user, amount=10**7, reason="gauntlet")
        upload = create_upload(owner=user, source=photo_bytes(1200, 700), filename="photo.jpg")

        def new_job(provider: str = "stability"):
            return db_retry(lambda: create_job(owner=user, upload=upload, provider=provider, enqueue=True)).pk

        app = App(env)
        for i in range(args.workers):
            app.start(f"worker{i + 1}", "runworker")
        for i in range(args.sweepers):
            app.start(f"sweeper{i + 1}", "runsweeper")
        wait_for(
            lambda: all(len(app.worker_children(w)) >= args.q_workers for w in app.workers()),
            120,
            "every cluster's workers",
        )
        print(f"started {args.workers} runworker x Q_WORKERS={args.q_workers}, {args.sweepers} runsweeper", flush=True)
        phases = args.phases.split(",")

        if "kills" in phases:
            t0 = time.time()
            creations = sorted(rng.uniform(0, args.spread) for _ in range(args.jobs))
            moments = sorted(rng.uniform(2, args.spread + 5) for _ in range(args.kills))
            plan = [(t, "create") for t in creations] + [(t, "kill") for t in moments] + [(1.0, "poison")]
            plan.sort()
            job_ids, poison_ids, threads = [], [], []
            print(
                f"phase kills: {args.jobs} jobs over {args.spread:g} s, {args.kills} kills at "
                + ", ".join(f"{m:.1f}" for m in moments)
                + " s",
                flush=True,
            )
            for at, action in plan:
                time.sleep(max(0.0, t0 + at - time.time()))
                app.check_alive()
                if action == "create":
                    job_ids.append(new_job())
                elif action == "poison":
                    poison_ids.append(new_job("poison"))
                else:
                    worker = rng.choice(app.workers())
                    kind = "cluster" if rng.random() < 0.3 else "child"
                    # Steps take milliseconds: strike while some job is leased (up to 3 s), so
                    # a kill can catch a worker at work rather than idle.
                    strike_by = time.time() + 3
                    before = {}
                    while not before and time.time() < strike_by:
                        before = {pk: lease for pk, lease in leased_now().items() if pk not in poison_ids}
                        if not before:
                            time.sleep(0.01)
                    old_workers = set(app.worker_children(worker))
                    if kind == "child":
                        pids = app.worker_children(worker)
                        if not pids:
                            kind = "cluster"
                        else:
                            pid = rng.choice(sorted(pids))
                            os.kill(pid, signal.SIGKILL)
                    if kind == "cluster":
                        pid = app.cluster_of(worker)
                        if pid is None:  # between two clusters: take another runworker's
                            worker = next((w for w in app.workers() if app.cluster_of(w)), None)
                            if worker is None:
                                print(f"  t+{at:.1f}: no cluster is running right now; no kill", flush=True)
                                continue
                            pid = app.cluster_of(worker)
                        os.killpg(pid, signal.SIGKILL)  # the cluster runs in a group of its own
                    kill = Kill(at=time.time(), worker=worker, kind=kind, pid=pid)
                    kills.append(kill)
                    print(f"  t+{at:.1f}: kill -9 {worker} {kind} pid {pid}", flush=True)
                    thread = threading.Thread(target=watch_kill, args=(kill, app, before, old_workers, args.q_workers))
                    thread.start()
                    threads.append(thread)
            finished = wait_final(job_ids + poison_ids, 300, app)
            for thread in threads:
                thread.join()
            from jobs.models import Job, JobEvent

            # A job orphaned by one kill keeps that lease through the next kills: it is the first one's.
            claimed: set = set()
            for kill in kills:
                kill.held = [pk for pk, lease in kill.held if (pk, lease) not in claimed]
                claimed.update((pk, lease) for pk, lease in kill.held_leases)
                for pk in kill.held:
                    row = Job.objects.filter(pk=pk).values("finished_at", "status").first()
                    if row and row["finished_at"] and kill.restarted_at:
                        kill.done_after_restart[pk] = row["finished_at"].timestamp() - kill.restarted_at
            verdict = check("kills + poison", job_ids, poison_ids, fake, time.time() - t0)
            if not finished:
                verdict.problems.append("deadline: jobs still in flight after 300 s")
            for pk in poison_ids:
                events = JobEvent.objects.filter(job_id=pk).order_by("at").values_list("at", "to_status", "message")
                print(f"  poison job {pk}: " + "; ".join(f"{at:%T} {to} {msg}" for at, to, msg in events), flush=True)
            verdicts.append(verdict)

        outages = {
            "redis": lambda: (redis.stop(), time.sleep(args.down), redis.start()),
            "postgres": lambda: (pg.stop(), time.sleep(args.down), pg.start()),
            "s3": lambda: (s3.proxy.cut(), time.sleep(args.s3_outage), s3.proxy.restore()),
        }
        for name in ("redis", "postgres", "s3"):
            if name not in phases:
                continue
            t0 = time.time()
            job_ids = [new_job() for _ in range(args.batch)]
            time.sleep(3)  # some submitted, some polling, some still queued
            print(f"phase {name}: {args.batch} jobs, outage at t+{time.time() - t0:.1f} s", flush=True)
            outages[name]()
            print(f"  {name} back at t+{time.time() - t0:.1f} s", flush=True)
            finished = wait_final(job_ids, 300, app)
            wall = time.time() - t0
            verdict = db_retry(lambda name=name, job_ids=job_ids, wall=wall: check(name, job_ids, [], fake, wall))
            if not finished:
                verdict.problems.append("deadline: jobs still in flight after 300 s")
            verdicts.append(verdict)

        orphans = orphan_submits(fake)
        result = subprocess.run([PY, "manage.py", "checkledger"], cwd=ROOT, env=env, capture_output=True, text=True)
        ledger_ok = result.returncode == 0
        ledger_out = (result.stdout + result.stderr).strip()
    finally:
        if app is not None:
            app.stop()
        if fake is not None:
            fake.stop()
        if s3 is not None:
            s3.stop()
        if redis is not None:
            redis.stop()
        if pg is not None:
            try:
                pg.stop()
            except subprocess.CalledProcessError:
                pass
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    # --- report ---------------------------------------------------------------------------
    broken = []
    print()
    header = ("phase", "jobs", "completed", "failed", "not final", "submits", "ledger wrong", "wall")
    rows = [header] + [
        (
            v.phase,
            str(v.jobs),
            str(v.completed),
            str(v.failed),
            str(v.other),
            str(v.submits),
            str(v.charges_wrong),
            f"{v.wall:.0f} s",
        )
        for v in verdicts
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        print("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
    for v in verdicts:
        broken.extend(f"{v.phase}: {p}" for p in v.problems)
    print()
    print(f"kills ({len(kills)}), lease {args.lease} s, bound lease + 5 s = {args.lease + 5} s after the restart:")
    worst = None
    for kill in kills:
        restart = f"{kill.restarted_at - kill.at:.1f} s" if kill.restarted_at else "never"
        times = ", ".join(f"job {pk} {s:.1f} s" for pk, s in kill.done_after_restart.items()) or "held no job"
        print(f"  {kill.worker} {kind_label(kill.kind)} pid {kill.pid}: restarted after {restart}; {times}")
        if kill.restarted_at is None:
            broken.append(f"{kill.worker} pid {kill.pid} was never replaced")
        for pk, spent in kill.done_after_restart.items():
            worst = spent if worst is None else max(worst, spent)
            if spent > args.lease + 5:
                broken.append(f"job {pk} took {spent:.1f} s after its worker's restart (> lease + 5 s)")
        missing = [pk for pk in kill.held if pk not in kill.done_after_restart]
        if missing and kill.restarted_at:
            broken.append(f"jobs {missing} held by killed pid {kill.pid} never finished")
    if worst is not None:
        print(f"  worst: {worst:.1f} s from restart to done (lease {args.lease} s, bound {args.lease + 5} s)")
    for name in sorted(OUT.glob("gauntlet-worker*.log")):
        text = name.read_text(errors="replace")
        print(
            f"  {name.stem}: {text.count('reincarnated worker')} worker children re-forked by django-q2, "
            f"{text.count(') stalled: ')} clusters replaced as stalled, "
            f"{text.count(') exited with code')} replaced after exiting"
        )
    print(f"provider submits the fake accepted for no job of ours (double submits): {len(orphans)}")
    if orphans:
        broken.append(f"{len(orphans)} submits the fake accepted belong to no job: {orphans[:5]}")
    print(f"checkledger: {'clean' if ledger_ok else 'NOT CLEAN'}: {ledger_out[:500]}")
    if ledger_ok is False:
        broken.append("checkledger found discrepancies")
    if app is not None and app.exits:
        for line in app.exits:
            broken.append(f"process exit: {line}")
    print(f"logs: {OUT}/gauntlet-*.log; seed {seed}")
    if broken:
        print("\nINVARIANTS BROKEN:")
        for line in broken:
            print("  - " + line)
        return 1
    print("\nall invariants held")
    return 0


def kind_label(kind: str) -> str:
    return "worker child" if kind == "child" else "whole cluster"


if __name__ == "__main__":
    sys.exit(main())
