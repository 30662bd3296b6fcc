"""Kling image-to-video through AI/ML API.

The protocol (``../shared/specs/aimlapi-kling-image-to-video.md``, made current
by ``PROVIDER-NOTES.md``): ``POST {AIMLAPI_BASE_URL}/v2/video/generations`` with
``Authorization: Bearer {AIMLAPI_KEY}`` and JSON ``{model, image_url, prompt,
negative_prompt?, duration, cfg_scale, tail_image_url?, static mask?,
dynamic_masks?}``; the answer's ``id`` is the generation id. ``GET
{same path}?generation_id=<id>`` answers ``{id, status, video: {url}, error:
{name, message}, meta: {usage: {credits_used}}}``; ``status`` goes ``queued``
(older: ``waiting``) -> ``generating`` (older: ``active``) -> ``completed`` or
``error``. No cancel, no webhook. The video link is the provider's word and
may expire: it is downloaded at once, through the safe fetch
(``results.download_video``). ``credits_used`` is kept for staff on the job
(``PollState.provider_data``).

The endpoint. ``AIMLAPI_LEGACY_ENDPOINT=true`` sends both calls to the legacy
``/v2/generate/video/kling/generation`` of the spec file instead. A setting,
not an automatic retry on 404: a fallback would send the create a second time
(the submit rule of ``providers/http.py`` allows a resend only when the
provider cannot have taken the work), and every later poll of that job would
have to remember which path took it. An operator who sees "rejected the
request" with a 404 in the job's detail flips the setting.

Images. Kling takes ``image_url`` as a URL or as base64 (``accepts_image_url``):
with ``PUBLIC_BASE_URL`` the pipeline gives a signed link to the normalised
frame, else the frame goes inline as a JPEG ``data:`` URI, so Kling works on an
install with no public address. The end frame and masks go the same way
(masks as PNG, whose edges JPEG would blur).

Models and their field names, one table (``MODELS``): the v1 and v1.6 models
name the masks ``static_mask_url`` and ``dynamic_masks[].mask_url``; v2.1 names
them ``static_mask`` and ``dynamic_masks[].mask``. Every model gets ``duration``
as an integer, as the HTTP examples and schemas of AI/ML API's model pages have
it (only the spec file's Python sample sends the string ``"5"``).

Parameters. ``duration`` 5 or 10 s, and Kling's own ``cfg_scale`` 0-1 (how
closely it follows the prompt) as ``kling_cfg_scale``; given, it wins.
Otherwise the common ``cfg_scale`` (0-10), when moved from its default, is
mapped onto Kling's scale: ``kling cfg_scale = round(cfg_scale / 10, 2)``
(0 -> 0, 1.8 -> 0.18, 5 -> 0.5, 10 -> 1); with neither, Kling's default 0.5.
``motion_bucket_id`` and ``seed`` have no Kling counterpart and are not sent.
"""

from __future__ import annotations

import base64
import io
import logging
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from PIL import Image

from providers import http, results
from providers.base import GenerationRequest, MotionMask, PollContext, PollState, ProviderError, SettingFloor
from providers.params import CFG_SCALE, COMMON, Param
from providers.remote import ID_RE, RemoteProvider

log = logging.getLogger(__name__)

CURRENT_PATH = "/v2/video/generations"
LEGACY_PATH = "/v2/generate/video/kling/generation"

QUEUED = frozenset({"queued", "waiting"})
GENERATING = frozenset({"generating", "active"})


@dataclass(frozen=True)
class ModelFields:
    """How one Kling model spells what differs between model generations."""

    static_mask: str  # the static mask's field
    dynamic_mask: str  # the mask's key inside each of dynamic_masks


