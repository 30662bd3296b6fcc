"""The bodies and headers each kind of callback receiver expects.

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

from jobs import links
from jobs.models import CallbackTarget, Job

I2V = CallbackTarget.FORMAT_I2V
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


def body_for(target: CallbackTarget, job: Job) -> str:
    """The body to send about ``job``, which has just ended."""
    if target.format != I2V:
        raise ValueError(f"Unknown callback format {target.format!r}")
    if job.status == Job.COMPLETED and job.video:
        return i2v_success(title_from_prompt(job.prompt), video_link(job, target.public_base_url))
    return i2v_failure()


def headers_for(format_name: str) -> dict[str, str]:
    """Headers added when sending; secrets are read now, never stored with the delivery."""
    if format_name == I2V:
        return {"x-api-key": settings.GAME_API_KEY}
    return {}


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
