"""Files of a job: its scratch directory, its input frame, and checks on videos."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import av
from django.conf import settings

from jobs.models import Job


class BadVideo(Exception):
    """A file that is not a playable H.264 video."""


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    frames: int
    duration: float
    pix_fmt: str


def work_dir(job: Job) -> Path:
    path = Path(settings.WORK_DIR) / str(job.pk)
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_input(job: Job) -> Path:
    """The normalised image as a local file (storage may be remote)."""
    path = work_dir(job) / "input.png"
    if not path.exists():
        partial = path.with_suffix(".part")
        with job.upload.normalized.open("rb") as source, partial.open("wb") as target:
            shutil.copyfileobj(source, target)
        partial.replace(path)
    return path


def local_frame(job: Job, upload, name: str) -> Path:
    """Another normalised image of the job (its end frame, a mask) as a local
    file named ``name`` in its scratch directory."""
    path = work_dir(job) / name
    if not path.exists():
        partial = path.with_name(path.name + ".part")
        with upload.normalized.open("rb") as source, partial.open("wb") as target:
            shutil.copyfileobj(source, target)
        partial.replace(path)
    return path


def local_original(job: Job) -> Path | None:
    """The upload as it was sent, as a local file beside the input frame
    (storage may be remote); None when it is gone: the frame is then enough."""
    if not job.upload.original:
        return None
    suffix = Path(job.upload.original.name).suffix.lower() or ".img"
    path = work_dir(job) / f"original{suffix}"
    if not path.exists():
        partial = path.with_name(path.name + ".part")
        try:
            with job.upload.original.open("rb") as source, partial.open("wb") as target:
                shutil.copyfileobj(source, target)
        except FileNotFoundError:
            partial.unlink(missing_ok=True)
            return None
        partial.replace(path)
    return path


def probe_video(path: Path) -> VideoInfo:
    """Decode every frame: a file that only looks like an MP4 is caught here."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise BadVideo("no video stream")
            stream = container.streams.video[0]
            frames = 0
            last_time = 0.0
            for frame in container.decode(stream):
                frames += 1
                if frame.time is not None:
                    last_time = frame.time
            if frames == 0:
                raise BadVideo("no decodable frames")
            return _video_info(stream, frames, last_time)
    except BadVideo:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise BadVideo(str(exc)) from exc


def inspect_video(path: Path, poster_path: Path | None = None) -> VideoInfo:
    """What finalizing a job needs, in one pass over the file: every packet
    read (a file cut short or damaged is caught), frames counted from the
    packets (in an MP4 one packet is one frame), the first frame decoded,
    and saved as the poster when ``poster_path`` is given. ``probe_video``
    decodes every frame, about ten times the work: with a thousand jobs in
    flight, that and a second opening for the poster were most of the CPU a
    finished job cost."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise BadVideo("no video stream")
            stream = container.streams.video[0]
            stream.thread_count = 1  # one frame: threads cost more than they save
            frames, last_pts, first = 0, None, None
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                if packet.is_corrupt:
                    raise BadVideo(f"packet {frames} is cut short or damaged")
                frames += 1
                if packet.pts is not None:
                    last_pts = packet.pts if last_pts is None else max(last_pts, packet.pts)
                if first is None:
                    first = next(iter(packet.decode()), None)
            if first is None:  # a decoder that holds frames back gives them up when flushed
                first = next(iter(stream.codec_context.decode(None)), None)
            if frames == 0 or first is None:
                raise BadVideo("no decodable frames")
            if poster_path is not None:
                first.to_image().save(poster_path, "JPEG", quality=85)
            last_time = float(last_pts * stream.time_base) if last_pts is not None and stream.time_base else 0.0
            return _video_info(stream, frames, last_time)
    except BadVideo:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise BadVideo(str(exc)) from exc


def _video_info(stream, frames: int, last_time: float) -> VideoInfo:
    """The figures of a video stream whose last frame shows at ``last_time`` s."""
    rate = float(stream.average_rate or stream.guessed_rate or 0) or None
    duration = last_time + (1 / rate if rate else 0.0)
    if stream.duration is not None and stream.time_base is not None:
        duration = max(duration, float(stream.duration * stream.time_base))
    return VideoInfo(
        codec=stream.codec_context.name,
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        frames=frames,
        duration=round(duration, 3),
        pix_fmt=stream.codec_context.pix_fmt or "",
    )


def write_poster(video_path: Path, poster_path: Path) -> None:
    with av.open(str(video_path)) as container:
        frame = next(container.decode(video=0))
        frame.to_image().save(poster_path, "JPEG", quality=85)
