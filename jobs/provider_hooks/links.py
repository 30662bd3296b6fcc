"""The webhook URLs providers are given, and the tokens of unsigned ones.

Replicate signs its webhooks, so every Replicate prediction gets the same URL,
``/hooks/replicate``; the prediction id in the verified body names the job.
A provider that does not sign (Pipelet) gets ``/hooks/<provider>/<token>``,
the token an HMAC (keyed with ``SECRET_KEY``) of the provider and the job id:
a POST without it cannot name a job, and a token opens only its own job.
"""

from __future__ import annotations

import base64
import hmac
import uuid

from django.conf import settings
from django.urls import reverse
from django.utils.crypto import salted_hmac

# Providers whose webhooks carry a signature we check (jobs.provider_hooks.views).
SIGNED = frozenset({"replicate"})
_SALT = "i2v.provider-webhook"


def _mac(provider: str, job_id: uuid.UUID) -> str:
    digest = salted_hmac(_SALT, f"{provider}:{job_id.hex}", algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def token(provider: str, job_id) -> str:
    """The token that lets ``provider`` call about the job ``job_id``."""
    job_uuid = uuid.UUID(str(job_id))
    return f"{job_uuid.hex}.{_mac(provider, job_uuid)}"


def job_for_token(provider: str, given: str) -> uuid.UUID | None:
    """The job id a token was made for, when it was made for ``provider``; else None."""
    head, _, mac = given.partition(".")
    try:
        job_uuid = uuid.UUID(hex=head)
    except ValueError:
        return None
    if len(head) != 32 or not hmac.compare_digest(mac.encode(), _mac(provider, job_uuid).encode()):
        return None
    return job_uuid


def webhook_url(job, provider: str) -> str:
    """The absolute URL ``provider`` should call when its work for ``job`` is
    done; "" when the install has no public address."""
    base = settings.PUBLIC_BASE_URL
    if not base:
        return ""
    if provider in SIGNED:
        return base + reverse("provider-hook-signed", args=[provider])
    return base + reverse("provider-hook-token", args=[provider, token(provider, job.pk)])
