"""Refuses oversized API bodies before anything reads them."""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse


def _limit_mb() -> str:
    return f"{settings.MAX_UPLOAD_BYTES / (1024 * 1024):g} MB"


class ApiBodyLimitMiddleware:
    """A declared body larger than the API allows gets 413 at once.

    The cap leaves room for a base64 image (4/3 of the image cap) and the
    other fields; Django's own limits still apply to what is read.
    """

    PREFIXES = ("/api/", "/queue/")

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
                else:
                    body = {"error": {"status": 413, "code": "too_large", "message": message}}
                response = JsonResponse(body, status=413)
                # The unread body is not drained: tell the client the connection ends here.
                response["Connection"] = "close"
                return response
        return self.get_response(request)
