"""``Idempotency-Key`` on create, as the IETF httpapi draft describes it.

A repeat with the same key and body replays the first answer and creates
nothing; the same key with another body is 422; a repeat while the first is
still being handled is 409. Keys belong to the caller. The row's insert is the
lock: two requests can never both own a key.
"""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from jobs.api.errors import error_body
from jobs.models import IdempotencyRecord

HEADER = "Idempotency-Key"


def _fingerprint(request) -> str:
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    data = request.data
    if hasattr(data, "lists"):
        items = data.lists()
    elif isinstance(data, dict):
        items = ((k, [v]) for k, v in data.items())
    else:  # a JSON list or scalar: the view will refuse it, but hash it all the same
        items = [("", [data])]
    for name, values in sorted(items, key=lambda item: item[0]):
        for value in values:
            digest.update(name.encode() + b"=")
            digest.update(json.dumps(value, sort_keys=True, default=str).encode())
    for name in sorted(request.FILES):
        for upload in request.FILES.getlist(name):
            digest.update(f"file:{name}=".encode())
            for chunk in upload.chunks():
                digest.update(chunk)
            upload.seek(0)
    return digest.hexdigest()


def _refusal(status: int, code: str, message: str, **headers) -> Response:
    return Response(error_body(status, code, message), status=status, headers=headers)


def idempotent(handler):
    """Wrap a DRF ``post`` handler."""

    @functools.wraps(handler)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        if not 1 <= len(key) <= 255 or not key.isprintable():
            return _refusal(400, "bad_idempotency_key", f"{HEADER} must be 1 to 255 printable characters.")
        fingerprint = _fingerprint(request)
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(user=request.user, key=key, fingerprint=fingerprint)
        except IntegrityError:
            record = IdempotencyRecord.objects.filter(user=request.user, key=key).first()
            if record is None:  # deleted (failed or expired) meanwhile
                return _refusal(
                    409,
                    "idempotency_in_progress",
                    "A request with this key just ended; retry it.",
                    **{"Retry-After": "1"},
                )
            expired = record.created_at < timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_TTL_SECONDS)
            if expired and record.response_status is not None:
                record.delete()
                return wrapper(view, request, *args, **kwargs)
            if record.fingerprint != fingerprint:
                return _refusal(
                    422,
                    "idempotency_key_reused",
                    f"This {HEADER} was already used with a different request body; use a new key.",
                )
            if record.response_status is None:
                return _refusal(
                    409,
                    "idempotency_in_progress",
                    f"A request with this {HEADER} is still being handled; retry shortly.",
                    **{"Retry-After": "1"},
                )
            response = Response(record.response_body, status=record.response_status)
            response["Idempotent-Replayed"] = "true"
            return response
        try:
            response = handler(view, request, *args, **kwargs)
        except Exception:
            # A refused request (bad input, no credits) did nothing: the key
            # stays free so a corrected retry can use it.
            record.delete()
            raise
        if response.status_code >= 400:
            record.delete()
        else:
            body = json.loads(JSONRenderer().render(response.data))  # UUIDs and dates as the client saw them
            IdempotencyRecord.objects.filter(pk=record.pk).update(
                response_status=response.status_code, response_body=body
            )
        return response

    return wrapper
