"""The embedded renderer and the local provider: real renders, decoded with PyAV."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw

from providers.base import SIZES, GenerationRequest, PollContext, ProviderError
from providers.local import LocalProvider
from providers.local_render import build_levels, camera_path, excursion, render_clip, render_planes

SHORT = 14  # the fewest frames a clip may have; enough for every assertion but one


def textured_image(width: int = 1024, height: int = 576) -> Image.Image:
    """Gradients, stripes and shapes: any camera move shows up in the pixels."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 128 + 60 * np.sin(x / 23.0) + 40 * np.cos(y / 17.0)
    green = 255 * x / width
    blue = 60 + 128 * y / height + 60 * np.sin((x + y) / 41.0)
    image = Image.fromarray(np.clip(np.stack([red, green, blue], axis=-1), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for i in range(14):
        cx, cy = (i * 97) % width, (i * 61) % height
        draw.ellipse([cx - 40, cy - 30, cx + 40, cy + 30], fill=((i * 40) % 256, 255 - (i * 30) % 256, (i * 70) % 256))
        draw.rectangle([cx + 50, cy - 20, cx + 90, cy + 20], outline=(255, 255, 255), width=3)
    return image


def blob_image(width: int = 1024, height: int = 576) -> Image.Image:
    """A soft bright spot at the centre of a flat field, to track to a fraction of a pixel."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    spot = 40 + 200 * np.exp(-((x + 0.5 - width / 2) ** 2 + (y + 0.5 - height / 2) ** 2) / (2 * 6.0**2))
    return Image.fromarray(np.repeat(spot[..., None], 3, axis=-1).astype(np.uint8))


def render(tmp_path: Path, image: Image.Image, name: str = "clip", **params) -> tuple[Path, Path]:
    params = {"seed": 42, "cfg_scale": 1.8, "motion_bucket_id": 127, "frames": SHORT, "fps": 12, **params}
    video, poster = tmp_path / f"{name}.mp4", tmp_path / f"{name}.jpg"
    render_clip(image, video_path=video, poster_path=poster, **params)
    return video, poster


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24").astype(np.int16) for frame in container.decode(video=0)]


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_video_is_h264_yuv420p_at_exactly_the_image_size(tmp_path, width, height):
    video, _ = render(tmp_path, textured_image(width, height))

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (width, height)
        frames = list(container.decode(video=0))
        assert container.duration / 1_000_000 > 1.0
    assert len(frames) == SHORT
    assert all((frame.width, frame.height) == (width, height) for frame in frames)


def test_default_clip_is_5_seconds_at_24_fps_with_the_index_at_the_front(tmp_path):
    video, poster = tmp_path / "default.mp4", tmp_path / "default.jpg"

    result = render_clip(
        textured_image(), seed=7, cfg_scale=1.8, motion_bucket_id=127, video_path=video, poster_path=poster
    )

    assert (result.frames, result.fps, result.width, result.height) == (120, 24, 1024, 576)
    assert result.duration == pytest.approx(5.0)
    assert result.bytes == video.stat().st_size > 0
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 24
        assert container.duration / 1_000_000 == pytest.approx(5.0, abs=0.01)
        assert len(list(container.decode(video=0))) == 120
    head = video.read_bytes()
    assert head.index(b"moov") < head.index(b"mdat"), "faststart: a browser can play before the download ends"


def test_high_motion_frames_differ_much_more_than_motion_one(tmp_path):
    image = textured_image()
    still = decode(render(tmp_path, image, "still", motion_bucket_id=1)[0])
    lively = decode(render(tmp_path, image, "lively", motion_bucket_id=255)[0])

    still_change = mean_abs_diff(still[0], still[-1])
    lively_change = mean_abs_diff(lively[0], lively[-1])

    assert still_change < 1.5
    assert lively_change > 15
    assert lively_change > 10 * still_change


def test_camera_excursion_grows_with_every_step_of_motion():
    far_zooms = []
    for motion in (1, 32, 64, 127, 191, 255):
        views = camera_path(1024, 576, seed=3, cfg_scale=1.8, motion_bucket_id=motion, frames=SHORT)
        far_zooms.append(max(view.zoom(1024) for view in views))

    assert far_zooms == sorted(far_zooms)
    assert len(set(far_zooms)) == len(far_zooms)
    assert far_zooms[0] < 1.002
    assert far_zooms[-1] > 1.3


def test_same_seed_gives_identical_frames_and_bytes(tmp_path):
    image = textured_image()
    first, _ = render(tmp_path, image, "first", seed=123456789)
    second, _ = render(tmp_path, image, "second", seed=123456789)

    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    assert all(np.array_equal(a, b) for a, b in zip(decode(first), decode(second), strict=True))


def test_different_seeds_take_different_camera_paths(tmp_path):
    image = textured_image()
    one = decode(render(tmp_path, image, "one", seed=1, motion_bucket_id=200)[0])
    two = decode(render(tmp_path, image, "two", seed=2, motion_bucket_id=200)[0])

    middle = SHORT // 2
    assert mean_abs_diff(one[middle], two[middle]) > 5
    paths = {
        tuple(camera_path(1024, 576, seed=seed, cfg_scale=1.8, motion_bucket_id=200, frames=SHORT))
        for seed in range(1, 9)
    }
    assert len(paths) == 8


def test_higher_cfg_scale_keeps_the_camera_closer_to_the_source_framing(tmp_path):
    image = textured_image()
    source = np.asarray(image).astype(np.int16)

    def farthest_from_source(cfg_scale: float) -> float:
        frames = decode(render(tmp_path, image, f"cfg{cfg_scale}", cfg_scale=cfg_scale, motion_bucket_id=96)[0])
        return max(mean_abs_diff(frame, source) for frame in frames)

    loose, faithful = farthest_from_source(0.0), farthest_from_source(9.0)

    assert faithful < 0.75 * loose
    assert excursion(9.0, 96) < excursion(1.8, 96) < excursion(0.0, 96)


def spot_track(frames: list[np.ndarray]) -> np.ndarray:
    """The spot's intensity-weighted centre in every frame (one channel; pixel-index units)."""
    y, x = np.unravel_index(frames[0].argmax(), frames[0].shape)
    track = []
    for frame in frames:
        floor = np.median(frame) + 5  # the flat field, and a little noise
        for _ in range(3):  # re-centre the window so it cannot bias the estimate
            x0, y0 = round(x) - 20, round(y) - 20
            window = np.clip(frame[y0 : y0 + 41, x0 : x0 + 41].astype(float) - floor, 0, None)
            ys, xs = np.mgrid[y0 : y0 + 41, x0 : x0 + 41]
            x, y = (window * xs).sum() / window.sum(), (window * ys).sum() / window.sum()
        track.append((x, y))
    return np.array(track)


def planned_track(views, width: int = 1024, height: int = 576) -> np.ndarray:
    """Where the camera path puts the source's centre point on screen."""
    return np.array(
        [
            (
                width / 2 + (width / 2 - v.cx) * v.zoom(width) - 0.5,
                height / 2 + (height / 2 - v.cy) * v.zoom(width) - 0.5,
            )
            for v in views
        ]
    )


def test_frames_follow_the_camera_path_to_a_fiftieth_of_a_pixel():
    views = camera_path(1024, 576, seed=8, cfg_scale=0.0, motion_bucket_id=255, frames=25)
    levels = build_levels(blob_image(), (0.0, 0.0, 1024.0, 576.0), (1024, 576), 1.4)
    frames = [frame.to_ndarray()[:576] for frame in render_planes(levels, views, 1024, 576)]

    error = np.hypot(*(spot_track(frames) - planned_track(views)).T)

    assert error.max() < 0.05, "sub-pixel sampling: whole-pixel crops stray up to half a pixel"


def test_the_encoded_clip_glides_without_whole_pixel_steps(tmp_path):
    video, _ = render(tmp_path, blob_image(), "blob", seed=5, motion_bucket_id=255, cfg_scale=0.0, frames=25)
    planned = planned_track(camera_path(1024, 576, seed=5, cfg_scale=0.0, motion_bucket_id=255, frames=25))

    track = spot_track([frame[..., 0] for frame in decode(video)])
    error = np.hypot(*(track - planned).T)

    assert np.hypot(*(track[-1] - track[0])) > 20, "the spot travels"
    # Whole-pixel crops of the same path measured 0.45-0.5 px RMS before encoding.
    assert np.sqrt((error**2).mean()) < 0.2
    assert error.max() < 0.4


def test_poster_is_a_jpeg_of_the_first_frame_at_the_video_size(tmp_path):
    image = textured_image(576, 1024)
    video, poster = render(tmp_path, image, seed=9)

    with Image.open(poster) as jpeg:
        assert jpeg.format == "JPEG"
        assert jpeg.size == (576, 1024)
        poster_pixels = np.asarray(jpeg.convert("RGB")).astype(np.int16)
    assert mean_abs_diff(poster_pixels, decode(video)[0]) < 4


def test_progress_is_reported_rising_to_one(tmp_path):
    seen: list[float] = []

    render(tmp_path, textured_image(768, 768), progress=seen.append)

    assert len(seen) >= SHORT
    assert seen == sorted(seen)
    assert 0 < seen[0] < 0.2
    assert seen[-1] == 1.0
    assert seen.count(1.0) == 1


def test_a_render_that_fails_midway_leaves_no_file_behind(tmp_path):
    video, poster = tmp_path / "out" / "video.mp4", tmp_path / "out" / "poster.jpg"

    def crash(fraction: float) -> None:
        if fraction > 0.5:
            raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError):
        render_clip(
            textured_image(),
            seed=1,
            cfg_scale=1.8,
            motion_bucket_id=127,
            video_path=video,
            poster_path=poster,
            frames=SHORT,
            progress=crash,
        )

    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    "params",
    [{"cfg_scale": 10.5}, {"cfg_scale": -1.0}, {"motion_bucket_id": 0}, {"motion_bucket_id": 256}, {"frames": 1}],
)
def test_parameters_out_of_range_are_refused(tmp_path, params):
    with pytest.raises(ValueError):
        render(tmp_path, textured_image(64, 36), **params)


