"""Image intake in bounded memory: the decoded picture is the only full-size copy, the
memory is handed back afterwards, and a create that will be refused decodes nothing."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jobs import creation, intake
from jobs.models import Job, Upload
from tests.api_helpers import image_file, key_client
from tests.factories import photo_bytes
from tests.live_web import LiveWeb

ROOT = Path(__file__).resolve().parent.parent


def picture(width: int, height: int, mode: str) -> Image.Image:
    """An asymmetric picture (so a wrong turn or flip shows), with varying alpha where the mode has it."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // width).astype(np.uint8)
    g = (y * 255 // height).astype(np.uint8)
    b = ((x // 97 + y // 61) % 2 * 200).astype(np.uint8)
    b[: height // 5, : width // 7] = rng.integers(0, 255, size=(height // 5, width // 7), dtype=np.uint8)
    a = ((np.sin(x / 150) + np.cos(y / 90) + 2) * 63).astype(np.uint8)
    rgba = Image.fromarray(np.dstack([r, g, b, a]), "RGBA")
    if mode == "RGBA":
        return rgba
    if mode == "P":  # a palette with one transparent entry
        pal = rgba.convert("RGB").quantize(64)
        pal.info["transparency"] = 5
        return pal
    return rgba.convert(mode)


def full_size_fit(img: Image.Image, orientation: int, target: tuple[int, int]) -> Image.Image:
    """The reference: the same steps on whole-image copies (turned, flattened onto white, then
    Pillow's resize with its own reduction). Flattening before resampling matches Pillow's
    premultiplied-alpha resize except where Lanczos overshoot at hard alpha edges is clipped."""
    turn = intake.ORIENTATION_TRANSPOSE.get(orientation)
    upright = img.transpose(turn) if turn is not None else img
    upright = intake._onto_white(intake._resamplable(upright))
    sw, sh = upright.size
    tw, th = target
    scale = max(tw / sw, th / sh)
    bw, bh = min(sw, tw / scale), min(sh, th / scale)
    left, top = (sw - bw) / 2, (sh - bh) / 2
    box = (left, top, left + bw, top + bh)
    return upright.resize(target, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("mode", ["RGBA", "RGB", "L", "P"])
@pytest.mark.parametrize(
    ("size", "target"),
    [((1900, 1000), (200, 120)), ((1000, 1900), (120, 200)), ((900, 500), (300, 300))],
    ids=["reduced-3x2", "reduced-turned", "not-reduced"],
)
def test_banded_fitting_gives_the_picture_whole_image_fitting_gives(orientation, mode, size, target, monkeypatch):
    monkeypatch.setattr(intake, "_BAND_PIXELS", 40_000)  # many bands, some of them partial
    img = picture(*size, mode)
    img.load()
    ours = np.asarray(intake._fit(img, orientation, target).convert("RGB"), dtype=np.int16)
    reference = np.asarray(full_size_fit(img, orientation, target).convert("RGB"), dtype=np.int16)
    difference = np.abs(ours - reference)
    assert ours.shape == reference.shape
    # Not bit-identical: turned pictures are box-reduced in blocks counted from the other edge.
    # A wrong turn, box or band shows as differences of tens of levels everywhere.
    assert difference.mean() < 0.25 and np.percentile(difference, 99) <= 2, (difference.mean(), difference.max())


MEASURE = textwrap.dedent(
    """
    import io, json, sys
    import numpy as np
    from PIL import Image
    from jobs.intake import normalize_image

    def mib(field):
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field)) / 1024

    side = int(sys.argv[1])
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    pixels = np.dstack([np.broadcast_to(ramp[None, :], (side, side)), np.broadcast_to(ramp[:, None], (side, side)),
                        np.full((side, side), 90), np.full((side, side), 200)]).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, "PNG")
    data = buffer.getvalue()
    del pixels, buffer
    open("/proc/self/clear_refs", "w").write("5")  # the peak starts again from here
    before = mib("VmRSS")
    normalize_image(data, max_bytes=10 * 1024 * 1024)
    print(json.dumps({"peak": mib("VmHWM") - before}))
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc to read peak memory")
def test_the_largest_png_peaks_near_its_decoded_size():
    side = 6300  # 39.7 MP, RGBA: the largest PNG accepted
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(side)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    decoded = side * side * 4 / 2**20
    # Before: the RGBA picture was copied whole to premultiply it (2.3x its decoded size).
    assert figures["peak"] < 1.5 * decoded, figures


def mib(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024


def post_multipart(url: str, key: str, data: bytes) -> int:
    boundary = "i2v-test-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n\r\n'.encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{url}/api/v1/jobs",
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc to read worker memory")
@pytest.mark.django_db(transaction=True)
def test_a_web_worker_gives_a_large_images_memory_back(settings, tmp_path):
    buffer = io.BytesIO()
    Image.new("RGBA", (5000, 5000), (10, 200, 30, 128)).save(buffer, "PNG")  # 95 MiB decoded
    api = key_client()
    web = LiveWeb(settings, tmp_path, workers=1)
    try:
        (worker,) = [int(pid) for pid in Path(f"/proc/{web.proc.pid}/task/{web.proc.pid}/children").read_text().split()]
        for _ in range(3):  # every import and cache of a create in place
            assert web.get("/api/v1/credits", {"Authorization": f"Bearer {api.raw_key}"})[0] == 200
        assert post_multipart(web.url, api.raw_key, photo_bytes()) == 201
        before = mib(worker, "VmRSS")
        for _ in range(3):
            assert post_multipart(web.url, api.raw_key, buffer.getvalue()) == 201
        kept = mib(worker, "VmRSS") - before
    finally:
        web.stop()
    # Before: the C heap kept the freed pictures, and the worker stayed ~100 MiB larger for good.
    assert kept < 32, kept


# --- what a create refuses before it reads the image ------------------------------------


@pytest.fixture
def decodes(monkeypatch):
    """The uploads that were decoded and stored."""
    seen: list[str] = []
    store = creation.create_upload

    def spy(**kwargs):
        seen.append(kwargs.get("filename", ""))
        return store(**kwargs)

    monkeypatch.setattr(creation, "create_upload", spy)
    return seen


def large_png() -> io.BytesIO:
    buffer = io.BytesIO()
    Image.new("RGBA", (3000, 3000), (10, 200, 30, 128)).save(buffer, "PNG")
    buffer.seek(0)
    buffer.name = "large.png"
    return buffer


@pytest.mark.django_db
def test_an_account_without_credits_is_refused_before_its_image_is_decoded(decodes):
    api = key_client(credits=0)
    response = api.post("/api/v1/jobs", {"image": large_png(), "provider": "local"}, format="multipart")
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_credits"
    assert decodes == [] and Upload.objects.count() == 0 and Job.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field"),
    [({"cfg_scale": 99}, "cfg_scale"), ({"provider": "nope"}, "provider"), ({"model": "nope"}, "model")],
)
def test_bad_parameters_are_refused_before_the_image_is_decoded(decodes, fields, field):
    api = key_client()
    response = api.post("/api/v1/jobs", {"image": large_png(), "provider": "local", **fields}, format="multipart")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert decodes == [] and Upload.objects.count() == 0


@pytest.mark.django_db
def test_an_image_url_is_not_fetched_for_an_account_without_credits(monkeypatch):
    fetched: list[str] = []
    monkeypatch.setattr("jobs.api.views.fetch_image_url", lambda url, **kw: fetched.append(url) or b"")
    api = key_client(credits=0)
    response = api.post("/api/v1/jobs", {"image_url": "https://example.com/a.png"}, format="json")
    assert response.status_code == 402 and fetched == []


@pytest.mark.django_db
def test_a_job_refused_after_the_decode_still_leaves_no_image(monkeypatch):
    # The balance is read before the decode and spent elsewhere before the hold: the guarded
    # hold refuses, and the image just stored is deleted again.
    api = key_client()
    store = creation.create_upload

    def spend_meanwhile(**kwargs):
        upload = store(**kwargs)
        from jobs import ledger

        ledger.adjust(user=api.user, amount=-100, reason="spent by another request")
        return upload

    monkeypatch.setattr(creation, "create_upload", spend_meanwhile)
    response = api.post("/api/v1/jobs", {"image": image_file(), "provider": "local"}, format="multipart")
    assert response.status_code == 402
    assert Upload.objects.count() == 0 and Job.objects.count() == 0
