"""The fault gauntlet, short (bench/bench_gauntlet.py is the long one): real
supervised worker clusters on the fake Stability server, killed with SIGKILL
at chosen moments, a poison job that kills its worker every time, and storage
cut for longer than the old code took to quarantine a job. After each: every
job final, one submit per job at the provider, one hold and one capture (or
release) per job, ``checkledger`` clean.

Both clusters run ``bench/gauntlet_site``'s settings, which add the bench's
``poison`` provider (its submit calls ``os._exit``).
"""

from __future__ import annotations

import os
import signal
import time
from io import StringIO
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.core.management import call_command

from jobs import ledger
from jobs.models import Job
from providers import registry
from tests.factories import UserFactory, make_job
from tests.fakes.stability_server import FakeStabilityServer, ResultHold
from tests.processes import Cluster, descendants, wait_until
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LEASE = 10
# Two kills may both catch one job (a worker runs a batch of polls), so the
# kills need a third attempt; the storage cut only needs to outlast two.
KILL_MAX_ATTEMPTS = 3
CUT_MAX_ATTEMPTS = 2


@pytest.fixture
def fake(settings, monkeypatch):
    with FakeStabilityServer(api_key="sk-gauntlet") as server:
        settings.STABILITY_API_KEY = server.api_key
        settings.STABILITY_BASE_URL = server.base_url
        server.script.finish_after_seconds = 2
        server.script.min_interval = 0.5
        monkeypatch.setitem(registry.PROVIDERS, "poison", "bench.gauntlet_site.poison.PoisonProvider")
        yield server
        for hold in server.script._holds:  # never left waiting: the server's stop joins its threads
            hold.release.set()


def gauntlet_cluster(cluster_factory, fake: FakeStabilityServer, max_attempts: int, **env: str) -> Cluster:
    return cluster_factory(
        DJANGO_SETTINGS_MODULE="bench.gauntlet_site.settings",
        STABILITY_BASE_URL=fake.base_url,
        STABILITY_API_KEY=fake.api_key,
        STABILITY_POLL_INTERVAL="0.5",
        JOB_LEASE_SECONDS=str(LEASE),
        JOB_MAX_ATTEMPTS=str(max_attempts),
        **env,
    )