def test_odd_image_sides_are_refused_since_yuv420p_cannot_hold_them(tmp_path):
    with pytest.raises(ValueError, match="even"):
        render(tmp_path, textured_image(101, 56))


def request_for(image_path: Path, **overrides) -> GenerationRequest:
    fields = {
        "job_id": "job-1",
        "image_path": image_path,
        "width": 1024,
        "height": 576,
        "seed": 31337,
        "cfg_scale": 1.8,
        "motion_bucket_id": 127,
        **overrides,
    }
    return GenerationRequest(**fields)


def test_local_provider_submit_then_poll_writes_a_playable_video(tmp_path, settings):
    settings.LOCAL_FRAMES = SHORT
    image_path = tmp_path / "input.png"
    textured_image().save(image_path)
    provider = LocalProvider()
    reports: list[tuple[float, str]] = []
    context = PollContext(
        video_path=tmp_path / "work" / "video.mp4",
        poster_path=tmp_path / "work" / "poster.jpg",
        report=lambda fraction, message: reports.append((fraction, message)),
    )

    handle = provider.submit(request_for(image_path))
    assert not context.video_path.exists(), "submit does no work"
    assert len(handle) <= 255 and json.loads(handle)["seed"] == 31337
    state = provider.poll(handle, context)

    assert (state.state, state.seed, state.finish_reason) == ("succeeded", 31337, "SUCCESS")
    frames = decode(context.video_path)
    assert len(frames) == SHORT
    assert frames[0].shape == (576, 1024, 3)
    assert context.poster_path.exists()
    assert reports[-1][0] == 1.0
    assert (provider.name, provider.cost, provider.supports_cancel, provider.needs_prompt) == ("local", 1, False, False)


