"""The original I2V API's endpoint, reproduced: ``POST /api/v1/i2v``.

The contract is ``i2v-api-fastapi-readme.md``: a client sends ``x-request-id``
and ``{"image_id": "<image URL>"}``, gets back exactly::

    {"message": "Video generation pipeline initialized | ETA: N-M minutes", "request_id": "<x-request-id>"}

and, when the job ends, a callback to ``CALLBACK_API_URL`` (``jobs.webhooks``).

Decisions:

* It takes an API key, as ``Authorization: Bearer <key>`` or ``x-api-key: <key>``
  (a client of the original, which had none, adds one header). An open endpoint
  would let anyone on the internet spend an account's credits and make our
  servers fetch any URL.
* Errors are FastAPI's: ``{"detail": "<sentence>"}``, and for a missing header
  or body field 422 with ``detail`` a list of ``{"loc", "msg", "type"}`` (the
  pydantic v1 wording the original's FastAPI gave).
* ``image_id`` is HTML-unescaped first (clients sent ``&#x2F;`` and ``&amp;``),
  then fetched like any image URL: http(s), public addresses only, size-capped.
* The same ``x-request-id`` from the same caller starts nothing new and gets the
  first answer again, word for word; concurrent repeats too (a unique row per
  caller and id, written with the job, is the lock).
* The provider: Replicate's CLIP interrogator then Pika when both keys are set
  (the original's pipeline), else ``I2V_COMPAT_PROVIDER`` (default ``local``).
"""

from __future__ import annotations

import html
import logging
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import authentication, exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from jobs import eta
from jobs.api.auth import check_key
from jobs.api.views import APIView
from jobs.creation import JobInputError, check_job_affordable, create_job_from_image
from jobs.ledger import InsufficientCredits
from jobs.models import CallbackTarget
from jobs.sources import fetch_image_url
from jobs.webhooks import formats
from providers.registry import UnknownProvider, provider_class

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_MAX = 128
NO_KEY_MESSAGE = "Authentication required: send your API key as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
BAD_KEY_MESSAGE = "The API key is missing, wrong or revoked."
BAD_REQUEST_ID_MESSAGE = f"x-request-id must be 1 to {REQUEST_ID_MAX} printable ASCII characters."
PIPELINE_PROVIDER = "pika"  # with Replicate's CLIP interrogator writing its prompt


def i2v_provider() -> str:
    """The provider behind the endpoint: Pika (after CLIP) when both keys are set, else I2V_COMPAT_PROVIDER."""
    if settings.PIKAPI_BEARER_TOKEN and settings.REPLICATE_API_TOKEN:
        try:
            if provider_class(PIPELINE_PROVIDER).is_enabled():
                return PIPELINE_PROVIDER
        except UnknownProvider:
            log.warning("PIKAPI_BEARER_TOKEN and REPLICATE_API_TOKEN are set but no pika provider is installed")
    return settings.I2V_COMPAT_PROVIDER


def started_message(provider: str) -> str:
    low, high = eta.estimate_minutes(provider)
    return f"Video generation pipeline initialized | ETA: {low}-{high} minutes"


class InvalidRequest(Exception):
    """FastAPI's 422: what is missing or malformed, as a list of ``{loc, msg, type}``."""

    def __init__(self, problems: list[dict]) -> None:
        super().__init__(problems)
        self.problems = problems


class BadRequest(exceptions.APIException):
    status_code = 400
    default_code = "bad_request"


def _missing(*loc) -> dict:
    return {"loc": list(loc), "msg": "field required", "type": "value_error.missing"}


class I2VKeyAuthentication(authentication.BaseAuthentication):
    """The native API's keys, sent as ``Authorization: Bearer`` or ``x-api-key``."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header:
            scheme, _, raw = header.partition(" ")
            if scheme.lower() != "bearer":
                raise exceptions.AuthenticationFailed(
                    f"The Authorization header must be 'Bearer <key>'. {NO_KEY_MESSAGE.split(': ', 1)[1]}"
                )
        else:
            raw = request.META.get("HTTP_X_API_KEY", "")
        raw = raw.strip()
        if not raw:
            return None
        key = check_key(raw, request)
        if key is None:
            raise exceptions.AuthenticationFailed(BAD_KEY_MESSAGE)
        return key.user, key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="i2v"'


def _exception_handler(exc, context):
    """Every error in FastAPI's shape, ``{"detail": ...}``; never a 500 for input."""
    if isinstance(exc, InvalidRequest):
        return Response({"detail": exc.problems}, status=422)
    if isinstance(exc, exceptions.ParseError):
        problem = {"loc": ["body", 0], "msg": str(exc.detail), "type": "value_error.jsondecode"}
        return Response({"detail": [problem]}, status=422)
    if isinstance(exc, JobInputError):
        if exc.field in ("provider", "model"):
            log.error("I2V_COMPAT_PROVIDER %r is not usable: %s", i2v_provider(), exc.message)
            return Response({"detail": f"Video generation is not available right now: {exc.message}"}, status=503)
        return Response({"detail": exc.message}, status=413 if exc.code == "too_large" else 400)
    if isinstance(exc, InsufficientCredits):
        return Response({"detail": exc.message}, status=402)
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": "The request body is too large."}, status=413)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not Found")
    elif isinstance(exc, exceptions.NotAuthenticated):
        auth_header = getattr(exc, "auth_header", None)
        exc = exceptions.NotAuthenticated(NO_KEY_MESSAGE)
        exc.auth_header = auth_header
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data.get("detail", response.data) if isinstance(response.data, dict) else response.data
    response.data = {"detail": str(detail)}
    return response


