"""The bodies and headers each kind of callback receiver expects.

The standard format is Standard Webhooks: a body
``{"type": "job.completed", "timestamp": …, "data": <the job as GET
/api/v1/jobs/{id} shows it>}`` fixed when the event happens, and the
``webhook-id`` / ``webhook-timestamp`` / ``webhook-signature`` headers made
at each attempt (``signing``), with the secrets in force then.

The I2V format is the original I2V API's G.A.M.E callback, byte for byte: the
original sent it with ``requests.post(json=…)``, which serialises with
``json.dumps`` defaults (``", "`` and ``": "`` separators, ASCII escapes), in
the key order of its README.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from jobs import links
from jobs.models import CallbackDelivery, CallbackTarget, Job, JobCallbackSecret
from jobs.webhooks import signing

I2V = CallbackTarget.FORMAT_I2V
STANDARD = CallbackTarget.FORMAT_STANDARD
DEFAULT_TITLE = "Generated Video"
TITLE_MAX = 80


def dumps(data: dict) -> str:
    """JSON as ``requests.post(json=…)`` sends it."""
    return json.dumps(data, allow_nan=False)


def i2v_success(title: str, url: str) -> str:
    return dumps(
        {
            "data": {
                "addToInventory": True,
                "status": "COMPLETED",
                "output": {"title": title, "type": "MEDIA", "category": "MARKETING_VIDEO", "url": url},
            }
        }
    )


def i2v_failure() -> str:
    return dumps({"data": {"addToInventory": False, "status": "FAILED", "output": None}})


def title_from_prompt(prompt: str) -> str:
    """A short human title: the prompt's first clause, capitalised.

    The original cut Pika's file name (which Pika makes from the prompt) at the
    first comma, turned underscores into spaces and capitalised it; this does the
    same from the prompt itself, keeping the case of the rest ("NASA" stays), and
    shortens a long clause at a word boundary.
    """
    clause = " ".join(prompt.split(",", 1)[0].replace("_", " ").split())
    if not clause:
        return DEFAULT_TITLE
    if len(clause) > TITLE_MAX:
        clause = clause[:TITLE_MAX].rsplit(" ", 1)[0] or clause[:TITLE_MAX]
    return clause[0].upper() + clause[1:]


def video_link(job: Job, base_url: str) -> str:
    """An absolute link to the job's video that works without credentials
    until its result is deleted (``expires_at``)."""
    path = reverse("api-job-file", args=[job.pk, "video"])
    token = links.sign(job.pk, "video", until=job.expires_at or job.retention_deadline())
    return f"{base_url.rstrip('/')}{path}?token={token}"


def body_for(target: CallbackTarget, job: Job, event_type: str = "") -> str:
    """The body to send about ``job``: for I2V, which has just ended."""
    if target.format == STANDARD:
        return standard_body(job, event_type, target.public_base_url)
    if target.format != I2V:
        raise ValueError(f"Unknown callback format {target.format!r}")
    if job.status == Job.COMPLETED and job.video:
        return i2v_success(title_from_prompt(job.prompt), video_link(job, target.public_base_url))
    return i2v_failure()


class _BaseUrl:
    """What the API's serializer asks of a request to make absolute links."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def build_absolute_uri(self, location: str) -> str:
        return f"{self.base_url}{location}"


def standard_body(job: Job, event_type: str, base_url: str) -> str:
    """``{"type", "timestamp", "data"}``; ``data`` is the job exactly as its owner's
    ``GET /api/v1/jobs/{id}`` shows it, with links that last as long as the video."""
    # The API's own serializer, so the two can never drift apart; imported here
    # because it imports the domain that imports this module.
    from jobs.api.serializers import JobDetailOutput

    context = {"request": _BaseUrl(base_url), "link_until": job.expires_at or job.retention_deadline()}
    data = JobDetailOutput(job, context=context).data
    stamp = timezone.now().isoformat().replace("+00:00", "Z")
    return json.dumps({"type": event_type, "timestamp": stamp, "data": data}, separators=(",", ":"), default=str)


def headers_for(delivery: CallbackDelivery, now=None) -> dict[str, str]:
    """Headers added when sending; secrets are read now, never stored with the delivery."""
    if delivery.format == I2V:
        return {"x-api-key": settings.GAME_API_KEY}
    if delivery.format == STANDARD:
        return signing.headers(signer_for(delivery), delivery.msg_id, delivery.body, now)
    return {}


def signer_for(delivery: CallbackDelivery):
    """Whose secrets sign the delivery: its endpoint's, or for a job's own
    ``callback_url``, its owner's job-callback secret."""
    if delivery.endpoint_id:
        return delivery.endpoint
    return job_callback_secret(delivery.job.owner)


def job_callback_secret(user) -> JobCallbackSecret:
    """The user's job-callback secret, made on first use."""
    found, _ = JobCallbackSecret.objects.get_or_create(user=user, defaults={"secret": signing.new_secret()})
    return found


def i2v_callback_url(request_id: str) -> str:
    """``{CALLBACK_API_URL}/{request_id}/callback``, or the URL with ``{request_id}``
    filled in when it has that placeholder; empty when no URL is configured."""
    base = settings.CALLBACK_API_URL
    if not base:
        return ""
    # Quoted, so an id cannot step into another path; a UUID or plain token is unchanged.
    segment = quote(request_id, safe="")
    if "{request_id}" in base:
        return base.replace("{request_id}", segment)
    return f"{base.rstrip('/')}/{segment}/callback"
