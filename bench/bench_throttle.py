"""What counting each API key's request budget costs, by cache backend.

Run from the repository root (``make bench-throttle`` runs the same)::

    .venv/bin/python bench/bench_throttle.py [--requests 2000] [--rounds 3]

Everything runs in this process on a throwaway SQLite file: ``--requests``
authenticated ``GET /api/v1/credits`` calls through Django's WSGI stack (the
test client, so no network or HTTP parsing blurs the figure), 100 per API key
under the default budget of 120/minute (so each key's history is as long as
in real use and nothing is refused), for each configuration, interleaved over
``--rounds`` rounds:

* a dummy cache that stores nothing (the floor: the request and the budget
  arithmetic without any storage);
* the local-memory cache (what the project used before; not shared between
  web processes, so each of ``make run``'s workers granted the whole budget);
* the file cache in the var directory (the default now, shared);
* the database cache (``CACHE_URL=dbcache://…``, shared).

It prints the median microseconds per request of each and its ratio to the
dummy-cache floor measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
KEY_BUDGET = 100  # requests per key, under the default API_RATE of 120/minute


def configure(var: Path) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "i2v_site.settings",
            "DATABASE_URL": f"sqlite:///{var / 'bench.sqlite3'}",
            "I2V_VAR_DIR": str(var),
            "I2V_ENV_FILE": str(var / "none.env"),
            "API_RATE": "120/minute",  # the default
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="i2v-bench-throttle-") as tmp:
        var = Path(tmp)
        (var / "staticfiles").mkdir()  # whitenoise warns without it
        configure(var)
        import django

        django.setup()
        from django.core.cache import cache as django_cache
        from django.core.management import call_command
        from django.test import Client, override_settings

        from jobs.apikeys import create_api_key
        from tests.factories import UserFactory

        call_command("migrate", verbosity=0)
        call_command("createcachetable", "bench_cache", verbosity=0)
        # Enough keys that none runs out of its budget: each history stays as long as in real use.
        user = UserFactory()
        clients = [
            Client(HTTP_AUTHORIZATION=f"Bearer {create_api_key(user=user, name=f'k{n}')[1]}", HTTP_HOST="127.0.0.1")
            for n in range(-(-args.requests // KEY_BUDGET))
        ]

        file_cache = {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": f"{tmp}/cache"}
        configs = {
            "dummy (floor)": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
            "local memory": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "file (default)": file_cache,
            "database": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "bench_cache"},
        }
        per_request: dict[str, list[float]] = {name: [] for name in configs}
        for round_number in range(args.rounds + 1):  # the first round warms up and is not counted
            for name, cache in configs.items():
                with override_settings(CACHES={"default": cache}):
                    django_cache.clear()
                    started = time.perf_counter()
                    for n in range(args.requests):
                        response = clients[n // KEY_BUDGET].get("/api/v1/credits")
                    if round_number:
                        per_request[name].append((time.perf_counter() - started) / args.requests * 1e6)
                    assert response.status_code == 200, response.content

        floor = statistics.median(per_request["dummy (floor)"])
        print(f"{args.requests} GET /api/v1/credits per configuration, {args.rounds} rounds (median)")
        print(f"{'cache':<16}{'µs/request':>12}{'vs floor':>12}")
        for name, times in per_request.items():
            median = statistics.median(times)
            print(f"{name:<16}{median:>12.0f}{median / floor:>11.2f}x")


if __name__ == "__main__":
    main()
