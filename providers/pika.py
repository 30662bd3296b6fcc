"""Pika, through the "Pika AI Video Web Bot" API the original I2V API used.

The protocol (``../shared/specs/PROVIDER-NOTES.md``): ``POST {PIKAPI_BASE_URL}/generate``
with ``Authorization: Bearer {PIKAPI_BEARER_TOKEN}`` and JSON ``{promptText,
model, image: <a URL Pika fetches>, options: {frameRate, parameters: {motion,
guidanceScale}, negativePrompt?, seed?, aspectRatio?}}``; the job id is the
answer's ``job.id``. ``GET {base}/jobs/{id}`` until ``videos[0].status`` is
``finished`` (the video is at ``videos[0].resultUrl``); ``queued`` and
``pending`` mean wait, anything else is a failure (kept as the job's
``finish_reason``). No cancel (the original had none, nor does the API it
used), no webhook. The result link expires, so the video is downloaded at
once, through the safe fetch, size-capped (``results.download_video``).

Pika fetches the image itself (``needs_image_url``): the pipeline gives it a
signed, expiring link under ``PUBLIC_BASE_URL``, or the URL a job was made
from. Statuses, retries and the submit rule are the shared seam's
(``providers/http.py``, ``providers/remote.py``); this module is Pika's protocol.

Parameters. Pika's own, given directly, win: ``motion`` (1-4), ``guidanceScale``
(5-25), ``frameRate`` (1-24), ``aspectRatio`` (``auto`` follows the job's
framing: 16:9, 9:16 or 1:1). Otherwise the common settings are mapped onto
Pika's scale, when the user moved them from their defaults:

* ``motion_bucket_id`` 1-255 -> ``motion`` = 1 + round((motion_bucket_id - 1) * 3 / 254)
  (1 -> 1, 86 -> 2, 170 -> 3, 255 -> 4);
* ``cfg_scale`` 0-10 -> ``guidanceScale`` = round(5 + 2 * cfg_scale) (0 -> 5, 10 -> 25).

With neither, the original's values: ``motion`` 2, ``guidanceScale`` 16,
``frameRate`` 24, model ``1.5``. A value equal to its default counts as not
given (the job stores values, not whether they were typed). ``seed`` is sent
as chosen; the prompt is the job's (the pipeline writes one when none was given).
"""

from __future__ import annotations

import logging

from providers import http, results
from providers.base import GenerationRequest, PollContext, PollState, ProviderError, SettingFloor
from providers.params import CFG_SCALE, COMMON, MOTION_BUCKET_ID, Param
from providers.remote import ID_RE, RemoteProvider

log = logging.getLogger(__name__)

WAITING = frozenset({"queued", "pending"})

MOTION = Param(
    "motion",
    "int",
    2,
    "Pika's own motion strength: 1 barely moves, 4 moves a lot. Given, it wins over motion_bucket_id.",
    label="Movement (Pika)",
    minimum=1,
    maximum=4,
    step=1,
)
GUIDANCE_SCALE = Param(
    "guidanceScale",
    "int",
    16,
    "How strictly Pika follows the prompt: 5 loosely, 25 to the letter. Given, it wins over cfg_scale.",
    label="Guidance scale",
    minimum=5,
    maximum=25,
    step=1,
)
FRAME_RATE = Param(
    "frameRate",
    "int",
    24,
    "Frames per second of Pika's clip.",
    label="Frames per second",
    minimum=1,
    maximum=24,
    unit="fps",
)
ASPECT_RATIO = Param(
    "aspectRatio",
    "choice",
    "auto",
    "The shape of Pika's clip; auto follows the photo's framing (16:9, 9:16 or 1:1).",
    label="Aspect ratio",
    choices=("auto", "16:9", "9:16", "1:1", "5:2", "4:5", "4:3"),
)


