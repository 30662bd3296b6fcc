"""API keys: made once, stored as a hash, told apart by their prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.utils import timezone

from jobs.models import ApiKey
from jobs.prepared_reads import PreparedRead

KEY_PREFIX = "i2v_"
# Writing last_used_at on every request would make each API call a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(*, user, name: str = "") -> tuple[ApiKey, str]:
    """Return the stored key and the full key, which is never shown again."""
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    full = f"{KEY_PREFIX}{prefix}_{secret}"
    key = ApiKey.objects.create(user=user, name=name[:100], prefix=prefix, key_hash=_hash(full))
    return key, full


def authenticate_key(raw: str) -> ApiKey | None:
    """The active key matching ``raw``, or None; constant-time comparison.
    Notes the key's use (``note_use``)."""
    key = find_key(raw)
    if key is not None:
        note_use(key)
    return key


def find_key(raw: str) -> ApiKey | None:
    """``authenticate_key`` without noting the use: for a caller that may still
    refuse the request (an address that sent too many wrong keys)."""
    # A NUL cannot be in a key we made, and PostgreSQL refuses it in a query (a 500, not a 401).
    if not raw.startswith(KEY_PREFIX) or raw.count("_") < 2 or "\x00" in raw:
        return None
    prefix = raw[len(KEY_PREFIX) :].split("_", 1)[0]
    key = _KEY_BY_PREFIX.first(prefix=prefix)
    if key is None or not hmac.compare_digest(key.key_hash, _hash(raw)) or not key.user.is_active:
        return None
    return key


# The prefix is unique: one row at most. Built once, as every API call runs it.
_KEY_BY_PREFIX = PreparedRead(
    ApiKey,
    lambda prefix: ApiKey.objects.active().select_related("user").filter(prefix=prefix).order_by()[:1],
    "prefix",
)


def note_use(key: ApiKey) -> None:
    """Keep ``last_used_at`` to the minute."""
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now


def rename_api_key(key: ApiKey, name: str) -> bool:
    """Give ``key`` a new name; False when it was revoked, since a revoked key
    keeps its name as the record of what it was."""
    renamed = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(name=name[:100])
    key.refresh_from_db()
    return bool(renamed)


def revoke_api_key(key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    key.refresh_from_db()
