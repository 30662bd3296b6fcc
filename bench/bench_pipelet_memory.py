"""Memory a worker spends turning a 40 MB Pipelet result into an MP4 file.

Run from the repository root (``make bench-pipelet`` runs the same)::

    .venv/bin/python bench/bench_pipelet_memory.py [--mb 40] [--repeat 3]

The fake Pipelet (``tests/fakes/pipelet_server.py``) runs in this process and
serves, over loopback HTTP, a finished job whose result is
``{"video": {"data_uri": "<base64>"}}`` of about ``--mb`` MB: a real H.264 MP4
made large by a trailing ``free`` box of random bytes (players skip it). Each
measurement is a fresh Python process that imports the same modules, then:

* ours: ``providers.results.save_base64_video`` on the streamed response (the
  scanner of ``providers/data_uri.py`` decoding 64 KiB pieces to a file), then
  the MP4 check every provider's result gets;
* baseline: ``requests.get(...).json()``, ``base64.b64decode`` of the field,
  the bytes written to a file, the same MP4 check;
* the decoding alone (``data_uri.extract`` from the stream to a file), and
  the MP4 check alone on the file written (PyAV, one 720p frame decoded): a
  fixed cost of every provider's result, whatever its size, shown apart.

The figure is the peak resident size during the work (``VmHWM``, reset through
``/proc/self/clear_refs`` first) less the resident size just before it, in MiB;
the worst of ``--repeat`` runs is shown. Every process checks that the file
they wrote is the served video, byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "pl-bench"

CHILD = r"""
import base64, hashlib, json, os, sys, time
sys.path.insert(0, sys.argv[1])
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "i2v_site.settings")
import django
django.setup()
import requests
from providers import data_uri, http, results

mode, url, token, out = sys.argv[2:6]

def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from here
before = status("VmRSS")
started = time.perf_counter()
if mode == "ours":
    response = http.request("GET", url, headers={"Authorization": "Bearer " + token}, stream=True, ok=(200,))
    found = results.save_base64_video(response, out, label="Pipelet", what="GET " + url)
    assert not found.link
elif mode == "decode":
    response = http.request("GET", url, headers={"Authorization": "Bearer " + token}, stream=True, ok=(200,))
    with open(out, "wb") as f:
        data_uri.extract(response.iter_content(65536), f, max_bytes=10**9)
elif mode == "check":
    problem = results.video_problem(out)  # the file an earlier run wrote
    assert not problem, problem
else:
    body = requests.get(url, headers={"Authorization": "Bearer " + token}, timeout=60).json()
    data = base64.b64decode(body["video"]["data_uri"].partition("base64,")[2])
    with open(out, "wb") as f:
        f.write(data)
    problem = results.video_problem(out)
    assert not problem, problem
    del body, data
seconds = time.perf_counter() - started
peak = status("VmHWM")
digest = hashlib.sha256(open(out, "rb").read()).hexdigest()
print(json.dumps({"growth": peak - before, "seconds": seconds, "sha256": digest}))
"""


def big_mp4(total_bytes: int) -> bytes:
    from tests.fakes.stability_server import sample_mp4

    video = sample_mp4(1280, 720)
    pad = total_bytes - len(video)
    return video + pad.to_bytes(4, "big") + b"free" + os.urandom(pad - 8)


def finished_job(fake) -> str:
    """Create a job on the fake and poll it to COMPLETED; its result URL."""
    import base64
    import io

    from PIL import Image

    image = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(image, "PNG")
    body = {"prompt": "bench", "data_uri": base64.b64encode(image.getvalue()).decode(), "duration": 5, "height": 720}
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    base = f"{fake.base_url}/queue/wan22-fast-i2v"
    create = urllib.request.Request(base, json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(create) as answer:
        request_id = json.load(answer)["request_id"]
    for _ in range(100):
        look = urllib.request.Request(f"{base}/requests/{request_id}/status", headers=headers)
        with urllib.request.urlopen(look) as answer:
            if json.load(answer)["status"] == "COMPLETED":
                return f"{base}/requests/{request_id}"
    raise SystemExit("the fake never completed the job")


def measure(mode: str, url: str, out: Path) -> dict:
    env = {**os.environ, "I2V_VAR_DIR": str(out.parent / "var")}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT), mode, url, TOKEN, str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=40.0, help="Size of the result body in MB (base64 JSON).")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from tests.fakes.pipelet_server import FakePipeletServer

    video = big_mp4(int(args.mb * 1_000_000 * 3 / 4))
    expected = hashlib.sha256(video).hexdigest()
    with FakePipeletServer(token=TOKEN) as fake, tempfile.TemporaryDirectory() as folder:
        fake.script.video = video
        fake.script.result_prefix = True
        fake.script.queue_positions, fake.script.progress = [0], [24]
        url = finished_job(fake)
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})) as r:
            body_bytes = len(r.read())
        runs: dict[str, list[dict]] = {"ours": [], "baseline": []}
        for index in range(args.repeat):
            for mode in ("ours", "baseline"):
                result = measure(mode, url, Path(folder) / f"{mode}-{index}.mp4")
                if result["sha256"] != expected:
                    raise SystemExit(f"{mode}: the file written is not the video served")
                runs[mode].append(result)
            runs.setdefault("decode", []).append(measure("decode", url, Path(folder) / f"decode-{index}.mp4"))
            # The MP4 check alone, on the file just written: what every provider's result costs.
            runs.setdefault("check", []).append(measure("check", url, Path(folder) / f"ours-{index}.mp4"))

    ours = max(r["growth"] for r in runs["ours"])
    baseline = max(r["growth"] for r in runs["baseline"])
    print(f"Result body: {body_bytes / 1e6:.1f} MB of JSON holding a {len(video) / 1e6:.1f} MB MP4 (base64)")
    print(f"Runs: {args.repeat} of each, fresh processes; worst peak growth shown (MiB)")
    print(f"  ours (streamed scanner, 64 KiB pieces):  {ours:7.1f} MiB   {_seconds(runs['ours'])}")
    print(f"  baseline (json.loads + b64decode):        {baseline:7.1f} MiB   {_seconds(runs['baseline'])}")
    decode = max(r["growth"] for r in runs["decode"])
    check = max(r["growth"] for r in runs["check"])
    print(f"  ours, the decoding alone (data_uri.extract to a file): {decode:.1f} MiB   {_seconds(runs['decode'])}")
    print(f"  the MP4 check alone (PyAV opens the file, decodes one 720p frame): {check:.1f} MiB")
    print(f"  ratio baseline / ours: {baseline / max(ours, 0.1):.0f}x")


def _seconds(runs: list[dict]) -> str:
    times = sorted(r["seconds"] for r in runs)
    return f"(median {times[len(times) // 2]:.2f} s)"


if __name__ == "__main__":
    main()
