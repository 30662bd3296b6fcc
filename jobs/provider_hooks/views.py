"""The endpoints providers call: thin views over ``look``.

``POST /hooks/replicate``: signed (``providers.replicate_webhooks``); the
verified body's prediction id names the job. ``POST /hooks/<provider>/<token>``:
for providers that do not sign; the token names the job, the body is never
read for anything. Both answer 200 whether or not we knew the job (a caller
learns nothing about which ids exist); the signed route refuses bodies over
1 MB (413), the token route takes any size, unread (Pipelet's ``completed``
carries the whole video); both refuse other methods (405) and count every
request against the caller's address (``PROVIDER_WEBHOOK_RATE``). No session, no CSRF: providers are not browsers.
"""

from __future__ import annotations

import json
import logging
import re

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.throttling import SimpleRateThrottle

from jobs.api import ratelimit
from jobs.api.auth import client_address
from jobs.models import Job
from jobs.provider_hooks import links, look
from providers import replicate_webhooks
from providers.base import ProviderError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# The most of an unread body a token hook throws away (Pipelet's largest result as base64).
DRAIN_BYTES = 512 * 1024 * 1024
_PREDICTION_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def _answer(status: int, message: str, code: str, headers: dict | None = None) -> JsonResponse:
    body = {"received": True} if status == 200 else {"error": {"status": status, "code": code, "message": message}}
    response = JsonResponse(body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _ok() -> JsonResponse:
    return _answer(200, "", "")


def _gate(request: HttpRequest, *, read_body: bool = True) -> tuple[bytes | None, JsonResponse | None]:
    """What every hook checks first: the method, the caller's budget, and (for a
    body we read) its size."""
    if request.method != "POST":
        return None, _answer(405, "Provider webhooks are POST only.", "method_not_allowed", {"Allow": "POST"})
    limit, period = SimpleRateThrottle.parse_rate(None, settings.PROVIDER_WEBHOOK_RATE)
    counted = ratelimit.counter().hit(f"hooks:{client_address(request)}", period)
    if counted.count > limit:
        wait = max(1, int(counted.resets_in + 0.999))
        message = f"Too many webhook calls from your address; try again in {wait} s."
        return None, _answer(429, message, "rate_limited", {"Retry-After": str(wait)})
    if not read_body:
        return None, None
    too_large = _answer(413, f"A webhook body must be at most {MAX_BODY_BYTES // 1024} KB.", "too_large")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None, _answer(400, "Content-Length is not a number.", "bad_request")
    if declared > MAX_BODY_BYTES:
        too_large["Connection"] = "close"  # the unread body is not drained
        return None, too_large
    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        too_large["Connection"] = "close"
        return None, too_large
    return body, None


@csrf_exempt
def signed_hook(request: HttpRequest, provider: str) -> JsonResponse:
    body, refused = _gate(request)
    if refused is not None:
        return refused
    if provider != "replicate":
        return _answer(404, "No signed webhooks are taken for this provider.", "not_found")
    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        webhook_id = replicate_webhooks.verify(headers, body)
    except replicate_webhooks.WebhookRefused as exc:
        log.warning("replicate webhook refused (%s): %s", exc.status, exc.message)
        code = "bad_signature" if exc.status == 401 else "bad_webhook"
        return _answer(exc.status, exc.message, code)
    except ProviderError as exc:
        # We cannot get the secret now: Replicate retries a failed terminal webhook.
        log.error("replicate webhook not checked: %s %s", exc.message, exc.detail)
        return _answer(503, "The webhook cannot be checked right now; try again.", "unavailable", {"Retry-After": "5"})
    try:
        prediction = json.loads(body)
    except (ValueError, RecursionError):
        prediction = None
    prediction_id = prediction.get("id") if isinstance(prediction, dict) else None
    if not isinstance(prediction_id, str) or not _PREDICTION_ID.match(prediction_id):
        return _answer(400, "The body must be a prediction: a JSON object with its string id.", "bad_webhook")
    outcome = look.replicate_finished(webhook_id, prediction_id)
    log.info("replicate webhook %s for prediction %s: %s", webhook_id, prediction_id, outcome)
    return _ok()


def _skip_body(request: HttpRequest, response: JsonResponse) -> JsonResponse:
    """Throw the unread body away in small pieces, so the caller reads our answer
    (a socket closed on unread data is reset under it); past DRAIN_BYTES, hang up."""
    left = DRAIN_BYTES
    while left > 0 and (piece := request.read(min(64 * 1024, left))):  # stops at Content-Length
        left -= len(piece)
    if left <= 0:
        response["Connection"] = "close"
    return response


@csrf_exempt
def token_hook(request: HttpRequest, provider: str, token: str) -> JsonResponse:
    # The body is never read for anything (an unsigned webhook only says "look
    # now"), so its size is not refused: Pipelet's `completed` carries the whole
    # result, a base64 video of tens of MB, and a 413 would lose the webhook.
    _, refused = _gate(request, read_body=False)
    if refused is not None:
        return refused
    job_id = links.job_for_token(provider, token)
    if job_id is None or not Job.objects.filter(pk=job_id).exists():
        missing = _answer(404, "No such webhook address.", "not_found")
        missing["Connection"] = "close"  # a stranger's body is not drained
        return missing
    look.look_now(job_id, f"{provider.capitalize()}'s webhook said the job changed")
    return _skip_body(request, _ok())
