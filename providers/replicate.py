"""Replicate image-to-video models as a provider (``replicate``).

``REPLICATE_VIDEO_MODEL`` names the model ("owner/name" or
"owner/name:version"); ``MODELS`` below maps the inputs of the models we know
(their parameters, whether they need a prompt, and how a job becomes their
input). A model run is a Replicate prediction: ``submit`` creates it (no
``Prefer: wait``), ``poll`` reads ``GET /v1/predictions/{id}`` at most every
``REPLICATE_POLL_INTERVAL`` seconds, ``cancel`` posts its cancel. With a
``webhook_url`` (the install has a public address), the prediction asks
Replicate to post its ``completed`` webhook there, which makes the job look at
once instead of at its next poll (``providers.replicate_webhooks`` checks it).

Replicate deletes the files of API predictions after an hour, so the poll that
first sees ``succeeded`` copies the video at once, through ``safe_fetch`` (the
output URL is a host the prediction names; our token never goes with it), and
checks it plays before the job moves on. A copy that fails is fetched again on
the next poll.
"""

from __future__ import annotations

import base64
import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from PIL import Image

from providers import replicate_api, results
from providers.base import GenerationRequest, PollContext, PollState, Provider, ProviderError
from providers.params import MOTION_BUCKET_ID, SEED, Param

log = logging.getLogger(__name__)

MAX_VIDEO_BYTES = 200 * 1024 * 1024
DOWNLOAD_DEADLINE = 120.0
# tqdm's progress lines, as Replicate's own client reads them: " 42%|████▏     | 21/50".
_PROGRESS_RE = re.compile(r"^\s*(\d{1,3})%\s*\|.*?\|\s*(\d+)/(\d+)")


def image_data_uri(path: Path) -> str:
    """The image at ``path`` as a JPEG ``data:`` URI: how a model gets an image
    when we have no URL to give (a PNG frame would be several times larger)."""
    with Image.open(path) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=92)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_reference(request: GenerationRequest) -> str:
    return request.image_url or image_data_uri(Path(request.image_path))


# --- the models whose inputs we map ---------------------------------------------

COND_AUG = Param(
    "cond_aug",
    "float",
    0.02,
    "Noise added to your photo before animating: more lets the video stray further from it.",
    label="Noise (cond_aug)",
    minimum=0.0,
    maximum=1.0,
    step=0.01,
)
SVD_FPS = Param(
    "frames_per_second",
    "int",
    6,
    "Frames per second of the clip: SVD makes 14 or 25 frames, so a lower rate makes a longer clip.",
    label="Frames per second",
    minimum=5,
    maximum=30,
    unit="fps",
    step=1,
)
VIDEO_LENGTH = Param(
    "video_length",
    "choice",
    "14_frames_with_svd",
    "14 frames with SVD, or 25 frames with SVD-XT.",
    label="Length",
    choices=("14_frames_with_svd", "25_frames_with_svd_xt"),
)
SIZING_STRATEGY = Param(
    "sizing_strategy",
    "choice",
    "maintain_aspect_ratio",
    "How the model fits your photo to its size.",
    label="Sizing",
    choices=("maintain_aspect_ratio", "crop_to_16_9", "use_image_dimensions"),
)
WAN_FRAMES = Param(
    "num_frames",
    "int",
    81,
    "How many frames Wan makes (81 is about 5 s at 16 fps).",
    label="Frames",
    minimum=81,
    maximum=100,
    step=1,
)
WAN_FPS = Param(
    "frames_per_second",
    "int",
    16,
    "Frames per second of the clip.",
    label="Frames per second",
    minimum=5,
    maximum=24,
    unit="fps",
    step=1,
)
WAN_STEPS = Param(
    "sample_steps",
    "int",
    30,
    "Denoising steps: more are slower and a little sharper.",
    label="Steps",
    minimum=1,
    maximum=40,
    step=1,
)
WAN_GUIDE = Param(
    "sample_guide_scale",
    "float",
    5.0,
    "How closely the motion follows the prompt.",
    label="Prompt guidance",
    minimum=0.0,
    maximum=10.0,
    step=0.5,
)


