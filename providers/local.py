"""The embedded provider: renders on this machine, offline, with no key.

``submit`` does no work: its handle is a small JSON document holding
everything the render needs (the normalised frame's path and the original's
name beside it, size, seed, cfg_scale, motion, duration, fps), so
``poll`` needs no database and a redelivered poll simply renders again into
the same paths (the renderer replaces files atomically). ``poll`` renders
inline and is final on its first call.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
from PIL import Image, UnidentifiedImageError

from providers.base import GenerationRequest, PollContext, PollState, Provider, ProviderError
from providers.local_render import camera_path, render_clip
from providers.local_source import load_source
from providers.params import COMMON, Param, ParamError

HANDLE_VERSION = 2
HANDLE_MAX_LENGTH = 255  # Job.provider_job_id

# A clip a marketer would post: 5 s at 24 fps (120 frames). The ranges keep a
# render to a few seconds of CPU and its memory flat (frames are streamed to
# the encoder; only the source levels are held): at most 10 s at 30 fps.
DURATION = Param(
    "duration",
    "float",
    5.0,
    "How long the video lasts, in seconds.",
    label="Duration",
    minimum=1.0,
    maximum=10.0,
    unit="s",
    step=0.5,
)
FPS = Param(
    "fps",
    "int",
    24,
    "Frames per second: 24 looks like film, 30 like phone video; more frames make pans smoother.",
    label="Frame rate",
    minimum=12,
    maximum=30,
    unit="fps",
    step=1,
)


class LocalProvider(Provider):
    name = "local"
    label = "Local (embedded, offline)"
    models = ("camera-motion",)
    supports_cancel = False
    supports_webhook = False
    needs_prompt = False
    cost = 1
    min_poll_interval = 0.0
    renders_inline = True
    uses_original = True
    parameters = (*COMMON, DURATION, FPS)

    def submit(self, request: GenerationRequest) -> str:
        image = Path(request.image_path)
        fields = {
            "v": HANDLE_VERSION,
            "image": str(image),
            "w": request.width,
            "h": request.height,
            "seed": request.seed,
            "cfg": request.cfg_scale,
            "motion": request.motion_bucket_id,
        }
        try:
            fields["dur"] = DURATION.parse(request.extra.get("duration"))
            fields["fps"] = FPS.parse(request.extra.get("fps"))
        except ParamError as exc:
            # Checked when the job was made; only a job edited by hand gets here.
            raise ProviderError(
                f"This job's settings cannot be rendered: {exc.message}",
                code="bad_parameters",
                detail=f"extra={request.extra!r}",
            ) from exc
        if request.source_path is not None:
            source = Path(request.source_path)
            # Beside the frame (the pipeline's work directory) its name is enough.
            fields["src"] = source.name if source.parent == image.parent else str(source)
        handle = json.dumps(fields, separators=(",", ":"))
        if len(handle) > HANDLE_MAX_LENGTH:
            # The handle is stored in a 255-character column; only a very deep
            # WORK_DIR gets here.
            raise ProviderError(
                "This server is misconfigured, so the video cannot be made here.",
                code="handle_too_long",
                detail=f"local handle is {len(handle)} characters (max {HANDLE_MAX_LENGTH}); shorten WORK_DIR",
            )
        return handle

    def poll(self, provider_job_id: str, context: PollContext) -> PollState:
        try:
            job = json.loads(provider_job_id)
            if job.get("v") not in (1, HANDLE_VERSION):
                raise ValueError(f"unknown handle version {job.get('v')!r}")
            image_path = Path(job["image"])
            source_path = image_path.parent / job["src"] if job.get("src") else None
            size = (int(job["w"]), int(job["h"]))
            seed, cfg_scale, motion = int(job["seed"]), float(job["cfg"]), int(job["motion"])
            # Version 1 handles (before duration and fps) get the defaults.
            duration, fps = DURATION.parse(job.get("dur")), FPS.parse(job.get("fps"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return PollState(
                state="failed",
                error_code="bad_handle",
                error_message="This job's render instructions are damaged, so it cannot be rendered. "
                "Please start it again.",
                error_detail=f"{type(exc).__name__}: {exc}; handle={provider_job_id[:200]!r}",
            )

        frames, fps = clip_settings(duration, fps)
        try:
            views = camera_path(*size, seed=seed, cfg_scale=cfg_scale, motion_bucket_id=motion, frames=frames)
        except ValueError as exc:
            return _bad_parameters(exc)
        try:
            source = load_source(image_path, source_path, size, max(view.zoom(size[0]) for view in views))
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as exc:
            return PollState(
                state="failed",
                error_code="image_unreadable",
                error_message="The image for this job could not be read, so no video was made. Please upload it again.",
                error_detail=f"{image_path}: {type(exc).__name__}: {exc}",
            )

        def progress(fraction: float) -> None:
            context.report(fraction, f"Rendering {frames} frames: {fraction:.0%}" if fraction < 1 else "Rendered")

        try:
            render_clip(
                source.image,
                box=source.box,
                size=size,
                seed=seed,
                cfg_scale=cfg_scale,
                motion_bucket_id=motion,
                video_path=context.video_path,
                poster_path=context.poster_path,
                fps=fps,
                frames=frames,
                progress=progress,
            )
        except ValueError as exc:
            return _bad_parameters(exc)
        except (OSError, av.FFmpegError) as exc:
            # Disk full, a vanished directory: nothing wrong with the job itself.
            raise ProviderError(
                "The video could not be written on this server; it will be tried again.",
                retryable=True,
                code="render_failed",
                detail=f"{type(exc).__name__}: {exc}",
            ) from exc
        return PollState(state="succeeded", progress=1.0, seed=seed, finish_reason="SUCCESS")


def _bad_parameters(exc: ValueError) -> PollState:
    return PollState(
        state="failed",
        error_code="bad_parameters",
        error_message="The settings for this job are outside what the local renderer accepts.",
        error_detail=str(exc),
    )


def clip_settings(duration: float, fps: int) -> tuple[int, int]:
    """Frames and frame rate of a clip of ``duration`` seconds at ``fps``.

    ``LOCAL_FRAMES`` in Django settings, when set, overrides both: exactly that
    many frames at ``LOCAL_FPS`` (demos and tests of long or short renders).
    """
    override, override_fps = 0, 12
    try:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        try:
            override = int(getattr(settings, "LOCAL_FRAMES", 0) or 0)
            override_fps = int(getattr(settings, "LOCAL_FPS", 12) or 12)
        except ImproperlyConfigured:
            override = 0
    except ImportError:
        pass
    if override > 0:
        return max(2, override), override_fps
    return max(2, round(duration * fps)), fps
