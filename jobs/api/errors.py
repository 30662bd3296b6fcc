"""One JSON error shape for the whole native API:

    {"error": {"status": 400, "code": "invalid", "message": "...", "fields": {...}}}

``message`` is a sentence a person can act on; ``fields`` maps input names to
their problems when the input was at fault.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from jobs.actions import ActionRefused
from jobs.creation import JobInputError
from jobs.ledger import InsufficientCredits
from jobs.webhooks.endpoints import EndpointInputError


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"
    default_detail = "The request body is too large."


def error_body(status_code: int, code: str, message: str, fields: dict | None = None, **extra) -> dict:
    body = {"status": status_code, "code": code, "message": message, **extra}
    if fields:
        body["fields"] = fields
    return {"error": body}


def _flatten(detail) -> list[str]:
    if isinstance(detail, dict):
        return [m for value in detail.values() for m in _flatten(value)]
    if isinstance(detail, list):
        return [m for value in detail for m in _flatten(value)]
    return [str(detail)]


def _first_field_message(fields: dict) -> str:
    for name, problems in fields.items():
        text = _flatten(problems)[0] if _flatten(problems) else "is invalid"
        return text if name == "non_field_errors" else f"{name}: {text}"
    return "The request is invalid."


def exception_handler(exc, context):
    if isinstance(exc, JobInputError):
        # An image over the cap is as oversized as a body over it, even when the body fitted.
        code = 413 if exc.code == "too_large" else 400
        return Response(error_body(code, exc.code, exc.message, {exc.field: [exc.message]}), status=code)
    if isinstance(exc, EndpointInputError):
        return Response(error_body(400, "invalid", exc.message, {exc.field: [exc.message]}), status=400)
    if isinstance(exc, InsufficientCredits):
        return Response(
            error_body(402, "insufficient_credits", exc.message, balance=exc.balance, cost=exc.cost), status=402
        )
    if isinstance(exc, ActionRefused):
        return Response(error_body(409, "conflict", exc.message), status=409)
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django logs it and answers 500
    if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict):
        fields = {name: _flatten(value) for name, value in exc.detail.items()}
        response.data = error_body(response.status_code, "invalid", _first_field_message(fields), fields)
    else:
        messages = _flatten(
            response.data.get("detail", response.data) if isinstance(response.data, dict) else response.data
        )
        code = getattr(exc, "default_code", "error")
        if isinstance(exc, exceptions.APIException):
            codes = exc.get_codes()
            code = codes if isinstance(codes, str) else code
        response.data = error_body(response.status_code, code, messages[0] if messages else "Error.")
    return response