def _svd_input(request: GenerationRequest, image: str) -> dict[str, Any]:
    extra = request.extra
    return {
        "input_image": image,
        "motion_bucket_id": int(request.motion_bucket_id),
        "cond_aug": float(extra.get("cond_aug", COND_AUG.default)),
        "frames_per_second": int(extra.get("frames_per_second", SVD_FPS.default)),
        "video_length": str(extra.get("video_length", VIDEO_LENGTH.default)),
        "sizing_strategy": str(extra.get("sizing_strategy", SIZING_STRATEGY.default)),
        "seed": int(request.seed),
    }


def _wan_input(request: GenerationRequest, image: str) -> dict[str, Any]:
    extra = request.extra
    inputs = {
        "image": image,
        "prompt": request.prompt,
        "max_area": "832x480" if request.width >= request.height else "480x832",
        "num_frames": int(extra.get("num_frames", WAN_FRAMES.default)),
        "frames_per_second": int(extra.get("frames_per_second", WAN_FPS.default)),
        "sample_steps": int(extra.get("sample_steps", WAN_STEPS.default)),
        "sample_guide_scale": float(extra.get("sample_guide_scale", WAN_GUIDE.default)),
        "seed": int(request.seed),
    }
    if request.negative_prompt:
        inputs["negative_prompt"] = request.negative_prompt
    return inputs


@dataclass(frozen=True)
class VideoModel:
    """A Replicate model whose inputs we map."""

    label: str
    needs_prompt: bool
    parameters: tuple[Param, ...]
    build: Callable[[GenerationRequest, str], dict[str, Any]]


SVD = VideoModel(
    label="Stable Video Diffusion",
    needs_prompt=False,
    parameters=(SEED, MOTION_BUCKET_ID, COND_AUG, SVD_FPS, VIDEO_LENGTH, SIZING_STRATEGY),
    build=_svd_input,
)
WAN_I2V_480P = VideoModel(
    label="Wan 2.1 image-to-video 480p",
    needs_prompt=True,
    parameters=(SEED, WAN_FRAMES, WAN_FPS, WAN_STEPS, WAN_GUIDE),
    build=_wan_input,
)
# By "owner/name"; a version, when REPLICATE_VIDEO_MODEL names one, is kept for the call.
MODELS: dict[str, VideoModel] = {
    "stability-ai/stable-video-diffusion": SVD,
    "wavespeedai/wan-2.1-i2v-480p": WAN_I2V_480P,
    "wan-video/wan-2.1-i2v-480p": WAN_I2V_480P,
}


def configured_model() -> tuple[str, VideoModel | None]:
    """``("owner/name", its mapping)`` of ``REPLICATE_VIDEO_MODEL``; None when unmapped."""
    ref = str(settings.REPLICATE_VIDEO_MODEL or "").strip()
    name = ref.split(":", 1)[0]
    return name, MODELS.get(name)


class _FromSettings:
    """A class attribute read from settings at each access (on the class or an
    instance), so a changed setting needs no restart and tests can switch models."""

    def __init__(self, read: Callable[[], Any]) -> None:
        self.read = read

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        return self.read()


def _model_attr(attr: str, fallback: Any) -> Callable[[], Any]:
    def read() -> Any:
        _, model = configured_model()
        return getattr(model, attr) if model is not None else fallback

    return read


