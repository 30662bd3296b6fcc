"""What counting the request budget costs, and whether it holds, against real gunicorn.

Run from the repository root (``make bench-throttle`` runs the same)::

    .venv/bin/python bench/bench_throttle.py [--seconds 4] [--rounds 7] [--connections 8]

It makes a throwaway install (SQLite in a temporary var directory, the
default file cache), starts gunicorn as ``make run`` does (2 sync workers)
with the comparison endpoints of ``bench/throttle_site`` and measures:

0. CPU time per request in-process (Django's test client), per endpoint below:
   robust against other work on the machine, unlike requests/s.
1. Throughput under load (``wrk``, or a threaded Python client when wrk is
   missing), interleaved over ``--rounds`` rounds, median requests/s of:
   a plain Django view doing the same read (key check + balance); the API's
   ``GET /api/v1/credits`` with no budget counted (DRF's own cost); the same
   with the budget counted as before (per key, timestamps in the file cache);
   and ``GET /api/v1/credits`` as it is now (per user, ``jobs.api.ratelimit``).
   The load is spread over 300 users (one key each) so no one is refused:
   each budget's history is as long as in real use.
2. Whether the budget holds: 300 requests from 20 threads at once, spread
   over one user's 5 keys, budget 120/hour; before and now.
3. Wrong keys: 200 requests with made-up keys from one address, 20 threads at
   once, failure budget 20/hour; before and now.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
USERS = 300

ENDPOINTS = {
    "plain Django view": "/bench/plain-credits",
    "API, no budget": "/bench/credits-unthrottled",
    "API, budget before": "/bench/credits-before",
    "API, budget now": "/api/v1/credits",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        command = [sys.executable, "-m", "gunicorn", "i2v_site.wsgi", "--bind", self.url.removeprefix("http://")]
        command += ["--workers", "2", "--worker-class", "sync", "--timeout", "60"]
        with log.open("a") as handle:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if get(f"{self.url}/bench/plain-credits", {}) == 401:
                return
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"gunicorn did not start; see {log}:\n{log.read_text()[-2000:]}")

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(20)


def get(url: str, headers: dict[str, str]) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def load(url: str, keys: list[str], seconds: float, connections: int, lua: Path) -> tuple[float, int]:
    """Requests/s over ``seconds`` and how many were not 200, rotating through ``keys``."""
    if shutil.which("wrk"):
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "-s", str(lua), url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
        bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        return rate, int(bad[1]) if bad else 0
    done, bad, lock = [0], [0], threading.Lock()
    stop = time.monotonic() + seconds

    def worker(offset: int) -> None:
        n = offset
        while time.monotonic() < stop:
            code = get(url, {"Authorization": f"Bearer {keys[n % len(keys)]}"})
            n += connections
            with lock:
                done[0] += 1
                bad[0] += code != 200

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done[0] / (time.monotonic() - started), bad[0]


def burst(url: str, headers: list[dict[str, str]], threads: int = 20) -> list[int]:
    barrier = threading.Barrier(threads)

    def send(i: int) -> int:
        if i < threads:
            barrier.wait()
        return get(url, headers[i])

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(send, range(len(headers))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="i2v-bench-throttle-") as tmp:
        var = Path(tmp)
        (var / "staticfiles").mkdir()  # whitenoise warns without it
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.throttle_site.settings",
            "DATABASE_URL": f"sqlite:///{var / 'bench.sqlite3'}",
            "I2V_VAR_DIR": str(var),
            "I2V_ENV_FILE": str(var / "none.env"),
            "ALLOWED_HOSTS": "127.0.0.1",
            "API_RATE": "120/minute",  # the default
        }
        os.environ.update(env)
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        from jobs import ledger
        from jobs.apikeys import create_api_key

        call_command("migrate", verbosity=0)
        users = [get_user_model().objects.create(username=f"bench{n}") for n in range(USERS)]
        keys = []
        for user in users:
            ledger.open_account(user)
            keys.append(create_api_key(user=user, name="bench")[1])
        lua = var / "keys.lua"
        quoted = ", ".join(f'"Bearer {key}"' for key in keys)
        lua.write_text(
            f"local keys = {{{quoted}}}\nlocal i = 0\n"
            "request = function()\n  i = i % #keys + 1\n"
            '  return wrk.format(nil, nil, {["Authorization"] = keys[i]})\nend\n'
        )

        # 0. CPU time per request in this process (Django's test client: no HTTP), which other
        # work on the machine does not blur the way it blurs requests/s.
        from django.test import Client

        clients = [Client(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_HOST="127.0.0.1") for key in keys]
        cpu: dict[str, list[float]] = {name: [] for name in ENDPOINTS}
        for round_number in range(args.rounds + 1):
            for name, path in ENDPOINTS.items():
                started = time.process_time()
                for n in range(1000):
                    assert clients[n % USERS].get(path).status_code == 200
                if round_number:
                    cpu[name].append((time.process_time() - started) / 1000 * 1e6)
        print(f"0. CPU per request in-process (1000 requests x {args.rounds} rounds, median)")
        floor = statistics.median(cpu["API, no budget"])
        print(f"   {'endpoint':<22}{'µs CPU':>12}{'budget cost':>13}")
        for name in ENDPOINTS:
            median = statistics.median(cpu[name])
            extra = f"{median - floor:>+12.0f}" if name.startswith("API, budget") else ""
            print(f"   {name:<22}{median:>12.0f}{extra}")

        server = Server(env, var / "gunicorn.log")
        rates: dict[str, list[float]] = {name: [] for name in ENDPOINTS}
        refused: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
        try:
            for round_number in range(args.rounds + 1):  # the first round warms up and is not counted
                for name, path in ENDPOINTS.items():
                    rate, bad = load(server.url + path, keys, args.seconds, args.connections, lua)
                    if round_number:
                        rates[name].append(rate)
                        refused[name] += bad
        finally:
            server.stop()

        loader = "wrk" if shutil.which("wrk") else "python threads"
        print(f"1. GET, {args.connections} connections ({loader}), 2 gunicorn sync workers, {USERS} users,")
        print(f"   {args.seconds:g} s per run, {args.rounds} rounds interleaved (median requests/s)")
        plain = statistics.median(rates["plain Django view"])
        print(f"   {'endpoint':<22}{'requests/s':>12}{'vs plain':>10}{'non-200':>9}   all rounds")
        for name in ENDPOINTS:
            median = statistics.median(rates[name])
            runs = ", ".join(f"{r:.0f}" for r in rates[name])
            print(f"   {name:<22}{median:>12.0f}{median / plain:>9.2f}x{refused[name]:>9}   {runs}")

        # 2 and 3: does the budget hold under concurrency, before and now?
        owner = get_user_model().objects.create(username="five-keys")
        ledger.open_account(owner)
        five = [create_api_key(user=owner, name=f"k{n}")[1] for n in range(5)]
        strict = {**env, "API_RATE": "120/hour", "API_AUTH_FAILURE_RATE": "20/hour"}
        shutil.rmtree(var / "ratelimit", ignore_errors=True)
        server = Server(strict, var / "gunicorn.log")
        try:
            print("2. 300 requests from 20 threads at once, one user's 5 keys, budget 120/hour: got 200")
            headers = [{"Authorization": f"Bearer {five[n % 5]}"} for n in range(300)]
            for name in ("API, budget before", "API, budget now"):
                codes = burst(server.url + ENDPOINTS[name], headers)
                print(f"   {name:<22}{codes.count(200):>5} of 300   (others: {sorted(set(codes) - {200})})")
            print("3. 200 made-up keys from one address, 20 threads at once, failure budget 20/hour")
            guesses = [{"Authorization": f"Bearer i2v_{n:08x}_guess"} for n in range(200)]
            for name in ("API, budget before", "API, budget now"):
                codes = burst(server.url + ENDPOINTS[name], guesses)
                print(f"   {name:<22}{codes.count(401):>5} got 401, {codes.count(429)} got 429")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
