"""The native API's webhook operations, ``/api/v1/webhooks…``: endpoints, their
secrets and deliveries, and the secret that signs jobs' own callback URLs.
Views validate, call ``jobs.webhooks.endpoints``, serialize."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response

from jobs.actions import ActionRefused
from jobs.api import examples as ex
from jobs.api import serializers as s
from jobs.api.parsers import JSONParser
from jobs.api.views import ERRORS, INVALID, APIView, Pages
from jobs.models import CallbackDelivery, WebhookEndpoint
from jobs.webhooks import endpoints

NO_SUCH_ENDPOINT = {404: OpenApiResponse(s.ErrorOutput, description="No such webhook endpoint for this caller.")}
SIGNING = (
    "Every delivery is a POST with the Standard Webhooks headers `webhook-id` (the same on every retry), "
    "`webhook-timestamp` and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body` "
    "with the base64-decoded part of the secret after `whsec_`); the body is "
    '`{"type": "job.completed", "timestamp": …, "data": <the job as GET /api/v1/jobs/{id} shows it>}`.'
)


def _own_endpoint(request, endpoint_id) -> WebhookEndpoint:
    try:
        return WebhookEndpoint.objects.get(pk=endpoint_id, owner=request.user)
    except WebhookEndpoint.DoesNotExist:
        raise Http404 from None


def _secret_body(holder) -> dict:
    return {"secret": holder.secret, "previous_secret_expires_at": holder.previous_secret_until}


class WebhookListCreate(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="webhooks_list",
        summary="Your webhook endpoints",
        description="Secrets are not listed: each is shown once, when the endpoint is made or its secret rotated. "
        "An endpoint that answered 410 Gone is listed with `enabled: false` and `disabled_reason`.",
        responses={200: s.WebhookEndpointOutput(many=True), **ERRORS},
        examples=ex.WEBHOOKS_LIST,
    )
    def get(self, request):
        rows = WebhookEndpoint.objects.filter(owner=request.user).order_by("created_at", "id")
        return Response(s.WebhookEndpointOutput(rows, many=True).data)

    @extend_schema(
        operation_id="webhooks_create",
        summary="Register a webhook endpoint; its secret is shown only in this answer",
        description=f"{SIGNING} A 2xx answer within 15 s is a delivery; anything else (a redirect too: they are "
        "not followed) is retried at once, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h, "
        "or after the `Retry-After` of a 429 or 503. A 410 Gone disables the endpoint. The URL must be public.",
        request=s.WebhookEndpointInput,
        responses={201: s.WebhookEndpointCreatedOutput, **INVALID, **ERRORS},
        examples=ex.WEBHOOKS_CREATE,
    )
    def post(self, request):
        data = s.WebhookEndpointInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        endpoint, secret = endpoints.create_endpoint(
            owner=request.user,
            url=v["url"],
            events=v.get("events"),
            description=v.get("description", ""),
            public_base_url=endpoints.base_url_for(request),
        )
        body = {**s.WebhookEndpointOutput(endpoint).data, "secret": secret}
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": f"/api/v1/webhooks/{endpoint.pk}"})


class WebhookDetail(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="webhooks_retrieve",
        summary="A webhook endpoint",
        description="Its URL, events, whether it is enabled (and why not), and until when a rotated secret "
        "still signs beside the new one.",
        responses={200: s.WebhookEndpointOutput, **NO_SUCH_ENDPOINT, **ERRORS},
        examples=ex.WEBHOOKS_RETRIEVE,
    )
    def get(self, request, endpoint_id):
        return Response(s.WebhookEndpointOutput(_own_endpoint(request, endpoint_id)).data)

    @extend_schema(
        operation_id="webhooks_update",
        summary="Change a webhook endpoint, or enable it again",
        description="Send only what changes. `enabled: true` enables an endpoint that was disabled (after it "
        "answered 410 Gone): the deliveries that waited for it are sent at once.",
        request=s.WebhookEndpointUpdateInput,
        responses={200: s.WebhookEndpointOutput, **INVALID, **NO_SUCH_ENDPOINT, **ERRORS},
        examples=ex.WEBHOOKS_UPDATE,
    )
    def patch(self, request, endpoint_id):
        endpoint = _own_endpoint(request, endpoint_id)
        data = s.WebhookEndpointUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        was_disabled = not endpoint.is_enabled
        endpoints.update_endpoint(
            endpoint,
            url=v.get("url"),
            events=v.get("events"),
            description=v.get("description"),
            enabled=v.get("enabled"),
        )
        if was_disabled and v.get("enabled") is True:
            endpoints.enable_endpoint(endpoint)
        return Response(s.WebhookEndpointOutput(endpoint).data)

    @extend_schema(
        operation_id="webhooks_delete",
        summary="Delete a webhook endpoint",
        description="Nothing more is sent to it, its pending deliveries included; its delivery log goes with it.",
        request=None,
        responses={204: None, **NO_SUCH_ENDPOINT, **ERRORS},
        examples=ex.WEBHOOKS_DELETE,
    )
    def delete(self, request, endpoint_id):
        endpoints.delete_endpoint(_own_endpoint(request, endpoint_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookRotateSecret(APIView):
    @extend_schema(
        operation_id="webhooks_rotate_secret",
        summary="Rotate an endpoint's secret; the new one is shown only in this answer",
        description="For 24 hours (until `previous_secret_expires_at`) every delivery carries two signatures in "
        "`webhook-signature`, one by each secret, so either verifies while you switch; then only the new one.",
        request=None,
        responses={200: s.SecretOutput, **NO_SUCH_ENDPOINT, **ERRORS},
        examples=ex.WEBHOOKS_ROTATE,
    )
    def post(self, request, endpoint_id):
        endpoint = _own_endpoint(request, endpoint_id)
        endpoints.rotate_secret(endpoint)
        return Response(_secret_body(endpoint))


class WebhookDeliveries(APIView):
    @extend_schema(
        operation_id="webhooks_deliveries",
        summary="An endpoint's deliveries, newest first, with every attempt",
        description="Each delivery is one event for one job; `attempts` lists every try with its status code, "
        "the first 2 KB of the answer, its duration and when the next try is due.",
        parameters=[s.PageQuery],
        responses={200: s.DeliveryPageOutput, **INVALID, **NO_SUCH_ENDPOINT, **ERRORS},
        examples=ex.WEBHOOKS_DELIVERIES,
    )
    def get(self, request, endpoint_id):
        s.PageQuery(data=request.query_params.dict()).is_valid(raise_exception=True)
        endpoint = _own_endpoint(request, endpoint_id)
        rows = endpoint.deliveries.order_by("-created_at", "-id").prefetch_related("attempt_log")
        pages = Pages()
        page = pages.paginate_queryset(rows, request, view=self)
        return pages.get_paginated_response(s.DeliveryOutput(page, many=True).data)


class WebhookRedeliver(APIView):
    @extend_schema(
        operation_id="webhooks_redeliver",
        summary="Send a delivery again",
        description="The same body and `webhook-id` (it is the same event, so a receiver that keeps the ids it "
        "has seen can tell), signed afresh. A delivery still being retried is tried at once instead.",
        request=None,
        responses={
            202: s.DeliveryOutput,
            404: OpenApiResponse(s.ErrorOutput, description="No such endpoint or delivery for this caller."),
            409: OpenApiResponse(s.ErrorOutput, description="The endpoint is disabled; enable it first."),
            **ERRORS,
        },
        examples=ex.WEBHOOKS_REDELIVER,
    )
    def post(self, request, endpoint_id, delivery_id):
        endpoint = _own_endpoint(request, endpoint_id)
        found = CallbackDelivery.objects.filter(pk=delivery_id, endpoint=endpoint).first()
        if found is None:
            raise Http404
        if not endpoint.is_enabled:
            raise ActionRefused("This endpoint is disabled; enable it (PATCH enabled: true) to send to it again.")
        again = endpoints.redeliver(found, by=request.user)
        again.refresh_from_db()
        return Response(s.DeliveryOutput(again).data, status=status.HTTP_202_ACCEPTED)


class JobCallbackSecret(APIView):
    @extend_schema(
        operation_id="webhooks_job_callback_secret",
        summary="The secret that signs your jobs' own callback URLs",
        description="A job created with `callback_url` is told about its end by a Standard Webhooks delivery "
        f"signed with this secret (one per account, made on first use). {SIGNING}",
        responses={200: s.SecretOutput, **ERRORS},
        examples=ex.JOB_CALLBACK_SECRET,
    )
    def get(self, request):
        return Response(_secret_body(endpoints.job_callback_secret(request.user)))


class JobCallbackSecretRotate(APIView):
    @extend_schema(
        operation_id="webhooks_job_callback_secret_rotate",
        summary="Rotate the secret that signs your jobs' callback URLs",
        description="The previous secret keeps signing beside the new one for 24 hours "
        "(`previous_secret_expires_at`), so either verifies while you switch.",
        request=None,
        responses={200: s.SecretOutput, **ERRORS},
        examples=ex.JOB_CALLBACK_SECRET_ROTATE,
    )
    def post(self, request):
        holder = endpoints.job_callback_secret(request.user)
        endpoints.rotate_secret(holder)
        return Response(_secret_body(holder))
