"""Stability AI image-to-video (Stable Video Diffusion), v2beta.

The protocol (``../shared/specs/PROVIDER-NOTES.md``): a multipart ``POST
/v2beta/image-to-video`` answers ``{"id": ...}``; ``GET
/v2beta/image-to-video/result/{id}`` answers 202 while the video is being made
and 200 with the MP4 (``accept: video/*``), its ``finish-reason`` and ``seed``
in headers. Results are kept 24 hours; Stability asks for at most one poll per
10 seconds (``STABILITY_POLL_INTERVAL``). No cancel, no webhook.

Neither call sleeps or retries on its own: the shared seam
(``providers/http.py``) turns statuses into ``ProviderError``s, retryable for
a 429 or a poll's 5xx (with ``retry_after`` when Stability sent one), and the
pipeline decides when to call again. A submit answered 500 is never sent
again (the seam's submit rule). This module knows only what is Stability's
own: the multipart fields, 202 while running, ``finish-reason`` and
``content_moderation``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import requests
from PIL import Image

from providers import http, results
from providers.base import SIZES, GenerationRequest, PollContext, PollState, ProviderError, SettingFloor
from providers.params import COMMON
from providers.remote import ID_RE, RemoteProvider

log = logging.getLogger(__name__)


class StabilityProvider(RemoteProvider):
    name = "stability"
    label = "Stability AI — Stable Video Diffusion"
    remote_name = "Stability"
    key_setting = "STABILITY_API_KEY"
    base_url_setting = "STABILITY_BASE_URL"
    models = ("stable-video-diffusion",)
    supports_cancel = False
    supports_webhook = False
    needs_prompt = False
    sizes = SIZES
    # Stability's own ranges and defaults are the common ones (providers/params.py).
    parameters = COMMON
    cost = 20
    min_poll_interval = SettingFloor("STABILITY_POLL_INTERVAL")  # type: ignore[assignment]

    # Stability's SVD clips are a few MB; anything far larger is not a result.
    max_video_bytes = 200 * 1024 * 1024

    # --- submit ----------------------------------------------------------------

    def submit(self, request: GenerationRequest) -> str:
        path = Path(request.image_path)
        try:
            with Image.open(path) as image:  # reads the header only
                size, image_format = image.size, image.format
        except (OSError, ValueError) as exc:
            raise ProviderError(
                "The prepared image could not be read.", code="invalid_request", detail=f"{path}: {exc}"
            ) from exc
        if size not in SIZES or image_format not in ("PNG", "JPEG"):
            raise ProviderError(
                "Stability needs a PNG or JPEG of exactly 1024x576, 576x1024 or 768x768.",
                code="invalid_request",
                detail=f"{path}: {image_format} {size[0]}x{size[1]}",
            )
        content_type = "image/png" if image_format == "PNG" else "image/jpeg"
        what = f"POST {self.url('/v2beta/image-to-video')}"
        fields = {
            "seed": str(int(request.seed)),
            "cfg_scale": f"{float(request.cfg_scale):g}",
            "motion_bucket_id": str(int(request.motion_bucket_id)),
        }
        with path.open("rb") as handle:
            response = self.call(
                "POST",
                "/v2beta/image-to-video",
                headers={"accept": "application/json"},
                data=fields,
                files={"image": (path.name, handle, content_type)},
                ok=(200, 403),
            )
        raw = http.read_capped(response)
        if response.status_code == 403:
            if http.error_name(raw) == "content_moderation":
                raise ProviderError(
                    "Stability refused this image under its content policy; no credits were charged. "
                    "Try a different image.",
                    code="content_moderation",
                    detail=f"{what} -> 403: {http.text(raw)}",
                    status=403,
                )
            raise self.remote().error(403, raw, what, method="POST")
        job_id = http.json_object(raw, label="Stability", what=what).get("id")
        if not isinstance(job_id, str) or not ID_RE.match(job_id):
            raise http.bad_response("Stability", f"{what} -> 200: {http.text(raw)}")
        log.info("stability submit job=%s provider_id=%s", request.job_id, job_id)
        return job_id

    # --- poll ------------------------------------------------------------------

    def poll(self, provider_job_id: str, context: PollContext) -> PollState:
        path = f"/v2beta/image-to-video/result/{provider_job_id}"
        response = self.look(provider_job_id, path, headers={"accept": "video/*"}, stream=True, ok=(200, 202))
        if isinstance(response, PollState):
            return response
        if response.status_code == 202:
            return self._running(response)
        return self._finished(response, context, f"GET {self.url(path)}")

    def _running(self, response: requests.Response) -> PollState:
        raw = http.read_capped(response)
        message = "Generating…"
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("status"), str) and body["status"]:
            message = f"Generating… ({body['status'][:40]})"
        return PollState(state="running", message=message)

    def _finished(self, response: requests.Response, context: PollContext, what: str) -> PollState:
        finish_reason = response.headers.get("finish-reason", "").strip().upper()
        seed = _int_or_none(response.headers.get("seed"))
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()

        if finish_reason not in ("", "SUCCESS"):
            response.close()
            filtered = finish_reason == "CONTENT_FILTERED"
            return PollState(
                state="failed",
                finish_reason=finish_reason,
                seed=seed,
                error_code="content_filtered" if filtered else "provider_failed",
                error_message="Stability's content filter blocked the generated video. Try a different image."
                if filtered
                else f"Stability could not make this video ({finish_reason}).",
                error_detail=f"{what} -> 200 finish-reason: {finish_reason}",
            )
        if content_type and not content_type.startswith("video/"):
            raw = http.read_capped(response)
            raise http.bad_response("Stability", f"{what} -> 200 {content_type}: {http.text(raw)}")

        results.save_video(
            response, Path(context.video_path), label="Stability", what=what, max_bytes=self.max_video_bytes
        )
        log.info("stability result %s saved (%s, seed %s)", what, finish_reason or "SUCCESS", seed)
        return PollState(state="succeeded", progress=1.0, finish_reason=finish_reason or "SUCCESS", seed=seed)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None