def connection_owner(client_port: int, candidates: list[int]) -> int | None:
    """The process (of ``candidates``) whose TCP socket has local port ``client_port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == client_port:
                inodes.add(f"socket:[{fields[9]}]")
    for pid in candidates:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except (FileNotFoundError, PermissionError):
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in inodes:
                    return pid
            except OSError:
                continue
    return None


def catch_a_poll(fake: FakeStabilityServer, cluster: Cluster) -> tuple[ResultHold, int]:
    """A worker process caught in the middle of a provider poll, and its pid."""
    hold = fake.script.hold_next_result()
    try:
        wait_until(hold.arrived.is_set, 60, lambda: f"no poll came; log:\n{cluster.log_text()[-3000:]}")
        workers = [pid for name in ("runworker", "runworker2") for pid in descendants(cluster.procs[name].pid)]
        pid = connection_owner(hold.client_port, workers)
        assert pid is not None, f"no worker process holds the connection from port {hold.client_port}"
    except BaseException:
        hold.release.set()  # the fake's stop waits for the request's thread
        raise
    return hold, pid


def rich_user():
    user = UserFactory()
    ledger.grant(user=user, amount=1000, reason="The gauntlet's jobs")
    return user


def kinds(job: Job) -> list[str]:
    return sorted(job.ledger.values_list("kind", flat=True))


def assert_ledger_and_submits(fake: FakeStabilityServer, jobs: list[Job], poison: list[Job] = ()) -> None:
    for job in jobs:
        job.refresh_from_db()
        assert job.status == Job.COMPLETED, (job.pk, job.status, job.error_detail)
        assert kinds(job) == ["capture", "hold"], job.pk
    for job in poison:
        job.refresh_from_db()
        assert job.status == Job.FAILED and job.error_code == "internal_error", (job.status, job.error_detail)
        assert job.error_detail.startswith(f"Quarantined after {KILL_MAX_ATTEMPTS} attempts")
        assert job.provider_job_id == ""
        assert kinds(job) == ["hold", "release"]
    # At most one submit per job: every generation the provider made is one job's.
    assert sorted(j.provider_job_id for j in jobs) == sorted(j.id for j in fake.jobs)
    assert len(fake.submits) == len(jobs)
    out = StringIO()
    call_command("checkledger", stdout=out)
    assert "consistent" in out.getvalue()


def all_final(jobs: list[Job]):
    return lambda: Job.objects.filter(pk__in=[j.pk for j in jobs]).exclude(status__in=Job.FINAL_STATES).count() == 0


def test_workers_killed_mid_poll_and_a_poison_job_lose_nothing_and_charge_once(cluster_factory, fake):
    cluster = gauntlet_cluster(cluster_factory, fake, KILL_MAX_ATTEMPTS)
    cluster.start("runworker")
    cluster.start("runworker2")
    cluster.start("sweeper")
    user = rich_user()
    poison = make_job(user, enqueue=True, provider="poison")
    jobs = [make_job(user, enqueue=True, provider="stability") for _ in range(10)]
    try:
        # A worker child killed while it waits on the provider: its cluster forks another.
        hold, child = catch_a_poll(fake, cluster)
        os.kill(child, signal.SIGKILL)
        child_killed_at, child_job = time.monotonic(), hold.job_id
        hold.release.set()

        # A whole cluster killed the same way: its supervisor starts another.
        hold, child = catch_a_poll(fake, cluster)
        group = os.getpgid(child)
        assert group not in (cluster.procs["runworker"].pid, cluster.procs["runworker2"].pid)
        os.killpg(group, signal.SIGKILL)
        cluster_killed_at, cluster_job = time.monotonic(), hold.job_id
        hold.release.set()

        done_at: dict[str, float] = {}

        def finished() -> bool:
            for provider_id in (child_job, cluster_job):
                if (
                    provider_id not in done_at
                    and Job.objects.filter(provider_job_id=provider_id, status=Job.COMPLETED).exists()
                ):
                    done_at[provider_id] = time.monotonic()
            return all_final([poison, *jobs])()

        wait_until(finished, 120, lambda: f"jobs still running; log:\n{cluster.log_text()[-4000:]}", interval=0.1)
    finally:
        for hold in fake.script._holds:
            hold.release.set()

    assert_ledger_and_submits(fake, jobs, [poison])
    # Taken up again once the killed worker's lease ran out, by a live worker.
    assert done_at[child_job] - child_killed_at <= LEASE + 5
    assert done_at[cluster_job] - cluster_killed_at <= LEASE + 5
    assert "worker cluster started" in cluster.log_text()


def test_storage_cut_for_longer_than_the_attempts_last_loses_and_quarantines_nothing(cluster_factory, fake, settings):
    if not getattr(settings, "AWS_STORAGE_BUCKET_NAME", ""):
        pytest.skip("a storage cut needs remote storage (S3): run with the scale configuration")
    endpoint = urlparse(settings.AWS_S3_ENDPOINT_URL)
    proxy = TcpProxy((endpoint.hostname, endpoint.port or 80))
    try:
        cluster = gauntlet_cluster(
            cluster_factory, fake, CUT_MAX_ATTEMPTS, AWS_S3_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}"
        )
        cluster.start("runworker")
        cluster.start("sweeper")
        fake.script.never_finish = True
        user = rich_user()
        jobs = [make_job(user, enqueue=True, provider="stability") for _ in range(4)]
        pks = [j.pk for j in jobs]
        wait_until(
            lambda: Job.objects.filter(pk__in=pks, status=Job.RUNNING).count() == len(jobs),
            60,
            lambda: f"not all running; log:\n{cluster.log_text()[-3000:]}",
        )

        # Storage goes away; then the provider finishes every video, which cannot be saved.
        proxy.cut()
        with fake._lock:
            for fake_job in fake.jobs:
                fake_job.finish_at = time.time()
        retries: dict[str, set] = {str(pk): set() for pk in pks}

        def retried_past_the_attempt_limit() -> bool:
            for job in Job.objects.filter(pk__in=pks):
                assert job.status not in Job.FINAL_STATES, f"{job.pk} ended in the outage: {job.error_detail}"
                if job.status_message.startswith("Delayed by an outage"):
                    retries[str(job.pk)].add(job.next_poll_at)
            # Old code quarantined at the claim after MAX_ATTEMPTS steps that raised.
            return all(len(seen) > CUT_MAX_ATTEMPTS + 1 for seen in retries.values())

        wait_until(retried_past_the_attempt_limit, 90, lambda: f"retries seen: {retries}", interval=0.1)
        assert Job.objects.filter(pk__in=pks, status=Job.FINALIZING).count() == len(jobs)

        proxy.restore()
        restored_at = time.monotonic()
        wait_until(all_final(jobs), 60, lambda: f"jobs still waiting; log:\n{cluster.log_text()[-4000:]}")
        recovery = time.monotonic() - restored_at
    finally:
        proxy.close()

    assert_ledger_and_submits(fake, jobs)
    # The waits between retries are a few seconds, so the jobs resume soon after storage does.
    assert recovery < 20, recovery
