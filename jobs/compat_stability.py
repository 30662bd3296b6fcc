"""Stability-compatible endpoints: the original wrapper's API, reproduced exactly.

The contract is ``stability-img2video-api.md`` (kept with the project's specs),
so a client written for the original wrapper works unchanged but for the host
and an ``Authorization: Bearer <API key>`` header (the native API's keys)::

    POST /api/img2video                  multipart image, seed, cfg_scale, motion_bucket_id
         -> 200 {"success": true, "id": "<32 hex>", "message": "..."}
         -> 400 / 401 / 402 / 413 / 429 / 500 {"error": "..."}
    GET  /api/img2video/result/{id}
         -> 202 {"status": "in-progress", "message": "..."}
         -> 200 {"status": "complete", "video_url": "/processed_videos/video_<token>_<seed>.mp4",
                 "finish_reason": "SUCCESS", "seed": "<seed>"}
         -> 404 {"error": "..."} unknown id, another caller's job, or a result past retention
         -> 500 {"error": "<why the job failed>"} (plus "finish_reason": "CONTENT_FILTERED"
                when Stability's filter blocked the video)
    GET  /processed_videos/video_<token>_<seed>.mp4   the MP4, with HTTP Range

Decisions:

* Defaults are the spec's, not the provider's: ``cfg_scale`` 1.5 (Stability's own
  default is 1.8), ``motion_bucket_id`` 127, ``seed`` 0 (random; the seed used is
  returned as a string, as the spec shows).
* The provider is ``settings.COMPAT_PROVIDER``; empty means ``stability`` when
  ``STABILITY_API_KEY`` is set, else ``local``. A provider that is not usable
  here is the server's fault, so it is a 500, not a 400.
* Fields: the spec's four (``image``, ``seed``, ``cfg_scale``,
  ``motion_bucket_id``) and no others. Both of the spec's own clients send
  exactly these, so no extra field needs tolerating; any other is refused with
  400 naming it, since a misspelt ``motoin`` would otherwise be charged as the
  default motion.
* A content-filtered result: the spec models it as "complete" with
  ``finish_reason: CONTENT_FILTERED``, but our pipeline keeps no video for it
  (the job fails and is not charged), and a "complete" answer whose
  ``video_url`` leads nowhere would break the spec's own clients (the browser
  example puts it into a ``<video>``). So it is answered like every failed job,
  500 ``{"error": ...}``, with ``finish_reason`` added so a client can tell.
* ``video_url`` must work with a plain GET (the spec's clients fetch it with no
  headers), so it carries its own credential: a signed, timestamped token in
  the file name, valid for ``RESULT_LINK_SECONDS``. Expired or forged: 404.
* The result poll and the video are plain Django views (one key lookup and one
  job query per poll; DRF would add ~0.5 ms of CPU to the hottest request).
  The create is DRF, so it shares the native API's key auth and per-key rate
  limit. All three are documented by ``jobs.compat_openapi`` (a schema hook)
  rather than by drf-spectacular's introspection, which sees only the create
  and would give it the native error shape.
"""

from __future__ import annotations

import logging
import re
import uuid

from django.conf import settings
from django.core import signing
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from jobs.api.auth import ApiKeyAuthentication, TooManyFailedKeys, check_key
from jobs.api.views import APIView
from jobs.creation import JobInputError, create_job_from_image, parse_number
from jobs.ledger import InsufficientCredits
from jobs.models import Job
from jobs.prepared_reads import PreparedRead
from jobs.serving import serve_file

log = logging.getLogger(__name__)

STARTED_MESSAGE = "Video generation started. Poll for results using the returned ID."
IN_PROGRESS_MESSAGE = "Video generation is still in progress. Try again in a few seconds."
NO_KEY_MESSAGE = "Authentication required: send your API key as 'Authorization: Bearer <key>'."
BAD_KEY_MESSAGE = "The API key is missing, wrong or revoked."
NOT_FOUND_MESSAGE = "No generation with this ID."

# The spec's parameters: name -> (minimum, maximum, default, whole number).
PARAMETERS: dict[str, tuple[float, float, float, bool]] = {
    "seed": (0, 4294967294, 0, True),
    "cfg_scale": (0, 10, 1.5, False),
    "motion_bucket_id": (1, 255, 127, True),
}

