"""Local renderer vs the ffmpeg command line's ``zoompan`` filter: time, smoothness, sharpness.

Run from the repository root (no Django needed)::

    .venv/bin/python bench/bench_render.py [--reps 5]

Both make the same clip: 1024x576, the local provider's default duration and
frame rate (5 s at 24 fps, 120 frames), H.264 yuv420p with the same encoder
settings (CRF, preset, the same number of x264 frame threads), zooming to the
same final zoom. Ours is the local provider's default clip (motion 127, cfg
1.8, seed 2024, which zooms in towards a focus point); zoompan zooms linearly
about the centre.

Time: median wall-clock seconds of ``--reps`` renders of a photo-like
textured image (ours in-process through ``render_clip``, poster included;
zoompan as a subprocess, as it would be run), interleaved, with the CPU
seconds each used beside them (on a shared machine the wall clock also
measures the neighbours).

Smoothness: a grid of soft spots is rendered by both, decoded, and every
spot that stays in view is tracked to sub-pixel precision (intensity-weighted
centroid). Each renderer's *intended* path is known exactly (ours from
``camera_path``, zoompan's from its zoom expression), so the figures are how
far the decoded spots stray from where the camera should put them, in
pixels, after removing one constant offset per renderer (a pixel-centre
convention is invisible): the RMS and worst deviation from the path, and the
RMS and worst error of each frame-to-frame step (what the eye sees as
judder). Encoding alone costs a few hundredths of a pixel.

Sharpness: a 4000x2250 JPEG with fine detail (thin outlines, small text),
animated at motion 200 (a 1.28x zoom) the way the local provider does it
(sampling the original, decoded at the size the move needs), against the
same clip sampled from the 1024x576 normalised frame (what the provider did
before): Laplacian variance of the luma of the decoded first and last frame
(and the softest frame), and the ratio last/first. Output files land in
bench/out/.
"""

from __future__ import annotations

import argparse
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from providers import local as local_provider  # noqa: E402
from providers.local_render import CRF, ENCODER_THREADS, PRESET, camera_path, render_clip  # noqa: E402
from providers.local_source import cover_box, load_source  # noqa: E402

OUT = ROOT / "bench" / "out"
WIDTH, HEIGHT = 1024, 576
FRAMES, FPS = local_provider.clip_settings(local_provider.DURATION.default, local_provider.FPS.default)
SEED, CFG, MOTION = 2024, 1.8, 127
SHARP_MOTION, SHARP_SEEDS = 200, (1, 2)  # seed 1 zooms in, seed 2 zooms out
BIG = (4000, 2250)
SPOT_SIGMA = 5.0
WINDOW = 18  # half-width of the centroid window, px


