"""The queue-style API that Pipelet's and fal.ai's clients speak.

The contract is ``pipelet-queue-api.md`` (fal.ai's queue pattern, which Pipelet
copies), so a Pipelet client changes only its host and key::

    POST /queue/{modelId}                          -> {request_id, response_url, status_url, cancel_url}
    GET  /queue/{modelId}/requests/{id}/status     -> IN_QUEUE (202) | IN_PROGRESS (202) | COMPLETED,
                                                      FAILED, CANCELLED (200)
    PUT  /queue/{modelId}/requests/{id}/cancel     -> 204, or 409 once a provider has it and cannot stop it
    GET  /queue/{modelId}/requests/{id}            -> {"video": {"data_uri": <base64 MP4>, "url": ...}}

Decisions:

* ``modelId`` is a provider's name (``local``, ``pika``...) or a model one of
  them declares (Pipelet's ``wan22-fast-i2v``, Kling's
  ``kling-video/v1/standard/image-to-video``): ``resolve_model``. Model ids may
  hold slashes, so no segment of one may be ``requests``. A request is found
  under its own model id, or under its first two segments, the "app id" that
  fal-client's ``status(app, id)`` / ``result`` / ``cancel`` build their URLs
  from; under any other model id it is 404, as is another caller's.
* Keys: the native API's, as ``Authorization: Key <key>`` (fal's clients send
  this) or ``Authorization: Bearer <key>`` (Pipelet's). The scheme also picks
  the dialect of two answers, because fal-client 1.0.3 breaks on Pipelet's:
  it raises ``ValueError: Unknown status`` on ``FAILED`` and ``CANCELLED``, and
  it retries a 409 ten times (about 50 s) before it reports it, on cancel too.
  So a ``Key`` caller is told a failure as fal's queue tells it, ``COMPLETED``
  with ``error`` and ``error_type`` (the result then answers 422 with the
  reason), and a refused cancel is 400, not 409.
* Every ``IN_PROGRESS`` and ``COMPLETED`` body has ``logs`` (fal-client needs
  the key): null, or with ``?logs=true`` the job's timeline as fal log lines.
  The status answers 202 until the request has ended, then 200, as fal does;
  both clients accept any 2xx.
* The status poll is a plain view, not counted against ``API_RATE``: fal-client
  polls every 0.1 s by default, and a 429 there would end its ``subscribe``.
  Create, cancel and result are counted like every other API call.
* The result streams the MP4 as base64 in chunks of a multiple of 3 bytes, so
  the video is never held in memory whole (nor its base64). With
  ``x-pipelet-output: binary`` on the create, ``data_uri`` (and ``data_url``)
  hold the signed link instead, as Pipelet does.
* The end frame: Pipelet's ``second_image_uri`` (base64, bare or a data: URI,
  like ``data_uri``) or the native API's ``tail_image_url`` (a URL or a data:
  URI), for a provider that ``accepts_tail_image``; it goes through the native
  API's checks (``jobs.extra_images``) and reaches Pipelet as
  ``second_image_uri``. For any other provider either field is 422 saying
  which providers take one.
* Pipelet's own text is passed on: ``queue_position`` is the 0-based number
  Pipelet gave (our positions are 1-based, ``pipelet_queue_position``), and
  ``detail_message`` its ``Progress: 4/24 Tasks done`` when it said one.
* Errors are ``{"detail": "<sentence>"}``: 422 for a field that cannot be
  used (named), 413 for an image over the cap (checked before decoding), 402
  with ``balance`` and ``cost`` when credits are short, 503 when the model's
  provider is not configured here.
* A callback asked for with ``?fal_webhook=`` (fal's way) or the
  ``x-pipelet-webhook`` header (Pipelet's) becomes the job's ``callback_url``:
  told when the job ends, as a Standard Webhooks delivery signed with the
  caller's job-callback secret, the same as the native API's.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import uuid
from collections.abc import Iterator
from urllib.parse import quote

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.storage import default_storage
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import authentication, exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from jobs import links
from jobs.actions import ActionRefused, cancel_job
from jobs.api.auth import TooManyFailedKeys, check_key
from jobs.api.extra_images import image_from_base64, image_from_reference
from jobs.api.idempotency import binder, idempotent
from jobs.api.parsers import JSONParser
from jobs.api.views import APIView
from jobs.creation import JobInputError, check_job_affordable, create_job_from_image
from jobs.extra_images import ExtraImage, check_extra_images
from jobs.ledger import InsufficientCredits
from jobs.models import ApiKey, Job, JobEvent, QueueRequest
from jobs.prepared_reads import PreparedRead
from jobs.queue_position import queue_position
from jobs.sources import fetch_image_url, read_data_uri
from jobs.webhooks.endpoints import EndpointInputError, attach_job_callback, check_webhook_url
from providers.params import COMMON_NAMES
from providers.registry import PROVIDERS, provider_class

log = logging.getLogger(__name__)

HOW_TO_SEND = "Send your API key as 'Authorization: Key <key>' or 'Authorization: Bearer <key>'."
NO_KEY_MESSAGE = f"Authentication required. {HOW_TO_SEND}"
BAD_KEY_MESSAGE = f"The API key is wrong or revoked. {HOW_TO_SEND}"
NOT_FOUND_MESSAGE = "No request with this id for this model and key."
BAD_ID_MESSAGE = "This is not a request id: ids are UUIDs, as POST /queue/{modelId} answers them in request_id."
WWW_AUTHENTICATE = 'Bearer realm="i2v", Key realm="i2v"'
OUTPUT_HEADER = "x-pipelet-output"
WEBHOOK_HEADER = "x-pipelet-webhook"
# The body's own fields; the rest are the parameters the model's provider declares.
BODY_FIELDS = ("prompt", "negative_prompt", "data_uri", "image_url")
# The end frame, for a provider that takes one: Pipelet's own field (base64, as data_uri)
# or the native API's (a URL or a data: URI).
TAIL_FIELDS = ("second_image_uri", "tail_image_url")
# Pipelet's own progress text ("Progress: 4/24 Tasks done"), passed on as Pipelet wrote it.
_PIPELET_PROGRESS = re.compile(r"^Progress: \d+\s*/\s*\d+\b")
CHUNK = 3 * 16 * 1024  # a multiple of 3: each chunk's base64 joins the next without padding

IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, CANCELLED = "IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED"


class QueueError(Exception):
    """An answer other than success: its HTTP status and ``{"detail": ..., **extra}``."""

    def __init__(self, http_status: int, detail: str, /, **extra) -> None:
        super().__init__(detail)
        self.status = http_status
        self.body = {"detail": detail, **extra}


# --- model ids --------------------------------------------------------------------------


def available_model_ids() -> list[str]:
    """The model ids this install can take: each enabled provider's name, then its models."""
    found: list[str] = []
    for name in PROVIDERS:
        cls = provider_class(name)
        if cls.is_enabled():
            found += [name, *(model for model in cls.models if model != name)]
    return list(dict.fromkeys(found))


