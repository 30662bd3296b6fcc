"""The native API, ``/api/v1/``: one view per operation; views validate, call a
domain function, serialize."""

from __future__ import annotations

import re

from django.conf import settings
from django.http import Http404, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView as DRFView

from jobs import actions, ledger, links
from jobs.api import examples as ex
from jobs.api import serializers as s
from jobs.api.errors import error_body
from jobs.api.extra_images import read_extra_images
from jobs.api.idempotency import binder, idempotent
from jobs.api.job_detail import job_detail, read_job_with_timeline
from jobs.api.parameters import provider_parameter_values
from jobs.api.parsers import JSONParser
from jobs.apikeys import create_api_key, revoke_api_key
from jobs.creation import check_job_affordable, create_job_from_image
from jobs.models import ApiKey, Job
from jobs.serving import serve_file
from jobs.sources import fetch_image_url, read_data_uri
from jobs.webhooks.endpoints import attach_job_callback, base_url_for, check_webhook_url
from providers.registry import PROVIDERS, cost_of, model_costs, provider_class

# What every operation may answer; each adds only the errors it can really give.
ERRORS = {
    401: OpenApiResponse(s.ErrorOutput, description="No valid API key or session."),
    429: OpenApiResponse(s.ErrorOutput, description="Too many requests; see Retry-After."),
}
INVALID = {400: OpenApiResponse(s.ErrorOutput, description="The input is invalid; `fields` says where.")}
NO_SUCH_JOB = {404: OpenApiResponse(s.ErrorOutput, description="No such job for this caller.")}
NO_SUCH_PAGE = {404: OpenApiResponse(s.ErrorOutput, description="Past the last page.")}
FILE_200 = "The whole file, with `Content-Length` and `Accept-Ranges: bytes`."
FILE_206 = (
    "The range asked for: for `Range: bytes=0-1023` the first 1024 bytes, with `Content-Range: bytes 0-1023/120131`."
)
# jobs.apikeys makes prefixes of 8 hex digits; the field holds up to 16 characters.
KEY_PREFIX_PATTERN = re.compile(r"^[0-9A-Za-z]{1,16}$")


# DRF's view, but a method the endpoint lacks is 405 before anything else:
# nobody needs a key to learn that GET /cancel does not exist. (A comment, not
# a docstring: drf-spectacular shows a view's docstring, or else its base
# class's, as the operation's description.)
class APIView(DRFView):
    def initial(self, request, *args, **kwargs):
        if request.method.lower() not in self.http_method_names or not hasattr(self, request.method.lower()):
            raise exceptions.MethodNotAllowed(request.method)
        super().initial(request, *args, **kwargs)

    def get_throttles(self):
        # Asked twice a request: by the key's check, to count the budget with it
        # (PerUserThrottle.of_view), and then by DRF. Made once.
        if "_throttles" not in self.__dict__:
            self._throttles = super().get_throttles()
        return self._throttles