def test_local_provider_poll_is_repeatable_and_gives_the_same_video(tmp_path, settings):
    settings.LOCAL_FRAMES = SHORT
    image_path = tmp_path / "input.png"
    textured_image(768, 768).save(image_path)
    provider = LocalProvider()
    context = PollContext(video_path=tmp_path / "video.mp4", poster_path=tmp_path / "poster.jpg")
    handle = provider.submit(request_for(image_path, width=768, height=768))

    provider.poll(handle, context)
    first = context.video_path.read_bytes()
    provider.poll(handle, context)

    assert context.video_path.read_bytes() == first


@pytest.mark.parametrize("content", [None, b"", b"\x89PNG\r\n\x1a\n not really a png", b"GIF89a" + b"\0" * 40])
def test_local_provider_fails_the_job_when_the_image_cannot_be_read(tmp_path, content):
    image_path = tmp_path / "input.png"
    if content is not None:
        image_path.write_bytes(content)
    provider = LocalProvider()
    context = PollContext(video_path=tmp_path / "video.mp4", poster_path=tmp_path / "poster.jpg")

    state = provider.poll(provider.submit(request_for(image_path)), context)

    assert state.state == "failed"
    assert state.error_code == "image_unreadable"
    assert state.error_message.endswith(".") and " " in state.error_message
    assert not context.video_path.exists()


def test_local_provider_fails_the_job_when_its_handle_is_damaged(tmp_path):
    context = PollContext(video_path=tmp_path / "video.mp4", poster_path=tmp_path / "poster.jpg")

    state = LocalProvider().poll("local-123", context)

    assert (state.state, state.error_code) == ("failed", "bad_handle")
    assert not context.video_path.exists()


def test_local_provider_refuses_a_handle_too_long_to_store(tmp_path):
    with pytest.raises(ProviderError) as raised:
        LocalProvider().submit(request_for(tmp_path / ("x" * 300) / "input.png"))

    assert raised.value.code == "handle_too_long"
    assert not raised.value.retryable