def resolve_model(model_id: str) -> tuple[str, str | None]:
    """``(provider, model)`` for a model id: a provider's name (its default model)
    or a model some provider declares. Raises ``QueueError`` 404 for an unknown id,
    503 for one whose provider is not configured here."""
    owner = None
    if model_id in PROVIDERS:
        owner, model = model_id, None
    else:
        for name in PROVIDERS:
            if model_id in provider_class(name).models:
                owner, model = name, model_id
                break
    here = ", ".join(available_model_ids()) or "none"
    if owner is None:
        raise QueueError(404, f"Unknown model id {model_id[:200]!r}. Model ids available here: {here}.")
    cls = provider_class(owner)
    reason = cls.unavailable_reason()
    if reason:
        raise QueueError(
            503,
            f"The model {model_id!r} is not available on this server: {reason.rstrip('.')}. Model ids "
            f"available here: {here}.",
        )
    return owner, model


def fal_app_id(model_id: str) -> str:
    """The first two segments of a slashed model id: what fal-client builds request URLs from."""
    return "/".join(model_id.split("/")[:2])


# --- keys -------------------------------------------------------------------------------


def authenticate(request) -> tuple[ApiKey, str]:
    """The caller's key and the scheme it came with (``key`` or ``bearer``).

    Raises DRF's ``NotAuthenticated`` / ``AuthenticationFailed`` (401) or
    ``TooManyFailedKeys`` (429), so the DRF views and the plain status view
    refuse alike."""
    header = request.META.get("HTTP_AUTHORIZATION", "").strip()
    if not header:
        raise exceptions.NotAuthenticated(NO_KEY_MESSAGE)
    scheme, _, raw = header.partition(" ")
    scheme = scheme.lower()
    if scheme not in ("key", "bearer"):
        raise exceptions.AuthenticationFailed(
            f"The Authorization header uses the {scheme[:20]!r} scheme, which this API does not take. {HOW_TO_SEND}"
        )
    raw = raw.strip()
    if not raw:
        raise exceptions.AuthenticationFailed(f"The Authorization header has no key after its scheme. {HOW_TO_SEND}")
    key = check_key(raw, request)
    if key is None:
        raise exceptions.AuthenticationFailed(BAD_KEY_MESSAGE)
    return key, scheme


class QueueKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Key <key>`` or ``Bearer <key>``; the scheme is kept on the request."""

    def authenticate(self, request):
        key, scheme = authenticate(request._request)
        request._request.queue_scheme = scheme
        return key.user, key

    def authenticate_header(self, request) -> str:
        return WWW_AUTHENTICATE


def speaks_fal(request) -> bool:
    return getattr(request, "queue_scheme", "") == "key"


# --- URLs -------------------------------------------------------------------------------


def base_url(request) -> str:
    # Without PUBLIC_BASE_URL, links start with the host this request came in on.
    return settings.PUBLIC_BASE_URL or request.build_absolute_uri("/").rstrip("/")


def request_urls(base: str, model_id: str, request_id: str) -> dict:
    root = f"{base}/queue/{quote(model_id, safe='/')}/requests/{request_id}"
    return {
        "request_id": request_id,
        "response_url": root,
        "status_url": f"{root}/status",
        "cancel_url": f"{root}/cancel",
    }


def video_link(base: str, job: Job) -> str:
    """A signed link to the MP4 that works without a key until ``RESULT_LINK_SECONDS`` pass."""
    return f"{base}{reverse('api-job-file', args=[job.pk, 'video'])}?token={links.sign(job.pk, 'video')}"


# --- create -----------------------------------------------------------------------------


def _text(data: dict, name: str) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise JobInputError(name, f"{name} must be a string.")
    return value


def submit_request(*, owner, model_id: str, data, output: str, on_created=None) -> Job:
    """Start a job for the body of ``POST /queue/{model_id}``.

    Everything that can be refused without the image (fields, parameters,
    prompt, credits) is checked before the base64 is decoded or the URL fetched.
    Raises ``QueueError``, ``JobInputError`` or ``InsufficientCredits``.
    """
    provider, model = resolve_model(model_id)
    if not isinstance(data, dict):
        raise QueueError(422, 'The body must be a JSON object, such as {"prompt": "...", "data_uri": "..."}.')
    cls = provider_class(provider)
    declared = [param.name for param in cls.parameters]
    takes = [*BODY_FIELDS, *(TAIL_FIELDS if cls.accepts_tail_image else ()), *declared]
    # An end frame for a provider without one is refused by the native API's check, which says who takes one.
    unknown = [name for name in data if name not in takes and name not in TAIL_FIELDS]
    if unknown:
        raise JobInputError(
            unknown[0],
            f"Unknown field {unknown[0][:100]!r}: the model {model_id} takes {', '.join(takes)}.",
            "unknown_field",
        )
    prompt, negative_prompt = _text(data, "prompt"), _text(data, "negative_prompt")
    data_uri, image_url = _text(data, "data_uri").strip(), _text(data, "image_url").strip()
    if bool(data_uri) == bool(image_url):
        raise JobInputError(
            "data_uri",
            "Send the image as exactly one of data_uri (base64, bare or data:image/...;base64,) or image_url.",
        )
    job_fields = {
        "provider": provider,
        "model": model,
        **{name: data.get(name) for name in COMMON_NAMES},
        "extra_params": {name: data[name] for name in declared if name in data and name not in COMMON_NAMES},
    }
    tail_field = _tail_field(data)
    check_extra_images(provider, tail=bool(tail_field), tail_field=tail_field or "second_image_uri")
    check_job_affordable(owner=owner, prompt=prompt, **job_fields)
    if data_uri:
        source, filename = read_data_uri(data_uri), "data-uri"
    else:
        source, filename = fetch_image_url(image_url), image_url.rsplit("/", 1)[-1]
    tail = _read_tail(data, tail_field)

    def remember(job: Job) -> None:
        QueueRequest.objects.create(job=job, model_id=model_id, output=output)
        if on_created is not None:
            on_created(job)

    return create_job_from_image(
        owner=owner,
        source=source,
        filename=filename,
        source_url=image_url,
        prompt=prompt,
        negative_prompt=negative_prompt,
        on_created=remember,
        tail=tail,
        **job_fields,
    )


def _tail_field(data: dict) -> str:
    """Which end-frame field the body uses ("" for none); two are refused."""
    given = [name for name in TAIL_FIELDS if _text(data, name).strip()]
    if len(given) > 1:
        raise JobInputError(
            given[0], "Send the end frame as one of second_image_uri (base64, as data_uri) or tail_image_url, not both."
        )
    return given[0] if given else ""


def _read_tail(data: dict, field: str) -> ExtraImage | None:
    """The end frame, read as the native API reads it; checked like the photo when the job is made."""
    if not field:
        return None
    value = _text(data, field).strip()
    if field == "second_image_uri":
        return image_from_base64(value, field=field)
    return image_from_reference(value, field=field)


def _exception_handler(exc, context):
    """Every error as ``{"detail": ...}``; never a 500 for input."""
    if isinstance(exc, QueueError):
        return Response(exc.body, status=exc.status)
    if isinstance(exc, JobInputError):
        if exc.code == "too_large":
            return Response({"detail": exc.message}, status=413)
        if exc.field in ("provider", "model") and exc.code in ("disabled", "unknown_provider", "invalid"):
            return Response({"detail": f"This model is not available right now: {exc.message}"}, status=503)
        return Response({"detail": exc.message}, status=422)
    if isinstance(exc, InsufficientCredits):
        return Response({"detail": exc.message, "balance": exc.balance, "cost": exc.cost}, status=402)
    if isinstance(exc, RequestDataTooBig):
        limit = settings.MAX_UPLOAD_BYTES / (1024 * 1024)
        return Response({"detail": f"The request body is too large; images must be {limit:g} MB or smaller."}, 413)
    if isinstance(exc, exceptions.ParseError):
        return Response({"detail": f"The body is not valid JSON: {exc.detail}"}, status=400)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(NOT_FOUND_MESSAGE)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django logs it and answers 500
    detail = response.data.get("detail", response.data) if isinstance(response.data, dict) else response.data
    response.data = {"detail": str(detail)}
    return response


def _detail_shape(response: Response) -> Response:
    """The idempotency layer's own refusals (409 in progress, 422 key reused) in this API's shape."""
    data = response.data
    if response.status_code >= 400 and isinstance(data, dict) and isinstance(data.get("error"), dict):
        response.data = {"detail": data["error"].get("message", "Error.")}
    return response


class QueueView(APIView):
    authentication_classes = [QueueKeyAuthentication]
    parser_classes = [JSONParser]

    def get_exception_handler(self):
        return _exception_handler

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response


def _callback_url(request) -> str:
    """The callback the create asks for (fal's ``?fal_webhook=``, Pipelet's
    ``x-pipelet-webhook``), checked like every webhook URL; "" for none."""
    asked = {
        name: value.strip()
        for name, value in (
            ("fal_webhook", request.query_params.get("fal_webhook", "")),
            (WEBHOOK_HEADER, request.headers.get(WEBHOOK_HEADER, "")),
        )
        if value.strip()
    }
    if len(set(asked.values())) > 1:
        raise QueueError(422, "fal_webhook and x-pipelet-webhook name different URLs; send one of them.")
    if not asked:
        return ""
    field, url = next(iter(asked.items()))
    try:
        return check_webhook_url(url, field)
    except EndpointInputError as exc:
        raise QueueError(422, exc.message) from exc


class Submit(QueueView):
    """``POST /queue/{modelId}``."""

    @extend_schema(exclude=True)  # documented by jobs.compat.queue_openapi
    def post(self, request, model_id: str):
        # Headers first: a replayed Idempotency-Key must not hide a header that is wrong now.
        callback_url = _callback_url(request)
        wanted = request.headers.get(OUTPUT_HEADER, "").strip().lower()
        if wanted not in ("", "binary"):
            raise QueueError(422, f"{OUTPUT_HEADER} must be 'binary' (a link to the video) or left out (base64).")
        output = QueueRequest.OUTPUT_LINK if wanted else QueueRequest.OUTPUT_BASE64
        return _detail_shape(self._submit(request, model_id, output, callback_url))

    @idempotent
    def _submit(self, request, model_id: str, output: str, callback_url: str = ""):
        bind = binder(request)

        def created(job: Job) -> None:
            if bind is not None:
                bind(job)
            if callback_url:
                attach_job_callback(job, callback_url, public_base_url=base_url(request), check=False)

        job = submit_request(
            owner=request.user, model_id=model_id, data=request.data, output=output, on_created=created
        )
        return self.created_response(request, job)

    def created_response(self, request, job: Job) -> Response:
        model_id = job.queue_request.model_id
        return Response(request_urls(base_url(request), model_id, str(job.pk)))


# --- finding a request ------------------------------------------------------------------


# Unordered (there is at most one): ordering it only cost a poll CPU. Built once, as polls repeat it.
_REQUEST_READ = PreparedRead(
    Job,
    lambda pk, owner: Job.objects.filter(pk=pk, owner=owner).select_related("queue_request").order_by()[:1],
    "pk",
    "owner",
)


def find_request(owner_id, model_id: str, request_id: str) -> Job:
    """The caller's job behind ``request_id`` if it was asked for under ``model_id``
    (or fal's app id of it); ``QueueError`` 404 otherwise, 400 for an id that
    cannot be one (as Pipelet answers)."""
    try:
        job_id = uuid.UUID(request_id)
    except ValueError:
        raise QueueError(400, BAD_ID_MESSAGE) from None
    job = _REQUEST_READ.first(pk=job_id, owner=owner_id)
    asked = getattr(job, "queue_request", None) if job is not None else None
    if asked is None or model_id not in (asked.model_id, fal_app_id(asked.model_id)):
        raise QueueError(404, NOT_FOUND_MESSAGE)
    return job


# --- status -----------------------------------------------------------------------------


def queue_status(job: Job) -> str:
    """Pipelet's name for the job's state."""
    if job.status == Job.QUEUED or (job.status == Job.SUBMITTED and job.queue_position is not None):
        return IN_QUEUE
    if job.status in (Job.COMPLETED, Job.EXPIRED):
        return COMPLETED
    if job.status == Job.FAILED:
        return FAILED
    if job.status == Job.CANCELLED:
        return CANCELLED
    return IN_PROGRESS


def progress_message(job: Job) -> str:
    """Pipelet's own ``Progress: 4/24 Tasks done`` when the provider said it (a
    Pipelet client may parse it), else ``Progress: 45% done (Rendering 120
    frames: 45%)``, our progress in the same shape."""
    doing = job.status_message or job.get_status_display()
    if _PIPELET_PROGRESS.match(doing):
        return doing
    return f"Progress: {round(job.progress * 100)}% done ({doing})"


def pipelet_queue_position(job: Job) -> int:
    """How many jobs are ahead, 0-based as Pipelet counts. Our position (the
    job's, the dashboard's, the native API's) is 1 for next; a provider's
    0-based one is stored plus one (``providers/pipelet.py``), so Pipelet's
    own number comes back out unchanged."""
    return max(0, (queue_position(job) or 1) - 1)


def fal_logs(job: Job) -> list[dict]:
    """The job's timeline as fal's log lines."""
    return [
        {
            "message": event.message or f"{event.from_status or 'new'} -> {event.to_status}",
            "level": "ERROR" if event.to_status == Job.FAILED else "INFO",
            "source": "USER",
            "timestamp": event.at.isoformat().replace("+00:00", "Z"),
        }
        for event in JobEvent.objects.filter(job=job).order_by("at", "id")
    ]


def status_body(job: Job, *, base: str, model_id: str, with_logs: bool, fal: bool) -> tuple[int, dict]:
    """The HTTP status and body of ``GET …/status`` for ``job``."""
    state = queue_status(job)
    body: dict = {"status": state, **request_urls(base, model_id, str(job.pk))}
    if state == IN_QUEUE:
        body["queue_position"] = pipelet_queue_position(job)
        body["statusMessages"] = {}
        return 202, body
    body["logs"] = fal_logs(job) if with_logs else None
    if state == IN_PROGRESS:
        body["statusMessages"] = {"message": "PROCESSING", "detail_message": progress_message(job)}
        return 202, body
    if state == COMPLETED:
        if job.status == Job.EXPIRED:
            detail = f"The video was deleted: results are kept for {settings.RESULT_RETENTION_HOURS} hours."
            body["statusMessages"] = {"message": "EXPIRED", "detail_message": detail}
        else:
            body["statusMessages"] = {"message": "COMPLETED", "detail_message": "The video is ready at response_url."}
        if job.submitted_at and job.finished_at:
            body["metrics"] = {"inference_time": round((job.finished_at - job.submitted_at).total_seconds(), 3)}
        return 200, body
    detail = job.error_message or ("This request was cancelled." if state == CANCELLED else "The video failed.")
    body["statusMessages"] = {"message": state, "detail_message": detail}
    if fal:
        # fal-client knows only IN_QUEUE, IN_PROGRESS and COMPLETED: an ending without a video is
        # COMPLETED with an error, as fal's own queue reports it.
        body.update(status=COMPLETED, error=detail, error_type=state)
    return 200, body


def _json(status: int, body: dict, **headers: str) -> JsonResponse:
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    for name, value in headers.items():
        response[name] = value
    return response


def _refusal(exc: Exception) -> JsonResponse:
    """A DRF refusal of the key, for the plain view."""
    if isinstance(exc, TooManyFailedKeys):
        wait = max(1, round(exc.wait or 1))
        return _json(429, {"detail": f"{exc.detail} Try again in {wait} s."}, **{"Retry-After": str(wait)})
    return _json(401, {"detail": str(exc.detail)}, **{"WWW-Authenticate": WWW_AUTHENTICATE})


# Plain and lean: this is the request clients repeat (fal-client every 0.1 s). The key is
# the credential and the session is never read, so CSRF protects nothing here.
@csrf_exempt
def status(request: HttpRequest, model_id: str, request_id: str) -> HttpResponse:
    """``GET /queue/{modelId}/requests/{id}/status``."""
    if request.method != "GET":
        return _json(405, {"detail": f'Method "{request.method}" not allowed.'}, Allow="GET")
    try:
        key, scheme = authenticate(request)
    except (exceptions.AuthenticationFailed, exceptions.NotAuthenticated, TooManyFailedKeys) as exc:
        return _refusal(exc)
    try:
        job = find_request(key.user_id, model_id, request_id)
    except QueueError as exc:
        return _json(exc.status, exc.body)
    with_logs = request.GET.get("logs", "").strip().lower() in ("true", "1")
    code, body = status_body(job, base=base_url(request), model_id=model_id, with_logs=with_logs, fal=scheme == "key")
    return _json(code, body)


# --- cancel -----------------------------------------------------------------------------


class Cancel(QueueView):
    """``PUT /queue/{modelId}/requests/{id}/cancel``."""

    @extend_schema(exclude=True)
    def put(self, request, model_id: str, request_id: str):
        job = find_request(request.user.pk, model_id, request_id)
        if job.status != Job.CANCELLED:
            try:
                cancel_job(job, by=request.user)
            except ActionRefused as exc:
                # 409 as Pipelet answers it; fal-client would retry a 409 for about 50 s first.
                code = 400 if speaks_fal(request._request) else 409
                raise QueueError(code, exc.message, status=queue_status(job)) from None
        return Response(status=204)


# --- result -----------------------------------------------------------------------------


def _base64_chunks(handle) -> Iterator[bytes]:
    """The file's base64, a bounded chunk at a time; reads may come back short, so
    what does not fill a multiple of 3 waits for the next read."""
    rest = b""
    try:
        while True:
            data = handle.read(CHUNK)
            if not data:
                break
            data = rest + data
            cut = len(data) - len(data) % 3
            rest = data[cut:]
            if cut:
                yield base64.b64encode(data[:cut])
        if rest:
            yield base64.b64encode(rest)
    finally:
        handle.close()


def _json_text(value) -> bytes:
    return json.dumps(value).encode()


def result_response(job: Job, *, base: str) -> HttpResponse:
    """The completed job's video, as Pipelet's result body."""
    name = job.video.name if job.video else ""
    if job.status == Job.EXPIRED or not name or not default_storage.exists(name):
        hours = settings.RESULT_RETENTION_HOURS
        raise QueueError(410, f"The video was deleted: results are kept for {hours} hours.", status=COMPLETED)
    size = default_storage.size(name)
    link = video_link(base, job)
    video = {"url": link, "content_type": "video/mp4", "file_name": f"{job.pk}.mp4", "file_size": size}
    extra = {"seed": job.seed_used} if job.seed_used is not None else {}
    if job.queue_request.output == QueueRequest.OUTPUT_LINK:
        response = HttpResponse(
            _json_text({"video": {**video, "data_uri": link, "data_url": link}, **extra}),
            content_type="application/json",
        )
    else:
        # {"video": {..., "data_uri": "<base64>"}, ...}: the base64 goes last, between a known head and tail.
        head = _json_text({"video": video})[:-2] + b', "data_uri": "'
        tail = b'"}' + (b", " + _json_text(extra)[1:-1] if extra else b"") + b"}"
        handle = default_storage.open(name, "rb")

        def body() -> Iterator[bytes]:
            yield head
            yield from _base64_chunks(handle)
            yield tail

        response = StreamingHttpResponse(body(), content_type="application/json")
        response["Content-Length"] = str(len(head) + 4 * ((size + 2) // 3) + len(tail))
    response["Cache-Control"] = "no-store"
    return response


class Result(QueueView):
    """``GET /queue/{modelId}/requests/{id}``."""

    @extend_schema(exclude=True)
    def get(self, request, model_id: str, request_id: str):
        job = find_request(request.user.pk, model_id, request_id)
        state = queue_status(job)
        if state in (IN_QUEUE, IN_PROGRESS):
            raise QueueError(400, f"Request is still {state}: poll its status_url until it is COMPLETED.", status=state)
        if state == COMPLETED:
            return result_response(job, base=base_url(request))
        detail = job.error_message or ("This request was cancelled." if state == CANCELLED else "The video failed.")
        raise QueueError(422, detail, status=state)


# --- anything else under /queue/ --------------------------------------------------------


@csrf_exempt
def not_found(request: HttpRequest, *args, **kwargs) -> JsonResponse:
    return _json(
        404,
        {
            "detail": f"There is no queue endpoint at {request.path}: POST /queue/{{modelId}}, then GET "
            "/queue/{modelId}/requests/{id}/status, GET /queue/{modelId}/requests/{id} or PUT "
            "/queue/{modelId}/requests/{id}/cancel; see /api/schema/."
        },
    )