V1 = ModelFields(static_mask="static_mask_url", dynamic_mask="mask_url")
V2 = ModelFields(static_mask="static_mask", dynamic_mask="mask")
MODELS: dict[str, ModelFields] = {
    "kling-video/v1/standard/image-to-video": V1,
    "kling-video/v1/pro/image-to-video": V1,
    "kling-video/v1.6/standard/image-to-video": V1,
    "kling-video/v1.6/pro/image-to-video": V1,
    "kling-video/v2.1/standard/image-to-video": V2,
    "kling-video/v2.1/pro/image-to-video": V2,
}

DURATION = Param(
    "duration",
    "choice",
    5,
    "How long the video lasts, in seconds.",
    label="Duration",
    choices=(5, 10),
    unit="s",
)
KLING_CFG_SCALE = Param(
    "kling_cfg_scale",
    "float",
    0.5,
    "Kling's own cfg_scale: how closely it follows the prompt, 0 loosely, 1 to the letter. "
    "Given, it wins over cfg_scale (which is otherwise mapped as cfg_scale / 10).",
    label="Prompt adherence (Kling cfg_scale)",
    minimum=0.0,
    maximum=1.0,
    step=0.05,
)


def kling_cfg_scale(request: GenerationRequest) -> float:
    """Kling's ``cfg_scale`` for ``request``: its own value where given, else the
    common one mapped (module docstring), else Kling's default."""
    value = float(request.extra.get("kling_cfg_scale", KLING_CFG_SCALE.default))
    if value == KLING_CFG_SCALE.default and float(request.cfg_scale) != CFG_SCALE.default:
        value = round(float(request.cfg_scale) / 10, 2)
    return max(0.0, min(1.0, value))


def data_uri(path: Path, *, fmt: str = "JPEG") -> str:
    """The image at ``path`` inline: JPEG for photos (a PNG frame is several
    times larger), PNG for masks (hard edges)."""
    with Image.open(path) as image:
        buffer = io.BytesIO()
        if fmt == "JPEG":
            image.convert("RGB").save(buffer, "JPEG", quality=92)
        else:
            image.save(buffer, "PNG")
    mime = "image/jpeg" if fmt == "JPEG" else "image/png"
    return f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _mask_ref(mask: MotionMask) -> str:
    return mask.image_url or data_uri(Path(mask.image_path), fmt="PNG")


def kling_payload(request: GenerationRequest, model: str) -> dict:
    """The create body for ``request`` on ``model`` (field names from ``MODELS``)."""
    fields = MODELS[model]
    duration = int(request.extra.get("duration", DURATION.default))
    payload: dict = {
        "model": model,
        "image_url": request.image_url or data_uri(Path(request.image_path)),
        "prompt": request.prompt,
        "duration": duration,
        "cfg_scale": kling_cfg_scale(request),
    }
    if request.negative_prompt:
        payload["negative_prompt"] = request.negative_prompt
    if request.tail_image_url or request.tail_image_path:
        payload["tail_image_url"] = request.tail_image_url or data_uri(Path(request.tail_image_path))
    if request.static_mask is not None:
        payload[fields.static_mask] = _mask_ref(request.static_mask)
    if request.dynamic_masks:
        payload["dynamic_masks"] = [
            {
                fields.dynamic_mask: _mask_ref(mask),
                "trajectories": [{"x": int(x), "y": int(y)} for x, y in mask.trajectory],
            }
            for mask in request.dynamic_masks
        ]
    return payload