class Pages(PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


def _own_job(request, job_id) -> Job:
    # Another caller's job is 404, never 403: its existence is not told.
    try:
        return Job.objects.for_user(request.user).get(pk=job_id)
    except Job.DoesNotExist:
        raise Http404 from None


class JobListCreate(APIView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(
        operation_id="jobs_list",
        summary="List your jobs, newest first",
        description="Twenty jobs a page unless `page_size` says otherwise (at most 100). Filter by `status` or "
        "`provider`; `next` and `previous` link the pages.",
        parameters=[s.JobListQuery],
        responses={200: s.JobPageOutput, **INVALID, **NO_SUCH_PAGE, **ERRORS},
        examples=ex.JOBS_LIST,
    )
    def get(self, request):
        # A plain dict: DRF would read an empty query value as "not sent".
        query = s.JobListQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        jobs = Job.objects.for_user(request.user).order_by("-created_at")
        if query.validated_data.get("status"):
            jobs = jobs.filter(status=query.validated_data["status"])
        if query.validated_data.get("provider"):
            jobs = jobs.filter(provider=query.validated_data["provider"])
        pages = Pages()
        page = pages.paginate_queryset(jobs, request, view=self)
        return pages.get_paginated_response(s.JobOutput(page, many=True, context={"request": request}).data)

    @extend_schema(
        operation_id="jobs_create",
        summary="Create a job from an upload, an image URL or base64",
        description=(
            "Send exactly one of `image` (a file in a multipart/form-data body), `image_url` or `data_uri` "
            "(either body). The job's cost is held from your credits at once and charged only when the video is "
            "ready. A field this operation does not list is refused with 400 and named in `fields`, so a "
            "misspelt parameter never silently becomes its default. Send `Idempotency-Key` to make retries safe."
        ),
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Any 1–255 printable characters, unique per create you mean.",
                pattern=r"^[\x20-\x7e]{1,255}$",
            )
        ],
        request={"multipart/form-data": s.JobCreateInput, "application/json": s.JobCreateJsonInput},
        responses={
            201: s.JobOutput,
            402: OpenApiResponse(
                s.ErrorOutput, description="Not enough credits; `balance` and `cost` say by how much."
            ),
            409: OpenApiResponse(s.ErrorOutput, description="A request with this Idempotency-Key is in progress."),
            413: OpenApiResponse(s.ErrorOutput, description="The body, or the image in it, is over the size cap."),
            422: OpenApiResponse(s.ErrorOutput, description="Idempotency-Key reused with another body."),
            **INVALID,
            **ERRORS,
        },
        examples=ex.JOBS_CREATE,
    )
    @idempotent
    def post(self, request):
        # Only a form can carry a file: in JSON, `image` is as unknown as any misspelt field.
        is_form = request.content_type.startswith(("multipart/", "application/x-www-form-urlencoded"))
        data = (s.JobCreateInput if is_form else s.JobCreateJsonInput)(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        job_fields = {
            "provider": v.get("provider"),
            "model": v.get("model"),
            "seed": v.get("seed"),
            "cfg_scale": v.get("cfg_scale"),
            "motion_bucket_id": v.get("motion_bucket_id"),
            "extra_params": provider_parameter_values(v),
        }
        check_job_affordable(owner=request.user, **job_fields)  # before an image is fetched or decoded
        callback_url = check_webhook_url(v["callback_url"], "callback_url") if v.get("callback_url") else ""
        extras = read_extra_images(v, job_fields["provider"] or settings.DEFAULT_PROVIDER)
        source_url = ""
        if v.get("image"):
            source, filename = v["image"], v["image"].name
        elif v.get("image_url"):
            source, filename = fetch_image_url(v["image_url"]), v["image_url"].rsplit("/", 1)[-1]
            source_url = v["image_url"]
        else:
            source, filename = read_data_uri(v["data_uri"]), "data-uri"
        job = create_job_from_image(
            owner=request.user,
            source=source,
            filename=filename,
            framing=v.get("framing"),
            source_url=source_url,
            prompt=v.get("prompt", ""),
            negative_prompt=v.get("negative_prompt", ""),
            request_id=v.get("request_id", ""),
            on_created=_on_created(request, callback_url),
            **extras,
            **job_fields,
        )
        return self.created_response(request, job)

    def created_response(self, request, job: Job) -> Response:
        body = s.JobOutput(job, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": f"/api/v1/jobs/{job.pk}"})


def _on_created(request, callback_url: str):
    """What the new job's creating transaction also does: bind the Idempotency-Key,
    attach the callback URL."""
    bind = binder(request)
    if not callback_url:
        return bind
    base_url = base_url_for(request)

    def created(job: Job) -> None:
        if bind is not None:
            bind(job)
        attach_job_callback(job, callback_url, public_base_url=base_url, check=False)  # checked before the work

    return created


class JobDetail(APIView):
    @extend_schema(
        operation_id="jobs_retrieve",
        summary="A job with its timeline",
        description="Poll this until `status` is final (`completed`, `failed`, `cancelled` or `expired`). While "
        "the job waits, `queue_position` says its place in line. Once completed, `video.url` and "
        "`video.poster_url` are signed links that work without a key until they expire.",
        responses={200: s.JobDetailOutput, **NO_SUCH_JOB, **ERRORS},
        examples=ex.JOBS_RETRIEVE,
    )
    def get(self, request, job_id):
        job, timeline = read_job_with_timeline(request.user, job_id)
        return Response(job_detail(job, timeline, request))


class JobCancel(APIView):
    @extend_schema(
        operation_id="jobs_cancel",
        summary="Cancel a job that has not finished",
        description="The credits held for it are released. A job a provider is already working on can be "
        "cancelled only if that provider can stop it (see `cancellable` on the job).",
        request=None,
        responses={
            200: s.JobOutput,
            409: OpenApiResponse(s.ErrorOutput, description="Finished, or the provider cannot stop it any more."),
            **NO_SUCH_JOB,
            **ERRORS,
        },
        examples=ex.JOBS_CANCEL,
    )
    def post(self, request, job_id):
        job = actions.cancel_job(_own_job(request, job_id), by=request.user)
        return Response(s.JobOutput(job, context={"request": request}).data)


class JobRetry(APIView):
    @extend_schema(
        operation_id="jobs_retry",
        summary="Retry a failed or cancelled job as a new job",
        description="The new job has the old one's image, provider and parameters, and its cost is held again; "
        "the old job stays as it was.",
        request=None,
        responses={
            201: s.JobOutput,
            402: OpenApiResponse(s.ErrorOutput, description="Not enough credits."),
            409: OpenApiResponse(s.ErrorOutput, description="Only failed or cancelled jobs can be retried."),
            **NO_SUCH_JOB,
            **ERRORS,
        },
        examples=ex.JOBS_RETRY,
    )
    def post(self, request, job_id):
        new = actions.retry_job(_own_job(request, job_id), by=request.user)
        return Response(s.JobOutput(new, context={"request": request}).data, status=status.HTTP_201_CREATED)


class JobFile(APIView):
    # The video or poster: to its owner, or to anyone with a valid signed link.
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="jobs_file",
        summary="Download a job's video or poster (supports Range)",
        description="The MP4 (`kind=video`) or its first frame as a JPEG (`kind=poster`) of a completed job. "
        "With your key, or with no key at all through the signed `video.url` / `video.poster_url` of the job, "
        "so a `<video>` or `<img>` tag can load it. Send `Range: bytes=…` to seek: the answer is then 206. "
        "Where the install keeps its files in S3-compatible storage, the answer is a 302 to a presigned, "
        "expiring URL of the storage, which serves the bytes and the ranges (browsers and `curl -L` follow it).",
        parameters=[
            OpenApiParameter("kind", str, OpenApiParameter.PATH, enum=["video", "poster"]),
            OpenApiParameter("token", str, description="From the job's signed video/poster URL."),
        ],
        # Bytes have no literal example worth showing: each answer's description says what comes back.
        responses={
            (200, "video/mp4"): OpenApiResponse(OpenApiTypes.BINARY, description=FILE_200),
            (206, "video/mp4"): OpenApiResponse(OpenApiTypes.BINARY, description=FILE_206),
            (200, "image/jpeg"): OpenApiResponse(OpenApiTypes.BINARY, description=FILE_200),
            (206, "image/jpeg"): OpenApiResponse(OpenApiTypes.BINARY, description=FILE_206),
            404: OpenApiResponse(
                s.ErrorOutput, description="No such completed job for you, or the signed link expired or was altered."
            ),
            # A wrong key sent along counts against the address's budget, signed link or not.
            429: OpenApiResponse(
                s.ErrorOutput,
                description="Too many wrong API keys from your address, or too many requests; see Retry-After.",
            ),
        },
        examples=ex.JOBS_FILE,
    )
    def get(self, request, job_id, kind):
        if kind not in ("video", "poster"):
            raise Http404
        token = request.query_params.get("token", "")
        if token and links.check(job_id, kind, token):
            job = Job.objects.filter(pk=job_id).first()
        elif request.user.is_authenticated:
            job = Job.objects.for_user(request.user).filter(pk=job_id).first()
        else:
            job = None
        field = getattr(job, kind, None) if job is not None and job.status == Job.COMPLETED else None
        if not field:
            raise Http404
        content_type = "video/mp4" if kind == "video" else "image/jpeg"
        response: HttpResponse = serve_file(request, field.name, content_type)
        return response


class ProviderList(APIView):
    @extend_schema(
        operation_id="providers_list",
        summary="Providers, their parameters and costs, and whether each can be used here",
        description="What `provider`, `model`, `framing` and the parameters of a new job may be, and what a "
        "video from each provider costs. A provider this install cannot use is listed with `available: false` "
        "and `unavailable_reason` saying why (a missing key, say).",
        responses={200: s.ProviderOutput(many=True), **ERRORS},
        examples=ex.PROVIDERS_LIST,
    )
    def get(self, request):
        rows = []
        for name in PROVIDERS:
            cls = provider_class(name)
            reason = cls.unavailable_reason()
            rows.append(
                {
                    "name": cls.name,
                    "label": cls.label,
                    "available": not reason,
                    "unavailable_reason": reason,
                    "models": list(cls.models),
                    "default_model": cls.models[0],
                    "sizes": [f"{w}x{h}" for w, h in cls.sizes],
                    "parameters": {param.name: param.describe() for param in cls.parameters},
                    "cost": cost_of(cls.name),
                    "model_costs": model_costs(cls.name),
                    "min_poll_interval": float(cls().min_poll_interval),
                    "capabilities": {
                        "supports_cancel": cls.supports_cancel,
                        "supports_webhook": cls.supports_webhook,
                        "needs_prompt": cls.needs_prompt,
                        "needs_image_url": cls.needs_image_url,
                        "accepts_tail_image": cls.accepts_tail_image,
                        "accepts_masks": cls.accepts_masks,
                    },
                }
            )
        return Response(s.ProviderOutput(rows, many=True).data)


class CreditBalance(APIView):
    @extend_schema(
        operation_id="credits_balance",
        summary="Your credit balance",
        description="Credits held for unfinished jobs are already taken off.",
        responses={200: s.BalanceOutput, **ERRORS},
        examples=ex.CREDITS_BALANCE,
    )
    def get(self, request):
        return Response({"balance": ledger.balance_of(request.user)})


class CreditLedger(APIView):
    @extend_schema(
        operation_id="credits_ledger",
        summary="Your ledger, newest first",
        description="Every change to your balance: grants, holds when a job is created, captures when its "
        "video is ready and releases when it fails or is cancelled. `balance_after` is the balance it left.",
        parameters=[s.PageQuery],
        responses={200: s.LedgerPageOutput, **INVALID, **NO_SUCH_PAGE, **ERRORS},
        examples=ex.CREDITS_LEDGER,
    )
    def get(self, request):
        s.PageQuery(data=request.query_params.dict()).is_valid(raise_exception=True)
        ledger.open_account(request.user)  # a first call shows the starting grant
        pages = Pages()
        page = pages.paginate_queryset(request.user.ledger.order_by("-at", "-id"), request, view=self)
        return pages.get_paginated_response(s.LedgerEntryOutput(page, many=True).data)


class ApiKeyListCreate(APIView):
    @extend_schema(
        operation_id="keys_list",
        summary="Your API keys (prefixes only)",
        description="Revoked keys are listed too, with `revoked_at` set. The full key is never shown again "
        "after its creation.",
        responses={200: s.ApiKeyOutput(many=True), **ERRORS},
        examples=ex.KEYS_LIST,
    )
    def get(self, request):
        return Response(s.ApiKeyOutput(request.user.api_keys.all(), many=True).data)

    @extend_schema(
        operation_id="keys_create",
        summary="Create an API key; the key is shown only in this answer",
        description="Send it as `Authorization: Bearer <key>`. `name` (at most 100 characters, surrounding "
        "whitespace trimmed) helps you tell keys apart; any other field is refused with 400.",
        request=s.ApiKeyInput,
        responses={201: s.ApiKeyCreatedOutput, **INVALID, **ERRORS},
        examples=ex.KEYS_CREATE,
    )
    def post(self, request):
        data = s.ApiKeyInput(data=request.data)
        data.is_valid(raise_exception=True)
        key, full = create_api_key(user=request.user, name=data.validated_data.get("name", ""))
        body = {**s.ApiKeyOutput(key).data, "key": full}
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyRevoke(APIView):
    @extend_schema(
        operation_id="keys_revoke",
        summary="Revoke an API key",
        description="The key stops working at once; it stays in the list with `revoked_at` set.",
        parameters=[
            OpenApiParameter(
                "prefix",
                str,
                OpenApiParameter.PATH,
                description="The key's prefix, as `GET /api/v1/keys` lists it.",
                pattern=KEY_PREFIX_PATTERN.pattern,
            )
        ],
        request=None,
        responses={204: None, 404: OpenApiResponse(s.ErrorOutput, description="No such key."), **ERRORS},
        examples=ex.KEYS_REVOKE,
    )
    def delete(self, request, prefix):
        # Not a prefix we could have made (a NUL, which PostgreSQL refuses in a query, or
        # anything else): there is no such key, and the database need not be asked.
        if not KEY_PREFIX_PATTERN.fullmatch(prefix):
            raise Http404
        key = ApiKey.objects.filter(user=request.user, prefix=prefix).first()
        if key is None:
            raise Http404
        revoke_api_key(key)
        return Response(status=status.HTTP_204_NO_CONTENT)


class JobDeliveries(APIView):
    @extend_schema(
        operation_id="jobs_deliveries",
        summary="The webhooks sent about a job, with every attempt",
        description="Deliveries to your webhook endpoints and to the job's own `callback_url`, oldest first, "
        "each with its `webhook_id` (the same on every attempt), its status (`pending` while it is being "
        "retried, `delivered`, or `failed` once the retries ran out) and each attempt's answer: status code, "
        "the first 2 KB of the body, how long it took, and when the next attempt is due.",
        parameters=[s.PageQuery],
        responses={200: s.DeliveryPageOutput, **INVALID, **NO_SUCH_JOB, **ERRORS},
        examples=ex.JOBS_DELIVERIES,
    )
    def get(self, request, job_id):
        s.PageQuery(data=request.query_params.dict()).is_valid(raise_exception=True)
        job = _own_job(request, job_id)
        rows = job.deliveries.order_by("created_at", "id").prefetch_related("attempt_log")
        pages = Pages()
        page = pages.paginate_queryset(rows, request, view=self)
        return pages.get_paginated_response(s.DeliveryOutput(page, many=True).data)


@csrf_exempt
def not_found(request, *args, **kwargs) -> JsonResponse:
    return JsonResponse(
        error_body(404, "not_found", f"There is no API endpoint at {request.path}; see /api/schema/."), status=404
    )