def pika_options(request: GenerationRequest) -> dict:
    """Pika's ``options`` for ``request``: its own values where given, else the
    common ones mapped (module docstring), else the original's."""
    extra = request.extra
    motion = int(extra.get("motion", MOTION.default))
    if motion == MOTION.default and int(request.motion_bucket_id) != MOTION_BUCKET_ID.default:
        motion = 1 + round((int(request.motion_bucket_id) - 1) * 3 / 254)
    guidance = int(extra.get("guidanceScale", GUIDANCE_SCALE.default))
    if guidance == GUIDANCE_SCALE.default and float(request.cfg_scale) != CFG_SCALE.default:
        guidance = round(5 + 2 * float(request.cfg_scale))
    aspect = str(extra.get("aspectRatio", "auto"))
    if aspect == "auto":
        aspect = "16:9" if request.width > request.height else "9:16" if request.width < request.height else "1:1"
    options: dict = {
        "frameRate": int(extra.get("frameRate", FRAME_RATE.default)),
        "parameters": {"motion": motion, "guidanceScale": guidance},
        "aspectRatio": aspect,
        "seed": int(request.seed),
    }
    if request.negative_prompt:
        options["negativePrompt"] = request.negative_prompt
    return options


class PikaProvider(RemoteProvider):
    name = "pika"
    label = "Pika"
    remote_name = "Pika"
    key_setting = "PIKAPI_BEARER_TOKEN"
    base_url_setting = "PIKAPI_BASE_URL"
    models = ("1.5",)
    supports_cancel = False
    supports_webhook = False
    needs_prompt = True
    needs_image_url = True
    # Our three framings; Pika is told the shape as aspectRatio.
    parameters = (*COMMON, MOTION, GUIDANCE_SCALE, FRAME_RATE, ASPECT_RATIO)
    cost = 10
    min_poll_interval = SettingFloor("PIKA_POLL_INTERVAL")  # type: ignore[assignment]
    max_video_bytes = 100 * 1024 * 1024
    download_deadline = 120.0

    def submit(self, request: GenerationRequest) -> str:
        if not request.image_url:
            raise ProviderError(
                "Pika fetches the image by URL and none was available: give the image as image_url, "
                "or ask the operator to set PUBLIC_BASE_URL.",
                code="needs_public_url",
            )
        payload = {
            "promptText": request.prompt,
            "model": self.models[0],
            "image": request.image_url,
            "options": pika_options(request),
        }
        response = self.call("POST", "/generate", json=payload, ok=(200, 201))
        raw = http.read_capped(response)
        what = f"POST {self.url('/generate')}"
        job = http.json_object(raw, label="Pika", what=what).get("job")
        job_id = job.get("id") if isinstance(job, dict) else None
        if isinstance(job_id, int):
            job_id = str(job_id)
        if not isinstance(job_id, str) or not ID_RE.match(job_id):
            raise http.bad_response("Pika", f"{what} -> {response.status_code}: {http.text(raw)}")
        log.info("pika submit job=%s provider_id=%s options=%s", request.job_id, job_id, payload["options"])
        return job_id

    def poll(self, provider_job_id: str, context: PollContext) -> PollState:
        response = self.look(provider_job_id, f"/jobs/{provider_job_id}")
        if isinstance(response, PollState):
            return response
        what = f"GET {response.url}"
        raw = http.read_capped(response)
        videos = http.json_object(raw, label="Pika", what=what).get("videos")
        video = videos[0] if isinstance(videos, list) and videos and isinstance(videos[0], dict) else None
        if video is None or not isinstance(video.get("status"), str):
            raise http.bad_response("Pika", f"{what} -> 200: {http.text(raw)}")
        status = video["status"].strip().lower()
        if status in WAITING:
            if status == "queued":
                return PollState(state="queued", message="Waiting in Pika's queue")
            return PollState(state="running", message="Pika is making the video")
        if status != "finished":
            return PollState(
                state="failed",
                finish_reason=status.upper()[:32],
                error_code="provider_failed",
                error_message=f"Pika could not make this video (it reported {status!r}). Nothing was charged.",
                error_detail=f"{what} -> 200: {http.text(raw)}",
            )
        result_url = video.get("resultUrl")
        if not isinstance(result_url, str) or not result_url.startswith(("http://", "https://")):
            raise http.bad_response("Pika", f"{what} -> 200 finished without a resultUrl: {http.text(raw)}")
        size = results.download_video(
            result_url,
            context.video_path,
            max_bytes=self.max_video_bytes,
            deadline=self.download_deadline,
            label="Pika",
        )
        log.info("pika result %s saved (%d bytes)", provider_job_id, size)
        return PollState(state="succeeded", progress=1.0, finish_reason="SUCCESS")