def _shown(value):
    """``value`` (the payload) for a log line: inline images cut short, masks included."""
    if isinstance(value, dict):
        return {key: _shown(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shown(item) for item in value]
    return value[:40] + "…" if isinstance(value, str) and value.startswith("data:") else value


class KlingProvider(RemoteProvider):
    name = "kling"
    label = "Kling (AI/ML API)"
    remote_name = "Kling (AI/ML API)"
    key_setting = "AIMLAPI_KEY"
    base_url_setting = "AIMLAPI_BASE_URL"
    models = tuple(MODELS)
    supports_cancel = False
    supports_webhook = False
    needs_prompt = True
    accepts_image_url = True
    accepts_tail_image = True
    accepts_masks = True
    max_dynamic_masks = 6
    trajectory_points = (2, 77)
    parameters = (*COMMON, DURATION, KLING_CFG_SCALE)
    cost = 10
    min_poll_interval = SettingFloor("AIMLAPI_POLL_INTERVAL")  # type: ignore[assignment]
    max_video_bytes = 200 * 1024 * 1024
    download_deadline = 180.0

    @staticmethod
    def path() -> str:
        return LEGACY_PATH if settings.AIMLAPI_LEGACY_ENDPOINT else CURRENT_PATH

    def submit(self, request: GenerationRequest) -> str:
        model = request.model or self.models[0]
        if model not in MODELS:
            raise ProviderError(f"Kling has no model {model!r}.", code="invalid_request")
        payload = kling_payload(request, model)
        path = self.path()
        response = self.call("POST", path, json=payload, ok=(200, 201, 202))
        raw = http.read_capped(response)
        what = f"POST {self.url(path)}"
        body = http.json_object(raw, label=self.remote_name, what=what, status=response.status_code)
        generation_id = body.get("id") or body.get("generation_id")
        if isinstance(generation_id, int):
            generation_id = str(generation_id)
        if not isinstance(generation_id, str) or not ID_RE.match(generation_id):
            raise http.bad_response(self.remote_name, f"{what} -> {response.status_code}: {http.text(raw)}")
        log.info("kling submit job=%s generation=%s payload=%s", request.job_id, generation_id, _shown(payload))
        return generation_id

    def poll(self, provider_job_id: str, context: PollContext) -> PollState:
        response = self.look(provider_job_id, self.path(), params={"generation_id": provider_job_id})
        if isinstance(response, PollState):
            return response
        what = f"GET {response.url}"
        raw = http.read_capped(response)
        body = http.json_object(raw, label=self.remote_name, what=what)
        status = body.get("status")
        if not isinstance(status, str):
            raise http.bad_response(self.remote_name, f"{what} -> 200 without a status: {http.text(raw)}")
        status = status.strip().lower()
        data = _usage(body)
        if status in QUEUED:
            return PollState(state="queued", message="Waiting in Kling's queue", provider_data=data)
        if status in GENERATING:
            return PollState(state="running", message="Kling is making the video", provider_data=data)
        if status != "completed":
            return self._failed(status, body, f"{what} -> 200: {http.text(raw)}", data)
        video = body.get("video")
        url = video.get("url") if isinstance(video, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise http.bad_response(self.remote_name, f"{what} -> 200 completed without video.url: {http.text(raw)}")
        size = results.download_video(
            url,
            context.video_path,
            max_bytes=self.max_video_bytes,
            deadline=self.download_deadline,
            label="Kling",
        )
        log.info("kling result %s saved (%d bytes)", provider_job_id, size)
        return PollState(state="succeeded", progress=1.0, finish_reason="SUCCESS", provider_data=data)

    def _failed(self, status: str, body: dict, detail: str, data: dict) -> PollState:
        error = body.get("error")
        said = ""
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            said = error["message"].strip()[:300]
        elif isinstance(error, str):
            said = error.strip()[:300]
        name = error.get("name") if isinstance(error, dict) else None
        reason = f": {said}" if said else f" (it reported {status!r})"
        return PollState(
            state="failed",
            finish_reason=(name if isinstance(name, str) and name else status.upper())[:32],
            error_code="provider_failed",
            error_message=f"Kling could not make this video{reason}. Nothing was charged.",
            error_detail=detail,
            provider_data=data,
        )


def _usage(body: dict) -> dict:
    """What the answer says the generation cost on AI/ML API, for staff."""
    meta = body.get("meta")
    usage = meta.get("usage") if isinstance(meta, dict) else None
    credits = usage.get("credits_used") if isinstance(usage, dict) else None
    if isinstance(credits, int | float) and not isinstance(credits, bool):
        return {"credits_used": credits}
    return {}
