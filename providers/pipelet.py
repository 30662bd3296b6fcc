"""Pipelet's video queue: Wan 2.2 fast image-to-video (``pipelet``).

The protocol (``../shared/specs/pipelet-queue-api.md``, and what
``PROVIDER-NOTES.md`` adds), every call with ``Authorization: Bearer
{PIPELET_API_KEY}``:

* ``POST /queue/{model}`` with JSON ``{prompt, data_uri: <the image as base64>,
  duration, height, priority?, second_image_uri?, higher_quality_with_more_steps?}``
  answers ``{request_id, status_url, response_url, cancel_url}``;
* ``GET /queue/{model}/requests/{id}/status``: ``IN_QUEUE`` with a 0-based
  ``queue_position`` (how many jobs are ahead), ``IN_PROGRESS`` with
  ``statusMessages.detail_message`` "Progress: 4/24 Tasks done", then
  ``COMPLETED``, ``FAILED`` or ``CANCELLED`` (details in ``statusMessages``);
* ``PUT …/cancel``: 204 cancelled, 409 once the video has started;
* ``GET /queue/{model}/requests/{id}``: ``{"video": {"data_uri": "<base64 MP4>"}}``,
  tens of MB, decoded while it streams in (``results.save_base64_video``); with
  ``x-pipelet-output: binary`` on the create (``PIPELET_OUTPUT=binary``) the
  field holds a presigned https link instead, fetched at once through the safe
  fetch. Either answer is understood whatever the setting.

Our handle for a job is ``{model}:{request_id}``: every URL is built from
``PIPELET_BASE_URL`` and it, never taken from Pipelet's answers, so our key only
goes where the settings say. Our queue position is 1 for "next", so Pipelet's
0-based position is shown plus one. Statuses, retries and the submit rule
(a create answered 500/502/504 or not at all is never sent again) are the
shared seam's (``providers/http.py``, ``providers/remote.py``).

Rules checked before a job is made (``check_values``): ``height`` 720 or 480,
and at most 5 s at 720p, 7 s at 480p.
"""

from __future__ import annotations

import base64
import logging
import re
from pathlib import Path

from django.conf import settings

from providers import http, results
from providers.base import GenerationRequest, PollContext, PollState, ProviderError, SettingFloor
from providers.params import Param, ParamError
from providers.remote import ID_RE, RemoteProvider

log = logging.getLogger(__name__)

MODELS = ("wan22-fast-i2v", "wan22-fast-i2v-premium", "wan22-fast-i2v-pro")
# The longest clip Pipelet makes at each height.
MAX_SECONDS = {720: 5, 480: 7}
_PROGRESS_RE = re.compile(r"(\d+)\s*/\s*(\d+)")

DURATION = Param(
    "duration",
    "int",
    5,
    "How long the video lasts, in seconds (Pipelet: at most 5 s at 720p, 7 s at 480p).",
    label="Duration",
    minimum=1,
    maximum=7,
    unit="s",
    step=1,
)
HEIGHT = Param(
    "height",
    "choice",
    720,
    "The height of Pipelet's video in pixels: 720, or 480 for clips up to 7 s (and sooner).",
    label="Resolution (height)",
    choices=(720, 480),
)
PRIORITY = Param(
    "priority",
    "int",
    0,
    "Pipelet runs a higher priority sooner; 0 leaves the order to Pipelet.",
    label="Priority",
    minimum=0,
    maximum=10,
    step=1,
)
MORE_STEPS = Param(
    "higher_quality_with_more_steps",
    "choice",
    "no",
    "yes: Pipelet spends more steps on the video, for higher quality; it takes longer.",
    label="More steps (higher quality)",
    choices=("no", "yes"),
)


