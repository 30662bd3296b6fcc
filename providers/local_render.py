"""The embedded renderer: a still image animated by an eased camera move.

No Django, no network: ``render_clip`` takes a PIL image and the region of it
that fills the frame, and writes an H.264 MP4 (yuv420p, BT.709 limited range,
moov at the front) plus a JPEG poster (the first frame, which is what a player
shows before it starts).

The camera
----------
Each frame shows a rectangle of the frame region (its *view*), resampled to
the full output size with Pillow's separable bicubic filter from a float box,
so the view moves by fractions of a pixel from frame to frame. Whole-pixel
crops (the ffmpeg ``zoompan`` filter) make a slow zoom step and shimmer; this
does not. The view always has the output's aspect ratio and never leaves the
region, so there are no borders and no stretching. There is no rotation.

Sharp to the last frame
-----------------------
A view zoomed in by ``z`` needs ``z`` source pixels per output pixel. The
image given may be larger than the output (the local provider passes the
original upload, framed and decoded at the size the move needs), so before
the first frame the region is resampled once (Lanczos) into a few *levels*
and converted to yuv420p planes: from ``OVERSAMPLE`` (1.15) times the output
size up to ``OVERSAMPLE`` times the largest zoom of the move (or what the
image has, if less), each at most ``LEVEL_RATIO`` larger than the one below.
Every frame is a Lanczos reduction of the smallest level with ``OVERSAMPLE``
times its zoom's pixels, so it always shrinks by 1.15 to 1.32: interpolating
at 1:1 a fraction of a pixel off would blur the finest detail, and unevenly
(a half-pixel offset removes it), while a slight reduction keeps it. The end
of a zoom is then as sharp as its start (bench/bench_render.py: Laplacian
variance of the last frame 0.98 of the first, against 0.35 upsampling the
1024x576 frame). An image with no more pixels than the output is its own one
level: zoomed frames are upsampled with bicubic, as before, the first frame
is the image itself. Planes are resampled rather than RGB (chroma is a
quarter of the size, and bilinear), which also leaves no per-frame colour
conversion.

The move goes between the original framing (the whole image) and one *far*
view, with a cosine ease-in/ease-out (``u = (1 - cos(pi * t)) / 2``); the
view's width and centre are interpolated linearly in ``u``, which keeps every
intermediate view inside the image whenever both ends are.

The parameters
--------------
``motion_bucket_id`` (1..255) and ``cfg_scale`` (0..10) set one number, the
*excursion* ``e``::

    strength = motion_bucket_id / 255            # 1 -> 0.004, 127 -> 0.498, 255 -> 1.0
    freedom  = 1 - 0.065 * cfg_scale             # 0 -> 1.0,   1.8 -> 0.883, 10 -> 0.35
    e        = strength * freedom                # 0.0014 .. 1.0

``e`` scales everything that moves away from the source framing:

    far zoom     = 1 + MAX_ZOOM * e              # MAX_ZOOM = 0.40: at most 1.40x
    drift        = MAX_DRIFT * e * min(w, h)     # MAX_DRIFT = 0.06: a pan of at most 6 % of the short side

So motion 1 is close to still (the far view is 1.0014x, under a pixel away at
the edges), motion 255 with cfg 0 zooms 1.4x and pans, and for equal motion a
higher ``cfg_scale`` keeps the camera closer to the source framing (cfg 10
moves 35 % as far as cfg 0). Defaults (127, 1.8) give e = 0.44: a 1.18x move.

``seed`` picks the path with ``random.Random(seed)``: zoom in (start on the
source framing) or out (end on it), the focus point the zoom closes on
(within the middle half of the image in each direction), and the direction
of the drift. Same image, seed and parameters give the same frames and, with
the pinned encoder settings below (fixed thread counts, bit-exact colour
conversion), the same MP4 bytes for the same PyAV/FFmpeg build.
"""

from __future__ import annotations

import math
import os
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation
from PIL import Image