def photo_like() -> Image.Image:
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    rng = np.random.default_rng(7)
    red = 120 + 60 * np.sin(x / 23.0) + 40 * np.cos(y / 17.0)
    green = 255 * x / WIDTH
    blue = 60 + 128 * y / HEIGHT + 50 * np.sin((x + y) / 41.0)
    pixels = np.stack([red, green, blue], axis=-1) + rng.normal(0, 6, (HEIGHT, WIDTH, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for i in range(40):
        cx, cy = int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT))
        r = int(rng.integers(10, 60))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if i % 2:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        else:
            draw.rectangle([cx - r, cy - r // 2, cx + r, cy + r // 2], outline=colour, width=4)
    return image


def spot_grid() -> tuple[Image.Image, list[tuple[float, float]]]:
    """Soft spots on a flat field; returns the image and the spots' centres (continuous units)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32) + 0.5
    centres = [(cx + 0.37, cy + 0.61) for cy in range(72, HEIGHT, 144) for cx in range(64, WIDTH, 128)]
    field = np.full((HEIGHT, WIDTH), 40.0, dtype=np.float32)
    for cx, cy in centres:
        field += 200 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * SPOT_SIGMA**2))
    image = Image.fromarray(np.repeat(np.clip(field, 0, 255)[..., None], 3, axis=-1).round().astype(np.uint8))
    return image, centres


def ours_paths(centres: list[tuple[float, float]]) -> np.ndarray:
    """[spot, frame, xy] in pixel-index units, where our camera path puts each spot."""
    views = camera_path(WIDTH, HEIGHT, seed=SEED, cfg_scale=CFG, motion_bucket_id=MOTION, frames=FRAMES)
    return np.array(
        [
            [
                (WIDTH / 2 + (px - v.cx) * v.zoom(WIDTH) - 0.5, HEIGHT / 2 + (py - v.cy) * v.zoom(WIDTH) - 0.5)
                for v in views
            ]
            for px, py in centres
        ]
    )


def final_zoom() -> float:
    views = camera_path(WIDTH, HEIGHT, seed=SEED, cfg_scale=CFG, motion_bucket_id=MOTION, frames=FRAMES)
    return max(v.zoom(WIDTH) for v in views)


def zoompan_step() -> float:
    return (final_zoom() - 1.0) / (FRAMES - 1)


def zoompan_paths(centres: list[tuple[float, float]]) -> np.ndarray:
    zooms = [1.0 + zoompan_step() * n for n in range(FRAMES)]
    return np.array(
        [
            [(WIDTH / 2 + (px - WIDTH / 2) * z - 0.5, HEIGHT / 2 + (py - HEIGHT / 2) * z - 0.5) for z in zooms]
            for px, py in centres
        ]
    )


def zoompan_command(image: Path, video: Path) -> list[str]:
    step = f"{zoompan_step():.8f}"
    zoompan = (
        f"zoompan=z='1+{step}*on':d={FRAMES}:x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':s={WIDTH}x{HEIGHT}:fps={FPS}"
    )
    return [
        imageio_ffmpeg.get_ffmpeg_exe(),
        *("-v", "error", "-y", "-loop", "1", "-i", str(image)),
        *("-vf", zoompan, "-frames:v", str(FRAMES)),
        *("-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF), "-pix_fmt", "yuv420p"),
        *("-threads", str(ENCODER_THREADS)),
        *("-movflags", "+faststart", str(video)),
    ]


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def render_ours(image: Image.Image, video: Path) -> tuple[float, float]:
    started, cpu = time.perf_counter(), cpu_seconds(resource.RUSAGE_SELF)
    render_clip(
        image,
        seed=SEED,
        cfg_scale=CFG,
        motion_bucket_id=MOTION,
        video_path=video,
        poster_path=video.with_suffix(".jpg"),
        fps=FPS,
        frames=FRAMES,
    )
    return time.perf_counter() - started, cpu_seconds(resource.RUSAGE_SELF) - cpu


def render_zoompan(image_png: Path, video: Path) -> tuple[float, float]:
    started, cpu = time.perf_counter(), cpu_seconds(resource.RUSAGE_CHILDREN)
    subprocess.run(zoompan_command(image_png, video), check=True)
    return time.perf_counter() - started, cpu_seconds(resource.RUSAGE_CHILDREN) - cpu


def detailed_photo() -> Image.Image:
    """A large photo-like picture with detail finer than the 1024x576 frame can hold."""
    width, height = BIG
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    background = np.stack(
        [90 + 60 * np.sin(x / 300), 110 + 50 * np.cos(y / 250), 140 + 40 * np.sin((x + y) / 400)], axis=-1
    )
    image = Image.fromarray(np.clip(background + rng.normal(0, 3, (height, width, 3)), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=22)
    for i in range(1500):
        cx, cy, r = int(rng.integers(0, width)), int(rng.integers(0, height)), int(rng.integers(8, 60))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if i % 4 == 0:
            draw.rectangle([cx - r, cy - r // 2, cx + r, cy + r // 2], outline=colour, width=2)
        elif i % 4 == 1:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=3)
        elif i % 4 == 2:
            draw.line([cx - r, cy, cx + r, cy + int(rng.integers(-r, r))], fill=colour, width=2)
        else:
            draw.text((cx, cy), "SALE 50%", fill=colour, font=font)
    return image


def laplacian_variance(luma: np.ndarray) -> float:
    """Sharpness: the variance of the 4-neighbour Laplacian (falls as an image blurs)."""
    g = luma.astype(np.float64)
    return float((g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]).var())


def render_ours_from_upload(original: Path, normalised: Path, video: Path) -> tuple[float, float]:
    """Ours as the local provider runs it on an upload: the original decoded at the size the move needs."""
    started, cpu = time.perf_counter(), cpu_seconds(resource.RUSAGE_SELF)
    render_from(original, normalised, video, seed=SEED, motion=MOTION)
    return time.perf_counter() - started, cpu_seconds(resource.RUSAGE_SELF) - cpu


def render_from(original: Path | None, normalised: Path, video: Path, *, seed: int, motion: int) -> list:
    """The local provider's path: the source loaded at the size the move needs, then the clip;
    returns the camera's views, frame by frame."""
    views = camera_path(WIDTH, HEIGHT, seed=seed, cfg_scale=CFG, motion_bucket_id=motion, frames=FRAMES)
    source = load_source(normalised, original, (WIDTH, HEIGHT), max(view.zoom(WIDTH) for view in views))
    render_clip(
        source.image,
        box=source.box,
        size=(WIDTH, HEIGHT),
        seed=seed,
        cfg_scale=CFG,
        motion_bucket_id=motion,
        video_path=video,
        poster_path=video.with_suffix(".jpg"),
        fps=FPS,
        frames=FRAMES,
    )
    return views


def sharpness(original: Path, normalised: Path, *, use_original: bool, seed: int) -> dict[str, float]:
    video = OUT / f"sharp_{'original' if use_original else 'normalised'}_{seed}.mp4"
    started = time.perf_counter()
    views = render_from(original if use_original else None, normalised, video, seed=seed, motion=SHARP_MOTION)
    seconds = time.perf_counter() - started
    with av.open(str(video)) as container:
        lumas = [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]
    Image.fromarray(lumas[0]).save(video.with_name(video.stem + "_first.png"))
    Image.fromarray(lumas[-1]).save(video.with_name(video.stem + "_last.png"))
    figures = [laplacian_variance(luma) for luma in lumas]
    return {
        "zoom_in": views[0].width > views[-1].width,
        "first": figures[0],
        "last": figures[-1],
        "softest": min(figures),
        "ratio": figures[-1] / figures[0],
        "seconds": seconds,
    }


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24")[..., 0].astype(np.float64) for frame in container.decode(video=0)]


def centroid(frame: np.ndarray, x: float, y: float) -> tuple[float, float]:
    for _ in range(3):
        x0, y0 = round(x) - WINDOW, round(y) - WINDOW
        patch = np.clip(frame[y0 : y0 + 2 * WINDOW + 1, x0 : x0 + 2 * WINDOW + 1] - 45, 0, None)
        ys, xs = np.mgrid[y0 : y0 + 2 * WINDOW + 1, x0 : x0 + 2 * WINDOW + 1]
        x, y = (patch * xs).sum() / patch.sum(), (patch * ys).sum() / patch.sum()
    return x, y


def smoothness(video: Path, planned: np.ndarray) -> dict[str, float]:
    frames = decode(video)
    margin = WINDOW + 3 * SPOT_SIGMA * final_zoom()
    inside = [
        spot
        for spot in range(planned.shape[0])
        if (planned[spot, :, 0].min() > margin and planned[spot, :, 0].max() < WIDTH - margin)
        and (planned[spot, :, 1].min() > margin and planned[spot, :, 1].max() < HEIGHT - margin)
    ]
    measured = np.array(
        [[centroid(frame, *planned[spot, index]) for index, frame in enumerate(frames)] for spot in inside]
    )
    expected = planned[inside]
    error = measured - expected
    # A constant offset (a renderer's pixel-centre convention) is invisible;
    # what the eye sees is the error changing from frame to frame.
    offset = error.mean(axis=(0, 1))
    deviation = np.hypot(*(error - offset).transpose(2, 0, 1))
    step_error = np.hypot(*np.diff(error, axis=1).transpose(2, 0, 1))
    return {
        "spots": len(inside),
        "offset": float(np.hypot(*offset)),
        "rms": float(np.sqrt((deviation**2).mean())),
        "max": float(deviation.max()),
        "step_rms": float(np.sqrt((step_error**2).mean())),
        "step_max": float(step_error.max()),
    }


def _short(part: str) -> str:
    """A path under the repository, relative to its root, for a readable command."""
    path = Path(part)
    return str(path.relative_to(ROOT)) if path.is_absolute() and path.is_relative_to(ROOT) else part


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    photo = photo_like()
    photo_png = OUT / "photo.png"
    photo.save(photo_png)
    ours_runs, zoompan_runs = [], []
    for _ in range(args.reps):  # interleaved, so load on the machine hits both alike
        ours_runs.append(render_ours(photo, OUT / "ours_photo.mp4"))
        zoompan_runs.append(render_zoompan(photo_png, OUT / "zoompan_photo.mp4"))
    ours_times, zoompan_times = [run[0] for run in ours_runs], [run[0] for run in zoompan_runs]

    spots, centres = spot_grid()
    spots_png = OUT / "spots.png"
    spots.save(spots_png)
    render_ours(spots, OUT / "ours_spots.mp4")
    render_zoompan(spots_png, OUT / "zoompan_spots.mp4")
    ours_smooth = smoothness(OUT / "ours_spots.mp4", ours_paths(centres))
    zoompan_smooth = smoothness(OUT / "zoompan_spots.mp4", zoompan_paths(centres))

    big = detailed_photo()
    big_jpeg, big_normalised = OUT / "detailed.jpg", OUT / "detailed_1024x576.png"
    big.save(big_jpeg, quality=92)
    # The normalised frame as the intake makes it: cover crop, Lanczos.
    big.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS, box=cover_box(*BIG, (WIDTH, HEIGHT)), reducing_gap=3.0).save(
        big_normalised
    )
    upload_runs = []
    for _ in range(max(1, args.reps // 2)):
        upload_runs.append(
            (
                render_ours_from_upload(big_jpeg, big_normalised, OUT / "ours_upload.mp4"),
                render_zoompan(big_jpeg, OUT / "zoompan_upload.mp4"),
            )
        )
    sharp = {
        (use, seed): sharpness(big_jpeg, big_normalised, use_original=use, seed=seed)
        for seed in SHARP_SEEDS
        for use in (False, True)
    }

    ours_median, zoompan_median = statistics.median(ours_times), statistics.median(zoompan_times)
    ours_cpu = statistics.median(run[1] for run in ours_runs)
    zoompan_cpu = statistics.median(run[1] for run in zoompan_runs)
    print(
        f"clip: {WIDTH}x{HEIGHT}, {FRAMES} frames at {FPS} fps, libx264 crf {CRF} preset {PRESET}, "
        f"{ENCODER_THREADS} encoder thread(s)"
    )
    print(f"ours: motion {MOTION}, cfg {CFG}, seed {SEED}; zoompan: linear centre zoom to {final_zoom():.4f}x")
    command = [_short(part) for part in zoompan_command(photo_png, OUT / "zoompan_photo.mp4")]
    # Double quotes read better than shlex's escaping; the filter has no $ or ".
    shown = " ".join(f'"{part}"' if "'" in part else shlex.quote(part) for part in command)
    print(f"zoompan command (from the repo root): {shown}")
    print(f"reps: {args.reps}")
    print(f"time ours    median {ours_median:.3f} s  (all: {', '.join(f'{t:.3f}' for t in ours_times)})")
    print(f"time zoompan median {zoompan_median:.3f} s  (all: {', '.join(f'{t:.3f}' for t in zoompan_times)})")
    print(f"cpu  ours    median {ours_cpu:.3f} s   cpu zoompan median {zoompan_cpu:.3f} s")
    print(f"ratio ours/zoompan {ours_median / zoompan_median:.2f}")
    print("smoothness: decoded spot positions vs the intended camera path (px)")
    for name, figures in (("ours", ours_smooth), ("zoompan", zoompan_smooth)):
        print(
            f"  {name:8s} spots {figures['spots']:2d}  path deviation rms {figures['rms']:.3f} max {figures['max']:.3f}"
            f"  step error rms {figures['step_rms']:.3f} max {figures['step_max']:.3f}"
            f"  (constant offset {figures['offset']:.3f}, removed)"
        )
    ours_upload = statistics.median(run[0][0] for run in upload_runs)
    zoompan_upload = statistics.median(run[1][0] for run in upload_runs)
    print(
        f"from a {BIG[0]}x{BIG[1]} JPEG as uploaded (ours: the original decoded at the size the move needs; "
        f"zoompan: the same command on the JPEG), {len(upload_runs)} reps:"
    )
    print(
        f"  time ours median {ours_upload:.3f} s (cpu {statistics.median(run[0][1] for run in upload_runs):.3f})"
        f"  zoompan median {zoompan_upload:.3f} s (cpu {statistics.median(run[1][1] for run in upload_runs):.3f})"
        f"  ratio {ours_upload / zoompan_upload:.2f}"
    )
    print(
        f"sharpness: {BIG[0]}x{BIG[1]} JPEG, motion {SHARP_MOTION}, Laplacian variance of the decoded luma "
        "(higher is sharper)"
    )
    for (use, seed), figures in sharp.items():
        name = "original  " if use else "normalised"
        direction = "zooms in " if figures["zoom_in"] else "zooms out"
        print(
            f"  from the {name} seed {seed} ({direction}): first {figures['first']:6.1f}  last {figures['last']:6.1f}"
            f"  softest {figures['softest']:6.1f}  last/first {figures['ratio']:.2f}  ({figures['seconds']:.2f} s)"
        )


if __name__ == "__main__":
    main()
