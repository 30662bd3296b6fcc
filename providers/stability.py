"""Stability AI image-to-video (Stable Video Diffusion), v2beta.

The protocol (``../shared/specs/PROVIDER-NOTES.md``): a multipart ``POST
/v2beta/image-to-video`` answers ``{"id": ...}``; ``GET
/v2beta/image-to-video/result/{id}`` answers 202 while the video is being made
and 200 with the MP4 (``accept: video/*``), its ``finish-reason`` and ``seed``
in headers. Results are kept 24 hours; Stability asks for at most one poll per
10 seconds (``STABILITY_POLL_INTERVAL``). No cancel, no webhook.

Neither call sleeps or retries on its own: a 429 or 5xx becomes a retryable
``ProviderError`` (with ``retry_after`` when Stability sent one) and the
pipeline decides when to call again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path

import requests
from django.conf import settings
from PIL import Image

from providers import http
from providers.base import (
    SIZES,
    GenerationRequest,
    PollContext,
    PollState,
    Provider,
    ProviderError,
)
from providers.params import COMMON

log = logging.getLogger(__name__)

# Every status comes back to this module, which knows what Stability means by it.
_ALL_STATUSES = tuple(range(100, 600))
# A provider job id goes into a URL path: accept only plain id characters.
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_ERROR_BODY_BYTES = 16 * 1024
_CHUNK_BYTES = 64 * 1024


class _PollFloor:
    """``min_poll_interval`` read from settings at each access, on the class or
    an instance, so a test (or a reloaded setting) changes it without a restart."""

    def __get__(self, instance: object, owner: type | None = None) -> float:
        return float(settings.STABILITY_POLL_INTERVAL)


class StabilityProvider(Provider):
    name = "stability"
    label = "Stability AI — Stable Video Diffusion"
    models = ("stable-video-diffusion",)
    supports_cancel = False
    supports_webhook = False
    needs_prompt = False
    sizes = SIZES
    # Stability's own ranges and defaults are the common ones (providers/params.py).
    parameters = COMMON
    cost = 20
    min_poll_interval = _PollFloor()  # type: ignore[assignment]

    # Stability's SVD clips are a few MB; anything far larger is not a result.
    max_video_bytes = 200 * 1024 * 1024
    submit_timeout = (5.0, 60.0)
    poll_timeout = (5.0, 60.0)

    @classmethod
    def is_enabled(cls) -> bool:
        return bool(settings.STABILITY_API_KEY)

    # --- helpers -------------------------------------------------------------

    @staticmethod
    def _base_url() -> str:
        return str(settings.STABILITY_BASE_URL).rstrip("/")

    @staticmethod
    def _auth() -> dict[str, str]:
        key = settings.STABILITY_API_KEY
        if not key:
            raise ProviderError(
                "Stability is not configured; an operator must set STABILITY_API_KEY.",
                code="provider_auth",
            )
        return {"authorization": f"Bearer {key}"}

    @staticmethod
    def _read_small_body(response: requests.Response) -> bytes:
        """At most ``_ERROR_BODY_BYTES`` of a response, then close it."""
        try:
            data = b""
            for chunk in response.iter_content(8192):
                data += chunk
                if len(data) >= _ERROR_BODY_BYTES:
                    break
            return data[:_ERROR_BODY_BYTES]
        except requests.RequestException:
            return b""
        finally:
            response.close()

    @staticmethod
    def _error_body(raw: bytes) -> tuple[str, list[str]]:
        """Stability's ``{id, name, errors[]}``; tolerant of anything else."""
        try:
            body = json.loads(raw)
        except ValueError:
            return "", []
        if not isinstance(body, dict):
            return "", []
        name = body.get("name") if isinstance(body.get("name"), str) else ""
        errors = body.get("errors")
        if isinstance(errors, str):
            errors = [errors]
        if not isinstance(errors, list):
            errors = []
        return name, [str(e) for e in errors]

    @classmethod
    def _http_error(cls, response: requests.Response, what: str) -> ProviderError:
        """The ``ProviderError`` for a status that is neither success nor a state."""
        status = response.status_code
        retry_after = http.parse_retry_after(response.headers.get("Retry-After"))
        raw = cls._read_small_body(response)
        name, errors = cls._error_body(raw)
        detail = f"{what} -> {status}: {raw.decode('utf-8', 'replace')}"
        summary = "; ".join(errors)[:300]

        if status == 401:
            return ProviderError(
                "The Stability API key was refused; an operator must check STABILITY_API_KEY.",
                code="provider_auth",
                detail=detail,
                status=status,
            )
        if status == 402:
            return ProviderError(
                "The Stability account has run out of credits; an operator must top it up.",
                code="provider_credits",
                detail=detail,
                status=status,
            )
        if status == 403 and name == "content_moderation":
            return ProviderError(
                "Stability refused this image under its content policy; no credits were charged. "
                "Try a different image.",
                code="content_moderation",
                detail=detail,
                status=status,
            )
        if status == 403:
            return ProviderError(
                "Stability refused the request; an operator must check the Stability account.",
                code="provider_forbidden",
                detail=detail,
                status=status,
            )
        if status in (400, 413, 422):
            if status == 413:
                message = "Stability refused the image as too large."
            else:
                message = "Stability rejected the request"
                message += f": {summary}" if summary else "."
            return ProviderError(message, code="invalid_request", detail=detail, status=status)
        if status == 429:
            return ProviderError(
                "Stability is rate-limiting us; we will try again shortly.",
                retryable=True,
                code="rate_limited",
                detail=detail,
                retry_after=retry_after,
                status=status,
            )
        if status >= 500:
            return ProviderError(
                "Stability had a server error; we will try again shortly.",
                retryable=True,
                code="provider_unavailable",
                detail=detail,
                retry_after=retry_after,
                status=status,
            )
        return ProviderError(
            f"Stability answered {status} unexpectedly.",
            code="provider_error",
            detail=detail,
            status=status,
        )

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
        url = f"{self._base_url()}/v2beta/image-to-video"
        fields = {
            "seed": str(int(request.seed)),
            "cfg_scale": f"{float(request.cfg_scale):g}",
            "motion_bucket_id": str(int(request.motion_bucket_id)),
        }
        with path.open("rb") as handle:
            response = http.request(
                "POST",
                url,
                headers={**self._auth(), "accept": "application/json"},
                data=fields,
                files={"image": (path.name, handle, content_type)},
                timeout=self.submit_timeout,
                retries=0,
                ok=_ALL_STATUSES,
            )
        if response.status_code != 200:
            raise self._http_error(response, f"POST {url}")

        raw = self._read_small_body(response)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        job_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(job_id, str) or not _ID_RE.match(job_id):
            raise ProviderError(
                "Stability sent an answer we could not understand.",
                code="provider_bad_response",
                detail=f"POST {url} -> 200: {raw[:2000].decode('utf-8', 'replace')}",
                status=200,
            )
        log.info("stability submit job=%s provider_id=%s", request.job_id, job_id)
        return job_id

    # --- poll ------------------------------------------------------------------

    def poll(self, provider_job_id: str, context: PollContext) -> PollState:
        if not _ID_RE.match(provider_job_id or ""):
            return PollState(
                state="failed",
                error_code="provider_job_missing",
                error_message="Stability no longer has this generation (results are kept 24 hours).",
                error_detail=f"malformed id {provider_job_id!r}",
            )
        url = f"{self._base_url()}/v2beta/image-to-video/result/{provider_job_id}"
        what = f"GET {url}"
        response = http.request(
            "GET",
            url,
            headers={**self._auth(), "accept": "video/*"},
            timeout=self.poll_timeout,
            retries=0,
            stream=True,
            ok=_ALL_STATUSES,
        )
        status = response.status_code
        if status == 202:
            return self._running(response)
        if status == 200:
            return self._finished(response, context, what)
        if status == 404:
            raw = self._read_small_body(response)
            return PollState(
                state="failed",
                error_code="provider_job_missing",
                error_message="Stability no longer has this generation (results are kept 24 hours).",
                error_detail=f"{what} -> 404: {raw.decode('utf-8', 'replace')}",
            )
        if status in (400, 422):
            raw = self._read_small_body(response)
            _, errors = self._error_body(raw)
            return PollState(
                state="failed",
                error_code="invalid_request",
                error_message="Stability rejected the result request"
                + (f": {'; '.join(errors)[:300]}" if errors else "."),
                error_detail=f"{what} -> {status}: {raw.decode('utf-8', 'replace')}",
            )
        raise self._http_error(response, what)

    def _running(self, response: requests.Response) -> PollState:
        raw = self._read_small_body(response)
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

        if finish_reason == "CONTENT_FILTERED":
            response.close()
            return PollState(
                state="failed",
                finish_reason=finish_reason,
                seed=seed,
                error_code="content_filtered",
                error_message="Stability's content filter blocked the generated video. Try a different image.",
                error_detail=f"{what} -> 200 finish-reason: CONTENT_FILTERED",
            )
        if finish_reason not in ("", "SUCCESS"):
            response.close()
            return PollState(
                state="failed",
                finish_reason=finish_reason,
                seed=seed,
                error_code="provider_failed",
                error_message=f"Stability could not make this video ({finish_reason}).",
                error_detail=f"{what} -> 200 finish-reason: {finish_reason}",
            )
        if content_type and not content_type.startswith("video/"):
            raw = self._read_small_body(response)
            raise ProviderError(
                "Stability sent an answer we could not understand.",
                code="provider_bad_response",
                detail=f"{what} -> 200 {content_type}: {raw[:2000].decode('utf-8', 'replace')}",
                status=200,
            )

        self._download(response, Path(context.video_path), what)
        log.info("stability result %s saved (%s, seed %s)", what, finish_reason or "SUCCESS", seed)
        return PollState(state="succeeded", progress=1.0, finish_reason=finish_reason or "SUCCESS", seed=seed)

    def _download(self, response: requests.Response, video_path: Path, what: str) -> None:
        """Stream the body next to ``video_path``, check it, then move it there."""
        video_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=video_path.parent, prefix=f".{video_path.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            received = 0
            try:
                with os.fdopen(fd, "wb") as out:
                    for chunk in response.iter_content(_CHUNK_BYTES):
                        received += len(chunk)
                        if received > self.max_video_bytes:
                            raise ProviderError(
                                "Stability sent a video far larger than expected.",
                                code="provider_bad_response",
                                detail=f"{what}: more than {self.max_video_bytes} bytes",
                                status=200,
                            )
                        out.write(chunk)
            except requests.RequestException as exc:
                raise ProviderError(
                    "The video download from Stability was interrupted; we will fetch it again.",
                    retryable=True,
                    code="bad_video",
                    detail=f"{what}: interrupted after {received} bytes: {exc}",
                    status=200,
                ) from exc
            finally:
                response.close()
            problem = _video_problem(tmp)
            if problem:
                # Results are kept 24 h: fetching again is the cure for a bad copy.
                raise ProviderError(
                    "Stability sent a damaged video; we will fetch it again.",
                    retryable=True,
                    code="bad_video",
                    detail=f"{what}: {received} bytes: {problem}",
                    status=200,
                )
            os.replace(tmp, video_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _video_problem(path: Path) -> str:
    """Why the file at ``path`` is not a playable MP4, or "" when it is.

    Opens the container, requires an MP4 with a video stream, reads every
    packet the index promises (a file cut short after its index still opens,
    but its last packets come back short or missing) and decodes the first
    frame. Decoding every frame would cost ten times as much for little more.
    """
    import av

    try:
        with av.open(str(path), mode="r") as container:
            if "mp4" not in container.format.name.split(","):
                return f"not an MP4 ({container.format.name})"
            if not container.streams.video:
                return "no video stream"
            stream = container.streams.video[0]
            stream.thread_count = 1  # one frame: threads cost more than they save
            expected = stream.frames
            packets = 0
            decoded = False
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                if packet.is_corrupt:
                    return f"packet {packets} is cut short or damaged"
                packets += 1
                if not decoded:
                    decoded = any(True for _frame in packet.decode())
            if not decoded:
                decoded = any(True for _frame in stream.codec_context.decode(None))
    except Exception as exc:  # PyAV raises FFmpegError subclasses, and others on junk
        return f"{type(exc).__name__}: {exc}"
    if not decoded:
        return "no decodable frame"
    if expected and packets < expected:
        return f"{packets} of {expected} frames present"
    return ""