def _read(request) -> tuple[str, str]:
    """The request id and the image URL, or ``InvalidRequest`` listing what is wrong."""
    problems = []
    request_id = request.headers.get(REQUEST_ID_HEADER)
    if request_id is None:
        problems.append(_missing("header", REQUEST_ID_HEADER))
    data = request.data
    image_id = None
    if not isinstance(data, dict):
        problems.append({"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"})
    elif "image_id" not in data or data["image_id"] is None:
        problems.append(_missing("body", "image_id"))
    elif not isinstance(data["image_id"], str):
        problems.append({"loc": ["body", "image_id"], "msg": "str type expected", "type": "type_error.str"})
    else:
        image_id = data["image_id"]
    if problems:
        raise InvalidRequest(problems)
    # Printable ASCII: the id becomes part of the callback's URL.
    if not 1 <= len(request_id) <= REQUEST_ID_MAX or not all(" " <= char <= "~" for char in request_id):
        raise BadRequest(BAD_REQUEST_ID_MESSAGE)
    return request_id, html.unescape(image_id).strip()


def _base_url(request) -> str:
    # Without PUBLIC_BASE_URL, links start with the host this request came in on.
    return settings.PUBLIC_BASE_URL or request.build_absolute_uri("/").rstrip("/")


def start_request(*, owner, request_id: str, image_url: str, base_url: str) -> dict:
    """Start the pipeline for ``image_url`` once per (owner, request id); the answer to give.

    A repeat gets the first answer, whatever its body says. A repeat sent at the
    same moment loses the unique insert of the callback target, which rolls its
    job back, and gets the first answer too. Raises ``JobInputError`` or
    ``InsufficientCredits`` when nothing could be started.
    """
    earlier = CallbackTarget.objects.filter(owner=owner, format=formats.I2V, request_id=request_id).first()
    if earlier is not None:
        return earlier.response_body
    provider = i2v_provider()
    check_job_affordable(owner=owner, provider=provider)  # before the image is fetched
    if not image_url:
        raise JobInputError("image_id", "image_id is empty: give the http(s) URL of a JPEG or PNG image.")
    body = {"message": started_message(provider), "request_id": request_id}
    source = fetch_image_url(image_url, field="image_id")

    def remember(job) -> None:
        CallbackTarget.objects.create(
            job=job,
            owner=owner,
            format=formats.I2V,
            request_id=request_id,
            url=formats.i2v_callback_url(request_id),
            public_base_url=base_url,
            response_body=body,
        )

    name = urlsplit(image_url).path.rsplit("/", 1)[-1]
    try:
        create_job_from_image(
            owner=owner,
            source=source,
            filename=name,
            source_url=image_url,  # a provider that fetches by URL may be given it, as the original did
            provider=provider,
            request_id=request_id,
            on_created=remember,
        )
    except IntegrityError:
        earlier = CallbackTarget.objects.filter(owner=owner, format=formats.I2V, request_id=request_id).first()
        if earlier is None:
            raise
        return earlier.response_body
    return body


class ImageToVideo(APIView):
    """``POST /api/v1/i2v``: start the pipeline for an image URL."""

    authentication_classes = [I2VKeyAuthentication]

    def get_exception_handler(self):
        return _exception_handler

    @extend_schema(exclude=True)  # documented by jobs.compat.i2v_openapi
    def post(self, request):
        request_id, image_url = _read(request)
        body = start_request(
            owner=request.user, request_id=request_id, image_url=image_url, base_url=_base_url(request)
        )
        response = Response(body)
        response["Cache-Control"] = "no-store"
        return response
