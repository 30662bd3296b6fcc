"""Refuses oversized API bodies before anything reads them; answers 503, not
Django's 500 page, while the database is unreachable."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse

log = logging.getLogger(__name__)

API_PREFIXES = ("/api/", "/queue/")


def _limit_mb() -> str:
    return f"{settings.MAX_UPLOAD_BYTES / (1024 * 1024):g} MB"


class ApiBodyLimitMiddleware:
    """A declared body larger than the API allows gets 413 at once.

    The cap leaves room for a base64 image (4/3 of the image cap) and the
    other fields; Django's own limits still apply to what is read.
    """

    PREFIXES = API_PREFIXES

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(self.PREFIXES):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > settings.MAX_API_BODY_BYTES:
                message = f"The request body is too large; images must be {_limit_mb()} or smaller."
                if request.path.startswith("/api/img2video"):
                    body = {"error": message}  # the Stability-style shape
                elif request.path.startswith("/queue/"):
                    body = {"detail": message}  # the queue-style (Pipelet, fal) shape
                else:
                    body = {"error": {"status": 413, "code": "too_large", "message": message}}
                response = JsonResponse(body, status=413)
                # The unread body is not drained: tell the client the connection ends here.
                response["Connection"] = "close"
                return response
        return self.get_response(request)


class DatabaseOutageMiddleware:
    """A lost database connection is an outage to wait out, not a bug: 503
    with ``Retry-After``, in the API's error shape on API paths.

    Only connection-level errors (``OperationalError``, ``InterfaceError``)
    qualify; an integrity error or a bad query stays a 500.
    """

    RETRY_AFTER_SECONDS = 5
    MESSAGE = "The service is briefly unavailable (its database cannot be reached). Please try again shortly."

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        log.warning("database unavailable while serving %s %s: %s", request.method, request.path, exception)
        if request.path.startswith(API_PREFIXES):
            if request.path.startswith("/api/img2video"):
                body = {"error": self.MESSAGE}  # the Stability-style shape
            elif request.path.startswith("/queue/"):
                body = {"detail": self.MESSAGE}  # the queue-style (Pipelet, fal) shape
            else:
                body = {"error": {"status": 503, "code": "database_unavailable", "message": self.MESSAGE}}
            response = JsonResponse(body, status=503)
        else:
            response = HttpResponse(self.MESSAGE, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(self.RETRY_AFTER_SECONDS)
        return response