class PipeletProvider(RemoteProvider):
    name = "pipelet"
    label = "Pipelet — Wan 2.2 fast"
    remote_name = "Pipelet"
    key_setting = "PIPELET_API_KEY"
    base_url_setting = "PIPELET_BASE_URL"
    models = MODELS
    supports_cancel = True
    cancels_only_queued = True
    supports_webhook = True
    needs_prompt = True
    # Pipelet's second_image_uri: the last frame of the video.
    accepts_tail_image = True
    # Pipelet takes none of the common settings (seed, cfg_scale, motion): its own only.
    parameters = (DURATION, HEIGHT, PRIORITY, MORE_STEPS)
    cost = 10
    model_costs = {"wan22-fast-i2v": 10, "wan22-fast-i2v-premium": 15, "wan22-fast-i2v-pro": 25}
    min_poll_interval = SettingFloor("PIPELET_POLL_INTERVAL")  # type: ignore[assignment]
    max_video_bytes = 200 * 1024 * 1024
    download_deadline = 120.0

    @classmethod
    def check_values(cls, values: dict) -> None:
        height, duration = values.get("height", HEIGHT.default), values.get("duration", DURATION.default)
        longest = MAX_SECONDS.get(height)
        if longest is None:
            raise ParamError(
                "height", f"Pipelet makes videos 720 or 480 pixels high; got {height!r}.", "invalid_choice"
            )
        if duration > longest:
            # Only 720p has a tighter limit than the duration's own range (7 s at 480p).
            longer = [f"{h}p for up to {s} s" for h, s in MAX_SECONDS.items() if s > longest]
            hint = f"choose {longest} s or less" + (f", or {longer[0]}" if longer else "")
            raise ParamError("duration", f"At {height}p Pipelet makes at most {longest} s; {hint}.", "out_of_range")

    # --- submit ----------------------------------------------------------------

    def submit(self, request: GenerationRequest) -> str:
        model = request.model or self.models[0]
        if model not in self.models:
            raise ProviderError(
                f"Pipelet has no model {model!r}; choose one of {', '.join(self.models)}.",
                code="invalid_request",
            )
        payload = self.create_body(request)
        headers = {}
        if request.webhook_url:
            headers["x-pipelet-webhook"] = request.webhook_url
        if settings.PIPELET_OUTPUT == "binary":
            headers["x-pipelet-output"] = "binary"
        path = f"/queue/{model}"
        response = self.call("POST", path, json=payload, headers=headers, ok=(200, 201, 202))
        raw = http.read_capped(response)
        what = f"POST {self.url(path)}"
        request_id = http.json_object(raw, label="Pipelet", what=what).get("request_id")
        if isinstance(request_id, int) and not isinstance(request_id, bool):
            request_id = str(request_id)
        handle = f"{model}:{request_id}" if isinstance(request_id, str) else ""
        if not ID_RE.match(handle) or not ID_RE.match(request_id or ""):
            raise http.bad_response("Pipelet", f"{what} -> {response.status_code}: {http.text(raw)}")
        log.info("pipelet submit job=%s handle=%s", request.job_id, handle)
        return handle

    def create_body(self, request: GenerationRequest) -> dict:
        """The create request's JSON: Pipelet's own fields, the images as base64."""
        extra = request.extra
        body: dict = {
            "prompt": request.prompt,
            "data_uri": _base64_file(Path(request.image_path)),
            "duration": int(extra.get("duration", DURATION.default)),
            "height": int(extra.get("height", HEIGHT.default)),
        }
        priority = int(extra.get("priority", PRIORITY.default))
        if priority != PRIORITY.default:  # unset, Pipelet keeps its own order
            body["priority"] = priority
        if extra.get("higher_quality_with_more_steps", MORE_STEPS.default) == "yes":
            body["higher_quality_with_more_steps"] = True
        if request.tail_image_path:
            body["second_image_uri"] = _base64_file(Path(request.tail_image_path))
        return body

    # --- poll ------------------------------------------------------------------

    def poll(self, provider_job_id: str, context: PollContext) -> PollState:
        parsed = _parse_handle(provider_job_id)
        if parsed is None:
            return PollState(
                state="failed",
                error_code="provider_job_missing",
                error_message="Pipelet no longer knows this job. Nothing was charged; please try again.",
                error_detail=f"malformed handle {provider_job_id!r}",
            )
        model, request_id = parsed
        path = f"/queue/{model}/requests/{request_id}/status"
        response = self.look(provider_job_id, path)
        if isinstance(response, PollState):
            return response
        what = f"GET {self.url(path)}"
        raw = http.read_capped(response)
        body = http.json_object(raw, label="Pipelet", what=what)
        status = body.get("status")
        said = body.get("statusMessages") if isinstance(body.get("statusMessages"), dict) else {}
        if status == "IN_QUEUE":
            position = body.get("queue_position")
            if not isinstance(position, int) or isinstance(position, bool) or position < 0:
                position = None
            ahead = f" ({position} ahead)" if position else " (next)" if position == 0 else ""
            return PollState(
                state="queued",
                queue_position=position + 1 if position is not None else None,
                message=f"Waiting in Pipelet's queue{ahead}",
            )
        if status == "IN_PROGRESS":
            detail = str(said.get("detail_message") or "").strip()[:200]
            return PollState(
                state="running", progress=_progress(detail), message=detail or "Pipelet is making the video"
            )
        if status == "COMPLETED":
            return self._fetch_result(model, request_id, context)
        if status in ("FAILED", "CANCELLED"):
            cancelled = status == "CANCELLED"
            return PollState(
                state="failed",
                finish_reason=status,
                error_code="provider_cancelled" if cancelled else "provider_failed",
                error_message="The video was cancelled at Pipelet. Nothing was charged."
                if cancelled
                else "Pipelet could not make this video. Nothing was charged; please try again, perhaps with "
                "another photo or prompt.",
                error_detail=f"{what} -> 200: {http.text(raw, 8000)}",
            )
        raise http.bad_response("Pipelet", f"{what} -> 200 with an unknown status: {http.text(raw)}")

    def _fetch_result(self, model: str, request_id: str, context: PollContext) -> PollState:
        path = f"/queue/{model}/requests/{request_id}"
        what = f"GET {self.url(path)}"
        response = self.call("GET", path, stream=True, headers={"accept": "application/json"})
        found = results.save_base64_video(
            response, Path(context.video_path), label="Pipelet", what=what, max_bytes=self.max_video_bytes
        )
        if found.link:
            # A presigned link (x-pipelet-output: binary): it expires, so fetch it now,
            # through the safe fetch (public addresses only), without our key.
            size = results.download_video(
                found.link,
                Path(context.video_path),
                max_bytes=self.max_video_bytes,
                deadline=self.download_deadline,
                label="Pipelet",
            )
            log.info("pipelet result %s:%s downloaded from its link (%d bytes)", model, request_id, size)
        else:
            log.info("pipelet result %s:%s decoded (%d bytes)", model, request_id, found.size)
        return PollState(state="succeeded", progress=1.0, finish_reason="SUCCESS")

    # --- cancel ----------------------------------------------------------------

    def cancel(self, provider_job_id: str) -> bool:
        """True when Pipelet cancelled the job (204); False once it has started (409)."""
        parsed = _parse_handle(provider_job_id)
        if parsed is None:
            return False
        model, request_id = parsed
        response = self.call("PUT", f"/queue/{model}/requests/{request_id}/cancel", ok=(200, 202, 204, 409))
        response.close()
        return response.status_code != 409


def _parse_handle(handle: str) -> tuple[str, str] | None:
    model, _, request_id = (handle or "").partition(":")
    if model not in MODELS or not ID_RE.match(request_id):
        return None
    return model, request_id


def _progress(detail: str) -> float | None:
    """4/24 from "Progress: 4/24 Tasks done"; None when there is no such pair."""
    match = _PROGRESS_RE.search(detail)
    if not match:
        return None
    done, total = int(match[1]), int(match[2])
    return min(1.0, done / total) if total else None


def _base64_file(path: Path) -> str:
    try:
        return base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError as exc:
        raise ProviderError(
            "The prepared image could not be read.", code="invalid_request", detail=f"{path}: {exc}"
        ) from exc
