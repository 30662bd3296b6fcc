"""Replicate's webhooks: the signing secret and the check of a signed request.

Replicate signs each webhook the Standard Webhooks way: ``webhook-id``,
``webhook-timestamp`` (whole seconds since the epoch) and
``webhook-signature``, one or more space-separated ``v1,<base64>`` entries,
each an HMAC-SHA256 over ``"<id>.<timestamp>.<body>"`` keyed with the
base64-decoded part of the ``whsec_…`` secret after the underscore.

The secret is ``REPLICATE_WEBHOOK_SECRET`` when set, else the account's
default secret from ``GET /v1/webhooks/default/secret`` (with the API token),
kept in memory. A request that fails the check with a fetched secret asks for
the secret again (Replicate may have rotated it), at most once a minute, so
forged requests cannot make us hammer Replicate.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from collections.abc import Mapping

from django.conf import settings

from providers import http
from providers.base import ProviderError

# Standard Webhooks' tolerance, either way: a replayed request older than this
# is refused even when its signature is good.
TOLERANCE_SECONDS = 5 * 60
SECRET_TTL = 3600.0
REFETCH_GAP = 60.0
_PREFIX = "whsec_"
_REMOTE = http.Remote(label="Replicate", key_setting="REPLICATE_API_TOKEN")


class WebhookRefused(Exception):
    """A webhook we will not act on; ``status`` and ``message`` are the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _SecretCache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.value = ""
        self.identity: tuple[str, str] = ("", "")
        self.fetched_at = 0.0

    def get(self, *, fresh: bool = False) -> str:
        identity = (settings.REPLICATE_BASE_URL, settings.REPLICATE_API_TOKEN)
        with self.lock:
            now = time.monotonic()
            stale = not self.value or self.identity != identity or now - self.fetched_at > SECRET_TTL
            if fresh and now - self.fetched_at < REFETCH_GAP and self.identity == identity:
                return self.value  # asked again too soon: keep what we have
            if stale or fresh:
                self.value = _fetch_secret()
                self.identity, self.fetched_at = identity, now
            return self.value

    def clear(self) -> None:
        with self.lock:
            self.value, self.identity, self.fetched_at = "", ("", ""), 0.0


_cache = _SecretCache()


def _fetch_secret() -> str:
    if not settings.REPLICATE_API_TOKEN:
        raise ProviderError(
            "Replicate webhooks cannot be checked: neither REPLICATE_WEBHOOK_SECRET nor REPLICATE_API_TOKEN is set.",
            code="provider_auth",
        )
    url = f"{settings.REPLICATE_BASE_URL}/v1/webhooks/default/secret"
    response = http.request(
        "GET",
        url,
        headers={"Authorization": f"Bearer {settings.REPLICATE_API_TOKEN}"},
        timeout=(5.0, 10.0),
        retries=1,
        remote=_REMOTE,
    )
    body = http.json_object(http.read_capped(response), label="Replicate", what=f"GET {url}")
    key = body.get("key")
    if not isinstance(key, str) or not key.startswith(_PREFIX):
        raise http.bad_response("Replicate", f"GET {url}: no whsec_ key in {sorted(body)}")
    return key


def signing_secret(*, fresh: bool = False) -> tuple[str, bool]:
    """``(secret, fetched)``: the configured secret, or Replicate's (``fetched``)."""
    configured = str(settings.REPLICATE_WEBHOOK_SECRET or "")
    if configured:
        return configured, False
    return _cache.get(fresh=fresh), True


def forget_secret() -> None:
    """Drop the fetched secret (tests, or a changed token)."""
    _cache.clear()


def _key(secret: str) -> bytes:
    raw = secret[len(_PREFIX) :] if secret.startswith(_PREFIX) else secret
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProviderError(
            "The Replicate webhook secret is malformed; an operator must check REPLICATE_WEBHOOK_SECRET.",
            code="provider_misconfigured",
            detail=str(exc),
        ) from exc


def signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The base64 HMAC-SHA256 of a webhook, as its ``v1,`` entry carries it."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()


def _matches(secret: str, webhook_id: str, timestamp: str, body: bytes, given: list[str]) -> bool:
    expected = signature(secret, webhook_id, timestamp, body).encode()
    # Every entry is compared (no early exit), each in constant time.
    found = False
    for entry in given:
        found |= hmac.compare_digest(expected, entry.encode())
    return found


def verify(headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> str:
    """Check a webhook's headers and signature; returns its ``webhook-id``.

    ``headers`` is looked up by lower-case name. Raises ``WebhookRefused``
    (400: headers missing or malformed, or a timestamp more than five minutes
    off; 401: no valid signature) or ``ProviderError`` when the secret cannot
    be had (the caller answers 503 so Replicate tries again).
    """
    webhook_id = (headers.get("webhook-id") or "").strip()
    timestamp = (headers.get("webhook-timestamp") or "").strip()
    signatures = (headers.get("webhook-signature") or "").strip()
    if not webhook_id or not timestamp or not signatures:
        raise WebhookRefused(
            400, "A signed webhook needs the headers webhook-id, webhook-timestamp and webhook-signature."
        )
    if len(webhook_id) > 255 or len(signatures) > 4096:
        raise WebhookRefused(400, "The webhook-id or webhook-signature header is too long.")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise WebhookRefused(400, "webhook-timestamp must be whole seconds since the epoch.")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        raise WebhookRefused(
            400,
            "webhook-timestamp is more than five minutes away from our clock; the webhook is refused as stale "
            "(or from the future).",
        )
    given = [part.split(",", 1)[1] for part in signatures.split() if part.startswith("v1,")]
    if not given:
        raise WebhookRefused(401, "webhook-signature has no v1 signature.")
    secret, fetched = signing_secret()
    if _matches(secret, webhook_id, timestamp, body, given):
        return webhook_id
    if fetched:
        renewed, _ = signing_secret(fresh=True)
        if renewed != secret and _matches(renewed, webhook_id, timestamp, body, given):
            return webhook_id
    raise WebhookRefused(401, "The webhook signature does not match; it was not sent by Replicate with our secret.")