VIDEO_SALT = "i2v.compat-video"
# "." is not in the signer's URL-safe base64 alphabet, and every character of
# the token ([A-Za-z0-9_.-]) is valid in a path segment without escaping.
_SIGNER_SEP = "."
_VIDEO_NAME = re.compile(r"^video_(?P<token>[A-Za-z0-9_.\-]+)_(?P<seed>\d+)\.mp4$")


def compat_provider() -> str:
    """The provider the compatibility endpoints hand jobs to."""
    return settings.COMPAT_PROVIDER or ("stability" if settings.STABILITY_API_KEY else "local")


def _error(status: int, message: str, **extra) -> JsonResponse:
    response = JsonResponse({"error": message, **extra}, status=status)
    response["Cache-Control"] = "no-store"
    return response


# --- the signed video link ------------------------------------------------------------


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=VIDEO_SALT, sep=_SIGNER_SEP)


def video_url(job: Job) -> str:
    """``/processed_videos/video_<token>_<seed>.mp4``, working without credentials until it expires."""
    token = _signer().sign(job.pk.hex)
    return f"/processed_videos/video_{token}_{_seed_of(job)}.mp4"


def _read_video_name(filename: str) -> tuple[uuid.UUID, str] | None:
    """The job id and seed of a ``video_url`` file name whose token is genuine and current."""
    match = _VIDEO_NAME.match(filename)
    if not match:
        return None
    try:
        value = _signer().unsign(match["token"], max_age=settings.RESULT_LINK_SECONDS)
        return uuid.UUID(hex=value), match["seed"]
    except (signing.BadSignature, ValueError):
        return None


def _seed_of(job: Job) -> str:
    return str(job.seed_used if job.seed_used is not None else job.seed)


# --- POST /api/img2video ------------------------------------------------------------------


def unknown_fields_message(names: list[str]) -> str:
    """The refusal of fields the spec does not have."""
    known = ["image", *PARAMETERS]
    takes = f"{', '.join(known[:-1])} and {known[-1]}"
    return f"Unknown field{'s' if len(names) > 1 else ''} {', '.join(names)}: this endpoint takes {takes}."


def _parameter(data, name: str):
    low, high, default, whole = PARAMETERS[name]
    raw = data.get(name)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return int(default) if whole else default
    # The spec's clients know these parameters by their names, underscores and all.
    return parse_number(name, raw, low, high, integer=whole, label=name)


def _compat_exception_handler(exc, context):
    """Every error of the create as the spec's ``{"error": "..."}``."""
    if isinstance(exc, JobInputError):
        if exc.field in ("provider", "model"):
            # Our configuration, not the caller's input.
            log.error("COMPAT_PROVIDER %r is not usable: %s", compat_provider(), exc.message)
            return Response({"error": f"Video generation is not available right now: {exc.message}"}, status=500)
        return Response({"error": exc.message}, status=400)
    if isinstance(exc, InsufficientCredits):
        return Response({"error": exc.message}, status=402)
    if isinstance(exc, RequestDataTooBig):
        limit = settings.MAX_UPLOAD_BYTES / (1024 * 1024)
        return Response({"error": f"The request body is too large; images must be {limit:g} MB or smaller."}, 413)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(NOT_FOUND_MESSAGE)
    elif isinstance(exc, exceptions.NotAuthenticated):
        auth_header = getattr(exc, "auth_header", None)  # becomes WWW-Authenticate
        exc = exceptions.NotAuthenticated(NO_KEY_MESSAGE)
        exc.auth_header = auth_header
    elif isinstance(exc, exceptions.UnsupportedMediaType | exceptions.ParseError):
        # The spec has 400, not 415, for a body it cannot use.
        message = f"{exc.detail} Send the image as multipart/form-data in the field 'image'."
        return Response({"error": message}, status=400)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django logs it and answers 500
    detail = response.data.get("detail", response.data) if isinstance(response.data, dict) else response.data
    if isinstance(detail, list):
        detail = " ".join(str(item) for item in detail)
    response.data = {"error": str(detail)}
    return response