MAX_ZOOM = 0.40  # far-view zoom at e = 1 is 1 + MAX_ZOOM
MAX_DRIFT = 0.06  # pan at e = 1, as a fraction of the short side
CFG_PULL = 0.065  # freedom lost per unit of cfg_scale
CFG_RANGE = (0.0, 10.0)
MOTION_RANGE = (1, 255)

CRF = 20
PRESET = "veryfast"
# Fixed, not "auto": x264's output depends on its thread count, and the same
# inputs must give the same video on any machine. One encoder thread, with the
# frames sampled on RENDER_THREADS others while it encodes: x264 is the longest
# part (about 60 % of the CPU), so on two cores it runs on one while sampling
# keeps ahead on the other, and its own threading would add about 10 % CPU for
# work the second core is already doing. Several workers side by side are
# better served by one encoder thread each, too.
ENCODER_THREADS = 1
RENDER_THREADS = 2
RENDER_AHEAD = 4  # frames rendered ahead of the encoder
POSTER_QUALITY = 88
# Where the source has the pixels, every frame is sampled from a level with
# OVERSAMPLE to OVERSAMPLE * LEVEL_RATIO times the pixels it shows (see "Sharp
# to the last frame" above).
OVERSAMPLE = 1.15
LEVEL_RATIO = 1.15
# Chroma is at half resolution and the eye hardly sees its detail: the cheaper
# filter saves a fifth of a frame's resampling.
CHROMA_FILTER = Image.Resampling.BILINEAR

DEFAULT_FPS = 24
DEFAULT_FRAMES = 120  # 5 s at 24 fps

Planes = tuple[Image.Image, Image.Image, Image.Image]  # Y, U, V ("L" images)

_BT709 = 1  # AVCOL_SPC / AVCOL_PRI / AVCOL_TRC value for BT.709
_RANGE_MPEG = 1  # limited ("TV") range


@dataclass(frozen=True)
class RenderResult:
    frames: int
    width: int
    height: int
    duration: float  # seconds
    fps: int
    bytes: int  # size of the MP4
    source_scale: float = 1.0  # the largest level: source pixels per output pixel


@dataclass(frozen=True)
class View:
    """The rectangle of the source shown in one frame (continuous pixel units,
    pixel ``i`` covering ``[i, i + 1)``)."""

    cx: float
    cy: float
    width: float  # the height follows from the aspect ratio

    def box(self, image_width: int, image_height: int) -> tuple[float, float, float, float]:
        """(left, top, right, bottom); clamped so a rounding error never leaves the image."""
        height = self.width * image_height / image_width
        return (
            max(0.0, self.cx - self.width / 2),
            max(0.0, self.cy - height / 2),
            min(float(image_width), self.cx + self.width / 2),
            min(float(image_height), self.cy + height / 2),
        )

    def zoom(self, image_width: int) -> float:
        return image_width / self.width


def excursion(cfg_scale: float, motion_bucket_id: int) -> float:
    """How far (0..1) the camera leaves the source framing; see the module doc."""
    strength = motion_bucket_id / MOTION_RANGE[1]
    freedom = 1.0 - CFG_PULL * cfg_scale
    return strength * freedom


def ease(t: float) -> float:
    """Cosine ease-in/ease-out: 0 -> 0, 1 -> 1, zero speed at both ends."""
    return (1.0 - math.cos(math.pi * t)) / 2.0