class ReplicateProvider(Provider):
    name = "replicate"
    label = _FromSettings(lambda: f"Replicate — {_model_attr('label', 'unmapped model')()}")  # type: ignore[assignment]
    models = _FromSettings(lambda: (configured_model()[0],))  # type: ignore[assignment]
    supports_cancel = True
    supports_webhook = True
    needs_prompt = _FromSettings(_model_attr("needs_prompt", False))  # type: ignore[assignment]
    parameters = _FromSettings(_model_attr("parameters", (SEED,)))  # type: ignore[assignment]
    cost = 10
    min_poll_interval = _FromSettings(lambda: float(settings.REPLICATE_POLL_INTERVAL))  # type: ignore[assignment]

    @classmethod
    def unavailable_reason(cls) -> str:
        # is_enabled() follows from this, so the pages, the providers listing and
        # job creation agree on whether Replicate can be chosen.
        if not settings.REPLICATE_API_TOKEN:
            return "Replicate is not configured here: an operator must set REPLICATE_API_TOKEN."
        if configured_model()[1] is None:
            return (
                f"REPLICATE_VIDEO_MODEL ({settings.REPLICATE_VIDEO_MODEL}) is not a model this server can drive; "
                f"an operator must choose one of {', '.join(MODELS)}."
            )
        return ""

    def submit(self, request: GenerationRequest) -> str:
        name, model = configured_model()
        if model is None:
            raise ProviderError(
                "This server's Replicate video model is not one we can drive; an operator must change "
                "REPLICATE_VIDEO_MODEL.",
                code="provider_misconfigured",
                detail=f"unmapped model {settings.REPLICATE_VIDEO_MODEL!r}; mapped: {', '.join(MODELS)}",
            )
        inputs = model.build(request, image_reference(request))
        prediction = replicate_api.create(settings.REPLICATE_VIDEO_MODEL, inputs, webhook=request.webhook_url)
        log.info("replicate submit job=%s model=%s prediction=%s", request.job_id, name, prediction.id)
        return prediction.id

    def poll(self, provider_job_id: str, context: PollContext) -> PollState:
        try:
            prediction = replicate_api.get(provider_job_id)
        except ProviderError as exc:
            if exc.code != "provider_job_missing":
                raise
            return PollState(
                state="failed",
                error_code="provider_job_missing",
                error_message="Replicate no longer has this prediction.",
                error_detail=exc.detail,
            )
        if prediction.status == "starting":
            return PollState(state="queued", message="Waiting for a Replicate machine")
        if prediction.status == "processing":
            progress = _progress(prediction.logs)
            return PollState(state="running", progress=progress, message="Generating on Replicate")
        if prediction.status == "succeeded":
            url = _output_url(prediction.output)
            if not url:
                return PollState(
                    state="failed",
                    error_code="provider_bad_response",
                    error_message="Replicate finished without a video. You have not been charged; please try again.",
                    error_detail=f"prediction {prediction.id} output {prediction.output!r}"[:10000],
                )
            results.download_video(
                url, Path(context.video_path), max_bytes=MAX_VIDEO_BYTES, deadline=DOWNLOAD_DEADLINE, label="Replicate"
            )
            return PollState(state="succeeded", progress=1.0, finish_reason="SUCCESS")
        said = prediction.error or prediction.status
        return PollState(
            state="failed",
            error_code="provider_cancelled" if prediction.status == "canceled" else "provider_failed",
            error_message="Replicate could not make this video. You have not been charged; please try again."
            if prediction.status != "canceled"
            else "The prediction was cancelled at Replicate. You have not been charged.",
            error_detail=f"prediction {prediction.id} {prediction.status}: {said}"[:10000],
        )

    def cancel(self, provider_job_id: str) -> bool:
        prediction = replicate_api.cancel(provider_job_id)
        return prediction.status in replicate_api.FINAL_FAILED


def _progress(logs: str) -> float | None:
    for line in reversed((logs or "").splitlines()):
        match = _PROGRESS_RE.match(line)
        if match:
            current, total = int(match[2]), int(match[3])
            return min(1.0, current / total) if total else None
    return None


def _output_url(output: Any) -> str:
    """The video's URL: models answer a URL, or a list whose last item is the video."""
    if isinstance(output, list):
        output = output[-1] if output else None
    if isinstance(output, str) and output.startswith(("https://", "http://")):
        return output
    return ""