class ImageToVideo(APIView):
    """``POST /api/img2video``: start a generation from a multipart image.

    The native API's view base, so a method it lacks is 405 before any key is asked for.
    """

    authentication_classes = [ApiKeyAuthentication]
    parser_classes = [MultiPartParser, FormParser]

    def get_exception_handler(self):
        return _compat_exception_handler

    @extend_schema(exclude=True)  # documented once, by jobs.compat_openapi
    def post(self, request):
        data = request.data
        unknown = [name for name in data if name != "image" and name not in PARAMETERS]
        if unknown:
            raise JobInputError(unknown[0], unknown_fields_message(unknown))
        image = request.FILES.get("image")
        if image is None:
            if data.get("image"):
                raise JobInputError("image", "image must be a file upload (multipart/form-data), not a text field.")
            raise JobInputError("image", "image is required: send a JPEG or PNG file in the multipart field 'image'.")
        params = {name: _parameter(data, name) for name in PARAMETERS}
        job = create_job_from_image(
            owner=request.user, source=image, filename=image.name or "", provider=compat_provider(), **params
        )
        response = Response({"success": True, "id": job.pk.hex, "message": STARTED_MESSAGE})
        response["Cache-Control"] = "no-store"
        return response


# --- GET /api/img2video/result/{id} ------------------------------------------------------


def _unauthorized(message: str) -> JsonResponse:
    response = _error(401, message)
    response["WWW-Authenticate"] = 'Bearer realm="i2v"'
    return response


# The result poll's read: only what its answers use, and the SQL built once (clients repeat it).
_RESULT_READ = PreparedRead(
    Job,
    lambda pk, owner: (
        Job.objects.filter(pk=pk, owner=owner)
        .only("id", "status", "seed", "seed_used", "finish_reason", "video", "error_code", "error_message")
        .order_by()[:1]
    ),
    "pk",
    "owner",
)


# Neither plain view reads the session (a key or the signed name is the credential), so CSRF
# protects nothing there, and its 403 page would stand in for the 405 a POST or PUT should get.
@csrf_exempt
@require_http_methods(["GET", "HEAD"])
def result(request: HttpRequest, generation_id: str) -> HttpResponse:
    """``GET /api/img2video/result/{id}``: kept lean, it is the request clients repeat."""
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw:
        return _unauthorized(NO_KEY_MESSAGE)
    try:
        key = check_key(raw, request)
    except TooManyFailedKeys as exc:
        response = _error(429, f"{exc.detail} Try again in {exc.wait:.0f} s.")
        response["Retry-After"] = str(max(1, round(exc.wait)))
        return response
    if key is None:
        return _unauthorized(BAD_KEY_MESSAGE)
    try:
        job_id = uuid.UUID(generation_id)
    except ValueError:
        return _error(404, NOT_FOUND_MESSAGE)
    job = _RESULT_READ.first(pk=job_id, owner=key.user_id)
    if job is None:
        return _error(404, NOT_FOUND_MESSAGE)
    if job.status not in Job.FINAL_STATES:
        response = JsonResponse({"status": "in-progress", "message": IN_PROGRESS_MESSAGE}, status=202)
        response["Cache-Control"] = "no-store"
        return response
    if job.status == Job.COMPLETED and job.video:
        response = JsonResponse(
            {
                "status": "complete",
                "video_url": video_url(job),
                "finish_reason": job.finish_reason or "SUCCESS",
                "seed": _seed_of(job),
            }
        )
        response["Cache-Control"] = "no-store"
        return response
    if job.status in (Job.COMPLETED, Job.EXPIRED):
        hours = settings.RESULT_RETENTION_HOURS
        return _error(404, f"The video was deleted: results are kept for {hours} hours.")
    if job.status == Job.CANCELLED:
        return _error(500, job.error_message or "This generation was cancelled.")
    extra = {"finish_reason": "CONTENT_FILTERED"} if job.error_code == "content_filtered" else {}
    return _error(500, job.error_message or "The video could not be generated.", **extra)


# --- GET /processed_videos/video_<token>_<seed>.mp4 --------------------------------------


@csrf_exempt
@require_http_methods(["GET", "HEAD"])
def processed_video(request: HttpRequest, filename: str) -> HttpResponse:
    """The MP4 behind a signed ``video_url``; the link is the credential."""
    found = _read_video_name(filename)
    if found is None:
        return _error(404, "This video link is wrong or has expired; poll the result again for a fresh one.")
    job_id, seed = found
    job = Job.objects.filter(pk=job_id).only("id", "status", "seed", "seed_used", "video").first()
    if job is None or job.status != Job.COMPLETED or not job.video or seed != _seed_of(job):
        return _error(404, "This video no longer exists.")
    try:
        return serve_file(request, job.video.name, "video/mp4")
    except Http404:
        return _error(404, "This video no longer exists.")