def camera_path(
    width: int, height: int, *, seed: int, cfg_scale: float, motion_bucket_id: int, frames: int
) -> list[View]:
    """The view for every frame, first to last."""
    _check_params(cfg_scale, motion_bucket_id, frames)
    rng = random.Random(seed)
    zoom_in = rng.random() < 0.5
    focus_x = width * rng.uniform(0.25, 0.75)
    focus_y = height * rng.uniform(0.25, 0.75)
    drift_angle = rng.uniform(0.0, 2.0 * math.pi)

    e = excursion(cfg_scale, motion_bucket_id)
    zoom = 1.0 + MAX_ZOOM * e
    far_w, far_h = width / zoom, height / zoom
    # Zooming about the focus point keeps it where it is in the frame ...
    cx = focus_x + (width / 2 - focus_x) / zoom
    cy = focus_y + (height / 2 - focus_y) / zoom
    # ... and the drift pans on top of that, within the room the zoom leaves.
    drift = MAX_DRIFT * e * min(width, height)
    cx = _clamp(cx + drift * math.cos(drift_angle), far_w / 2, width - far_w / 2)
    cy = _clamp(cy + drift * math.sin(drift_angle), far_h / 2, height - far_h / 2)
    near = View(width / 2, height / 2, float(width))
    far = View(cx, cy, far_w)
    start, end = (near, far) if zoom_in else (far, near)

    views = []
    for index in range(frames):
        u = ease(index / (frames - 1))
        # (1 - u) * a + u * b is exact at both ends: the source framing is
        # reproduced exactly, not to within a rounding error.
        views.append(
            View(
                (1 - u) * start.cx + u * end.cx,
                (1 - u) * start.cy + u * end.cy,
                (1 - u) * start.width + u * end.width,
            )
        )
    return views


