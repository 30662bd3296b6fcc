"""A thousand webhook deliveries to a receiver that never answers, and another user's job.

Run from the repository root::

    .venv/bin/python bench/bench_webhooks.py [--backlog 1000] [--jobs 5] [--workers 2]

Everything runs on 127.0.0.1 in a throwaway directory (its own SQLite file,
media and scratch folders). In this process: a callback receiver
(tests/fakes) that holds every request and never answers. As subprocesses: a
real ``manage.py runworker`` (``--workers``) and a real ``manage.py
runsweeper`` with the project's defaults: WEBHOOK_TIMEOUT 15 s,
WEBHOOK_ENDPOINT_CONCURRENCY 4, WEBHOOK_MAX_TASKS = workers - 1.

Baseline: ``--jobs`` jobs of user B on the embedded ``local`` provider, one
after the other, each timed from its creation to ``completed``, with no
delivery pending anywhere.

Backlog: user A's ``--endpoints`` endpoints point at the hanging receiver and
``--backlog`` deliveries spread over them are due at once (written as the
outbox writes them). Once the
receiver holds the first requests, the same ``--jobs`` jobs of user B are run
and timed the same way. Printed: both timings, their ratio, how many attempts
the hanging receiver got meanwhile and the most deliveries seen in flight.
Then (``--no-uncapped`` skips it) the cluster is restarted with
WEBHOOK_MAX_TASKS = workers, so delivery tasks may take every worker, and the
jobs are timed once more: what the cap is for.
Logs are kept in bench/out/. A default run takes about two minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_inflight import (
    OUT,
    configure_environment,
    log_excerpt,
    percentile,
    setup_django,
    start_process,
    stop_process,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=1000, help="deliveries to the hanging receiver (1000)")
    parser.add_argument("--endpoints", type=int, default=2, help="endpoints the backlog is spread over (2)")
    parser.add_argument("--jobs", type=int, default=5, help="jobs of the other user per phase (5)")
    parser.add_argument("--workers", type=int, default=2, help="Q_WORKERS of the cluster (2)")
    parser.add_argument(
        "--uncapped",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the backlog phase with WEBHOOK_MAX_TASKS = workers (default: yes)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse_args(argv)


def wait(condition, timeout: float, what: str, procs: dict):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see its log in {OUT}")
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def run(args: argparse.Namespace) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="i2v-bench-webhooks-"))
    procs: dict = {}
    load_start = os.getloadavg()
    from tests.fakes.callback_receiver import FakeCallbackReceiver

    receiver = FakeCallbackReceiver().start()
    receiver.default_status = "hang"
    try:
        configure_environment(tmp, 2.0, args.workers, "unused")
        os.environ.update(
            {"DEFAULT_PROVIDER": "local", "SAFE_FETCH_ALLOW": receiver.address, "PUBLIC_BASE_URL": "http://bench"}
        )
        warnings.filterwarnings("ignore", message="No directory at")
        setup_django()
        from django.conf import settings
        from django.core.management import call_command
        from django_q.conf import Conf

        from jobs import pipeline
        from jobs.models import CallbackAttempt, CallbackDelivery, Job
        from jobs.webhooks.endpoints import create_endpoint
        from tests.factories import UserFactory, make_job
        from tests.webhook_helpers import pending_backlog

        Conf.SYNC = False
        call_command("migrate", verbosity=0, interactive=False)
        logs = {"worker": OUT / "webhooks-worker.log", "sweeper": OUT / "webhooks-sweeper.log"}
        for name, command in (("worker", "runworker"), ("sweeper", "runsweeper")):
            logs[name].write_text("")
            procs[name] = start_process(command, logs[name])
        print(
            f"Q_WORKERS={args.workers}, WEBHOOK_TIMEOUT={settings.WEBHOOK_TIMEOUT:g} s, "
            f"WEBHOOK_ENDPOINT_CONCURRENCY={settings.WEBHOOK_ENDPOINT_CONCURRENCY}, "
            f"WEBHOOK_MAX_TASKS={settings.WEBHOOK_MAX_TASKS}",
            flush=True,
        )
        other = UserFactory(username="other")

        def one_job() -> float:
            job = make_job(other, enqueue=True)
            started = time.monotonic()
            wait(lambda: Job.objects.get(pk=job.pk).is_final, 600, f"job {job.pk}", procs)
            job.refresh_from_db()
            if job.status != Job.COMPLETED:
                raise RuntimeError(f"job {job.pk} ended {job.status}: {job.error_message}")
            return time.monotonic() - started

        one_job()  # warm-up: the cluster is up and the code paths are loaded
        baseline = [one_job() for _ in range(args.jobs)]
        print(f"  baseline: {' '.join(f'{t:.2f}' for t in baseline)} s", flush=True)

        owner = UserFactory(username="integrator")
        hooks = [
            create_endpoint(owner=owner, url=f"{receiver.base_url}/hooks/{i}", public_base_url="http://bench")[0]
            for i in range(args.endpoints)
        ]
        finished = make_job(owner)
        pipeline.fail(finished, "bench", "A job whose webhook is due.")
        for i, endpoint in enumerate(hooks):
            pending_backlog(endpoint, finished, args.backlog // args.endpoints + (i < args.backlog % args.endpoints))
        backlog_rows = CallbackDelivery.objects.filter(endpoint__in=hooks)
        wait(lambda: len(receiver.received) >= 1, 120, "the first attempt at the hanging receiver", procs)
        seen_in_flight = 0
        seen_receivers = 0

        def jobs_beside_the_backlog() -> list[float]:
            nonlocal seen_in_flight, seen_receivers
            seen_in_flight = seen_receivers = 0
            times = []
            for _ in range(args.jobs):
                job = make_job(other, enqueue=True)
                started = time.monotonic()

                def done(job=job) -> bool:
                    nonlocal seen_in_flight, seen_receivers
                    held = list(backlog_rows.filter(lease_until__gt=time_now()).values_list("receiver", flat=True))
                    seen_in_flight = max(seen_in_flight, len(held))
                    seen_receivers = max(seen_receivers, len(set(held)))
                    return Job.objects.get(pk=job.pk).is_final

                wait(done, 600, f"job {job.pk}", procs)
                job.refresh_from_db()
                if job.status != Job.COMPLETED:
                    raise RuntimeError(f"job {job.pk} ended {job.status}: {job.error_message}")
                times.append(time.monotonic() - started)
            return times

        phase_start = time.monotonic()
        backlog = jobs_beside_the_backlog()
        phase_s = time.monotonic() - phase_start
        print(f"  with the backlog: {' '.join(f'{t:.2f}' for t in backlog)} s", flush=True)
        attempts = CallbackAttempt.objects.filter(delivery__in=backlog_rows).count()
        pending = backlog_rows.filter(status=CallbackDelivery.PENDING).count()
        requests = len(receiver.received)
        capped_in_flight = (seen_in_flight, seen_receivers)

        # Why the cap: the same, with delivery tasks allowed on every worker.
        uncapped = []
        if args.uncapped:
            for proc in procs.values():
                stop_process(proc)
            os.environ["WEBHOOK_MAX_TASKS"] = str(args.workers)
            backlog_rows.update(lease_until=None, next_attempt_at=time_now())
            before = len(receiver.received)
            for name, command in (("worker", "runworker"), ("sweeper", "runsweeper")):
                procs[name] = start_process(command, logs[name])
            wait(lambda: len(receiver.received) > before, 120, "the uncapped cluster's first attempt", procs)
            uncapped = jobs_beside_the_backlog()
            print(
                f"  uncapped (WEBHOOK_MAX_TASKS={args.workers}): {' '.join(f'{t:.2f}' for t in uncapped)} s; "
                f"at most {seen_in_flight} deliveries to {seen_receivers} endpoint(s) in flight"
            )
        base_median, backlog_median = percentile(baseline, 50), percentile(backlog, 50)
        print()
        print(f"| another user's job, creation -> completed ({args.jobs} jobs) | median | max |")
        print("|---|---|---|")
        print(f"| no deliveries pending | {base_median:.2f} s | {max(baseline):.2f} s |")
        print(
            f"| {args.backlog} deliveries due to {args.endpoints} endpoints that never answer | {backlog_median:.2f} s "
            f"| {max(backlog):.2f} s |"
        )
        print(f"| ratio | {backlog_median / base_median:.2f}x | {max(backlog) / max(baseline):.2f}x |")
        if uncapped:
            print(
                f"| the same, WEBHOOK_MAX_TASKS={args.workers} (no worker kept for jobs) "
                f"| {percentile(uncapped, 50):.2f} s ({percentile(uncapped, 50) / base_median:.2f}x) "
                f"| {max(uncapped):.2f} s |"
            )
        print()
        print(
            f"During the {phase_s:.0f} s of the backlog phase the hanging receiver got {requests} "
            f"requests ({attempts} attempts recorded as failed after the timeout); at most "
            f"{capped_in_flight[0]} deliveries to {capped_in_flight[1]} endpoint(s) were in flight at once; "
            f"{pending} of {backlog_rows.count()} still pending at the end."
        )
        print(f"Load average: start {load_start[0]:.2f}, end {os.getloadavg()[0]:.2f}")
        for name, path in logs.items():
            counts, lines = log_excerpt(path)
            worrying = {marker: count for marker, count in counts.items() if count}
            if worrying:
                print(f"{name} log: {worrying}; first: {lines[:3]}")
        return 0
    finally:
        for proc in procs.values():
            stop_process(proc)
        receiver.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def time_now():
    from django.utils import timezone

    return timezone.now()


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
