"""What checking a kept PostgreSQL connection costs a request, by kind of check.

Run from the repository root (``make bench-health-check`` runs the same)::

    .venv/bin/python bench/bench_health_check.py [--cycles 2000] [--rounds 7]

In one process, on the PostgreSQL database ``i2v_bench_health`` (made anew),
each cycle is what a status poll does with the database: the request boundary
(Django's ``close_old_connections``, which marks the kept connection for a
check before its next query), then the API key's lookup and the job's read,
as the plain view of ``bench/bench_hot_read.py`` makes them. Three ways to
check, their rounds interleaved so that the machine's drift falls on all alike:

* ``SELECT 1``: Django's own PostgreSQL check, a round trip;
* ``socket``: i2v's (``i2v_site/postgresql``), a look at the socket;
* ``none``: no check (``?conn_health_checks=false``), the floor.

Prints the median over rounds of wall and CPU time per cycle, and each
against ``SELECT 1`` within a round (median of the ratios).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
POSTGRES = "postgres://postgres@127.0.0.1:5432/i2v_bench_health"


def setup_django() -> None:
    os.environ["DATABASE_URL"] = POSTGRES
    os.environ.setdefault("I2V_ENV_FILE", "/nonexistent")
    os.environ["DJANGO_SETTINGS_MODULE"] = "i2v_site.settings"
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS i2v_bench_health WITH (FORCE)")
        admin.execute("CREATE DATABASE i2v_bench_health")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    setup_django()

    from django.db import close_old_connections, connections
    from django.db.backends.postgresql.base import DatabaseWrapper as DjangoWrapper

    from jobs import apikeys
    from jobs.models import Job
    from tests.factories import UserFactory, make_job

    user = UserFactory()
    job = make_job(user)
    _, raw_key = apikeys.create_api_key(user=user, name="bench")
    wrapper = connections["default"]
    ours = type(wrapper).is_usable

    def cycle() -> None:
        close_old_connections()
        key = apikeys.find_key(raw_key)
        Job.objects.filter(pk=job.pk, owner_id=key.user_id).values_list("status", flat=True).first()

    def use(kind: str) -> None:
        wrapper.health_check_enabled = kind != "none"
        type(wrapper).is_usable = DjangoWrapper.is_usable if kind == "SELECT 1" else ours

    kinds = ["SELECT 1", "socket", "none"]
    wall: dict[str, list[float]] = {kind: [] for kind in kinds}
    cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
    for round_number in range(args.rounds + 1):  # the first round warms up and is not counted
        for kind in kinds:
            use(kind)
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(args.cycles):
                cycle()
            if round_number:
                wall[kind].append((time.perf_counter() - start_wall) / args.cycles * 1e6)
                cpu[kind].append((time.process_time() - start_cpu) / args.cycles * 1e6)
    use("socket")

    print(f"PostgreSQL, {args.cycles} cycles x {args.rounds} rounds (median over rounds; ratios within a round)")
    print(f"   {'check':<10} {'µs wall':>8} {'vs SELECT 1':>12} {'µs CPU':>8} {'vs SELECT 1':>12}")
    for kind in kinds:
        wall_ratio = statistics.median(w / base for w, base in zip(wall[kind], wall["SELECT 1"], strict=True))
        cpu_ratio = statistics.median(c / base for c, base in zip(cpu[kind], cpu["SELECT 1"], strict=True))
        print(
            f"   {kind:<10} {statistics.median(wall[kind]):>8.0f} {wall_ratio:>11.2f}x"
            f" {statistics.median(cpu[kind]):>8.0f} {cpu_ratio:>11.2f}x"
        )


if __name__ == "__main__":
    main()
