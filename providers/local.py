"""The embedded provider: renders on this machine, offline, with no key.

``submit`` does no work: its handle is a small JSON document holding
everything the render needs (image path, size, seed, cfg_scale, motion), so
``poll`` needs no database and a redelivered poll simply renders again into
the same paths (the renderer replaces files atomically). ``poll`` renders
inline and is final on its first call.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
from PIL import Image, ImageOps, UnidentifiedImageError

from providers.base import GenerationRequest, PollContext, PollState, Provider, ProviderError
from providers.local_render import render_clip

HANDLE_VERSION = 1
HANDLE_MAX_LENGTH = 255  # Job.provider_job_id
DEFAULT_FPS = 12
DEFAULT_FRAMES = 25


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

    def submit(self, request: GenerationRequest) -> str:
        handle = json.dumps(
            {
                "v": HANDLE_VERSION,
                "image": str(request.image_path),
                "w": request.width,
                "h": request.height,
                "seed": request.seed,
                "cfg": request.cfg_scale,
                "motion": request.motion_bucket_id,
            },
            separators=(",", ":"),
        )
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
            if job.get("v") != HANDLE_VERSION:
                raise ValueError(f"unknown handle version {job.get('v')!r}")
            image_path = Path(job["image"])
            size = (int(job["w"]), int(job["h"]))
            seed, cfg_scale, motion = int(job["seed"]), float(job["cfg"]), int(job["motion"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return PollState(
                state="failed",
                error_code="bad_handle",
                error_message="This job's render instructions are damaged, so it cannot be rendered. "
                "Please start it again.",
                error_detail=f"{type(exc).__name__}: {exc}; handle={provider_job_id[:200]!r}",
            )

        try:
            image = _load(image_path, size)
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as exc:
            return PollState(
                state="failed",
                error_code="image_unreadable",
                error_message="The image for this job could not be read, so no video was made. Please upload it again.",
                error_detail=f"{image_path}: {type(exc).__name__}: {exc}",
            )

        fps, frames = _clip_settings()

        def progress(fraction: float) -> None:
            context.report(fraction, f"Rendering {frames} frames: {fraction:.0%}" if fraction < 1 else "Rendered")

        try:
            render_clip(
                image,
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
            return PollState(
                state="failed",
                error_code="bad_parameters",
                error_message="The settings for this job are outside what the local renderer accepts.",
                error_detail=str(exc),
            )
        except (OSError, av.FFmpegError) as exc:
            # Disk full, a vanished directory: nothing wrong with the job itself.
            raise ProviderError(
                "The video could not be written on this server; it will be tried again.",
                retryable=True,
                code="render_failed",
                detail=f"{type(exc).__name__}: {exc}",
            ) from exc
        return PollState(state="succeeded", progress=1.0, seed=seed, finish_reason="SUCCESS")


def _load(path: Path, size: tuple[int, int]) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        rgb = image.convert("RGB")
    if rgb.size != size:
        # Intake already fits images to the job's size; this is only a guard.
        rgb = ImageOps.fit(rgb, size, Image.Resampling.LANCZOS)
    return rgb


def _clip_settings() -> tuple[int, int]:
    """``LOCAL_FPS`` and ``LOCAL_FRAMES`` from Django settings when they are
    configured, else the defaults (the renderer itself never needs Django)."""
    try:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured
    except ImportError:
        return DEFAULT_FPS, DEFAULT_FRAMES
    try:
        return (
            int(getattr(settings, "LOCAL_FPS", DEFAULT_FPS)),
            int(getattr(settings, "LOCAL_FRAMES", DEFAULT_FRAMES)),
        )
    except ImproperlyConfigured:
        return DEFAULT_FPS, DEFAULT_FRAMES