def to_planes(image: Image.Image) -> Planes:
    """The image as yuv420p planes (BT.709, limited range), converted once per level."""
    frame = av.VideoFrame.from_image(image.convert("RGB")).reformat(
        format="yuv420p",
        src_colorspace=Colorspace.ITU709,
        dst_colorspace=Colorspace.ITU709,
        src_color_range=ColorRange.JPEG,
        dst_color_range=ColorRange.MPEG,
        interpolation=Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.BITEXACT,
        threads=1,
    )
    stacked = frame.to_ndarray()  # luma rows, then the two quarter-size chroma planes
    width, height = image.size
    luma = stacked[:height]
    chroma = stacked[height:].reshape(2, height // 2, width // 2)
    return tuple(Image.fromarray(np.ascontiguousarray(plane)) for plane in (luma, chroma[0], chroma[1]))


@dataclass(frozen=True)
class Level:
    """The frame region resampled to ``scale`` times the output size (per axis
    ``sx``, ``sy``: sides are rounded to even numbers), as RGB and as planes."""

    sx: float
    sy: float
    rgb: Image.Image
    planes: Planes

    @property
    def scale(self) -> float:
        return min(self.sx, self.sy)


def level_scales(low: float, top: float) -> list[float]:
    """``low`` up to ``top``, each at most ``LEVEL_RATIO`` times the one before."""
    if top <= low * (1 + 1e-6):
        return [top]
    count = math.ceil(math.log(top / low) / math.log(LEVEL_RATIO) - 1e-9)
    return [low * (top / low) ** (index / count) for index in range(count + 1)]


def build_levels(
    image: Image.Image, box: tuple[float, float, float, float], size: tuple[int, int], zoom: float
) -> list[Level]:
    """The levels a move that zooms in up to ``zoom`` needs, smallest first.

    ``box`` is the region of ``image`` that fills the frame at zoom 1. The
    levels have ``OVERSAMPLE`` up to ``OVERSAMPLE * zoom`` times the output's
    pixels, or as many as the region has when it has fewer (never fewer than
    the output's: an image only the output's size is its one level).
    """
    width, height = size
    left, top, right, bottom = box
    has = max(1.0, min((right - left) / width, (bottom - top) / height))
    levels: list[Level] = []
    biggest: Image.Image | None = None
    for scale in reversed(level_scales(min(OVERSAMPLE, has), min(OVERSAMPLE * zoom, has))):
        level_size = (2 * max(1, round(width * scale / 2)), 2 * max(1, round(height * scale / 2)))
        if biggest is None:
            whole = box == (0.0, 0.0, float(image.width), float(image.height))
            if whole and image.size == level_size:
                rgb = image
            else:
                rgb = image.resize(level_size, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
            biggest = rgb
        else:
            # Each level from the largest one, which is at most a few times its size.
            rgb = biggest.resize(level_size, Image.Resampling.LANCZOS)
        levels.append(Level(level_size[0] / width, level_size[1] / height, rgb, to_planes(rgb)))
    return levels[::-1]


def pick_level(levels: list[Level], zoom: float) -> Level:
    """The smallest level with ``OVERSAMPLE`` times the pixels a view at ``zoom`` shows (else the largest)."""
    for level in levels:
        if level.scale >= OVERSAMPLE * zoom * (1 - 1e-9):
            return level
    return levels[-1]


def level_box(level: Level, view: View, width: int, height: int) -> tuple[float, float, float, float]:
    left, top, right, bottom = view.box(width, height)
    return (left * level.sx, top * level.sy, right * level.sx, bottom * level.sy)


def luma_filter(levels: list[Level]) -> Image.Resampling:
    """Lanczos when the source has pixels beyond the output's (every frame then
    shrinks its level, and Lanczos keeps the detail the original has: Laplacian
    variance within a few per cent of the frame the intake makes, where bicubic
    loses a quarter); bicubic for a source only the output's size, whose
    zoomed frames are upsampled and where Lanczos would cost half as much again."""
    return Image.Resampling.LANCZOS if levels[-1].scale > 1.0 else Image.Resampling.BICUBIC


def render_frame(levels: list[Level], view: View, width: int, height: int) -> np.ndarray:
    """One frame as yuv420p, stacked the way PyAV holds it: shape (height * 3 / 2, width)."""
    level = pick_level(levels, view.zoom(width))
    box = level_box(level, view, width, height)
    planes = level.planes
    if not (planes[0].size == (width, height) and box == (0.0, 0.0, float(width), float(height))):
        half = tuple(edge / 2 for edge in box)
        planes = (
            planes[0].resize((width, height), luma_filter(levels), box=box),
            planes[1].resize((width // 2, height // 2), CHROMA_FILTER, box=half),
            planes[2].resize((width // 2, height // 2), CHROMA_FILTER, box=half),
        )
    return planes_to_array(planes)


def render_planes(levels: list[Level], views: list[View], width: int, height: int) -> Iterator[av.VideoFrame]:
    """Every frame (as ``render_frame`` makes it, ready for the encoder), in order.

    Frames are rendered a few ahead on worker threads while the caller encodes:
    Pillow releases the GIL while it resamples, and PyAV while x264 works, so
    the encoding thread does little but encode.
    """

    def render(view: View) -> av.VideoFrame:
        return av.VideoFrame.from_ndarray(render_frame(levels, view, width, height), format="yuv420p")

    with ThreadPoolExecutor(max_workers=RENDER_THREADS, thread_name_prefix="local-render") as pool:
        pending: deque[Future[av.VideoFrame]] = deque()
        upcoming = iter(views)
        for view in upcoming:
            pending.append(pool.submit(render, view))
            if len(pending) > RENDER_AHEAD:
                break
        while pending:
            frame = pending.popleft().result()
            next_view = next(upcoming, None)
            if next_view is not None:
                pending.append(pool.submit(render, next_view))
            yield frame


def planes_to_array(planes: Planes) -> np.ndarray:
    """Planes stacked the way PyAV holds yuv420p: shape (height * 3 / 2, width)."""
    width, height = planes[0].size
    return np.concatenate([np.asarray(plane).reshape(-1) for plane in planes]).reshape(height * 3 // 2, width)


def render_clip(
    image: Image.Image,
    *,
    seed: int,
    cfg_scale: float,
    motion_bucket_id: int,
    video_path: Path,
    poster_path: Path,
    fps: int = DEFAULT_FPS,
    frames: int = DEFAULT_FRAMES,
    size: tuple[int, int] | None = None,
    box: tuple[float, float, float, float] | None = None,
    progress: Callable[[float], None] | None = None,
) -> RenderResult:
    """Animate ``image`` and write ``video_path`` (MP4) and ``poster_path`` (JPEG).

    The video is ``size`` (default: the image's size; both sides must be
    even, as yuv420p needs). ``box`` is the region of ``image`` the frame
    shows at zoom 1 (default: all of it); it must have the output's aspect
    ratio, and pixels it has beyond the output's size keep zoomed-in frames
    sharp. Both files are written under temporary names next to their targets
    and renamed at the end, the poster first: a crash leaves neither half a
    file nor a video without its poster. ``progress`` gets fractions rising to
    1.0, which it gets once everything is in place. Raises ``ValueError`` for
    parameters out of range, ``OSError``/``av.FFmpegError`` when writing fails.
    """
    if fps < 1:
        raise ValueError(f"fps must be at least 1, not {fps}")
    width, height = size or image.size
    if width % 2 or height % 2:
        raise ValueError(f"H.264 in yuv420p needs even sides; the video would be {width}x{height}")
    image = image.convert("RGB") if image.mode != "RGB" else image
    box = box or (0.0, 0.0, float(image.width), float(image.height))
    views = camera_path(width, height, seed=seed, cfg_scale=cfg_scale, motion_bucket_id=motion_bucket_id, frames=frames)
    levels = build_levels(image, box, (width, height), max(view.zoom(width) for view in views))
    video_path, poster_path = Path(video_path), Path(poster_path)
    video_path.parent.mkdir(parents=True, exist_ok=True)
    poster_path.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    video_tmp = video_path.with_name(f".{video_path.name}.{tag}.part")
    poster_tmp = poster_path.with_name(f".{poster_path.name}.{tag}.part")
    report = progress or (lambda fraction: None)
    try:
        _encode(levels, views, (width, height), fps, video_tmp, poster_tmp, report)
        os.replace(poster_tmp, poster_path)
        os.replace(video_tmp, video_path)
    finally:
        for leftover in (video_tmp, poster_tmp):
            leftover.unlink(missing_ok=True)
    report(1.0)
    return RenderResult(
        frames=frames,
        width=width,
        height=height,
        duration=frames / fps,
        fps=fps,
        bytes=video_path.stat().st_size,
        source_scale=levels[-1].scale,
    )


def _encode(
    levels: list[Level],
    views: list[View],
    size: tuple[int, int],
    fps: int,
    video_tmp: Path,
    poster_tmp: Path,
    report: Callable[[float], None],
) -> None:
    width, height = size
    total = len(views)
    with av.open(str(video_tmp), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"crf": str(CRF), "preset": PRESET}
        codec = stream.codec_context
        codec.thread_count = ENCODER_THREADS
        # Frame threads, as the ffmpeg command line uses (PyAV's default is
        # slices, which x264 runs less efficiently).
        codec.thread_type = "FRAME"
        codec.colorspace = _BT709
        codec.color_primaries = _BT709
        codec.color_trc = _BT709
        codec.color_range = _RANGE_MPEG
        # The poster is the first frame, resampled from RGB for the JPEG.
        level = pick_level(levels, views[0].zoom(width))
        first = level_box(level, views[0], width, height)
        poster = (
            level.rgb
            if level.rgb.size == size and first == (0.0, 0.0, float(width), float(height))
            else level.rgb.resize(size, luma_filter(levels), box=first)
        )
        poster.save(poster_tmp, format="JPEG", quality=POSTER_QUALITY, optimize=True)
        for index, video_frame in enumerate(render_planes(levels, views, width, height)):
            video_frame.pts = index
            container.mux(stream.encode(video_frame))
            # The last few hundredths are for flushing the encoder and renaming.
            report(0.95 * (index + 1) / total)
        container.mux(stream.encode(None))


def _check_params(cfg_scale: float, motion_bucket_id: int, frames: int) -> None:
    if not CFG_RANGE[0] <= cfg_scale <= CFG_RANGE[1]:
        raise ValueError(f"cfg_scale must be within {CFG_RANGE[0]}..{CFG_RANGE[1]}, not {cfg_scale}")
    if not MOTION_RANGE[0] <= motion_bucket_id <= MOTION_RANGE[1]:
        raise ValueError(
            f"motion_bucket_id must be within {MOTION_RANGE[0]}..{MOTION_RANGE[1]}, not {motion_bucket_id}"
        )
    if frames < 2:
        raise ValueError(f"a clip needs at least 2 frames, not {frames}")


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)
