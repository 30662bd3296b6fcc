"""Standard Webhooks signatures, and the secrets that make them.

A secret is ``whsec_`` + base64 of 32 random bytes; the key is those bytes.
A signature is ``v1,`` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")),
with the timestamp in whole seconds since the epoch (UTC), the same value
sent in ``webhook-timestamp``. Several signatures go in one header, separated
by spaces: after a rotation, the new and the old secret both sign for
``ROTATION_OVERLAP``, so a receiver that still holds the old one keeps
verifying until it has switched. Secrets are read when an attempt is made,
never stored with a delivery, so a retry after a rotation is signed with
the secrets in force then.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from django.utils import timezone

PREFIX = "whsec_"
SECRET_BYTES = 32
ROTATION_OVERLAP = timedelta(hours=24)


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def new_msg_id() -> str:
    """A ``webhook-id``: unique per event and endpoint, the same on every retry."""
    return "msg_" + secrets.token_urlsafe(18)


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    digest = hmac.new(_key(secret), f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signing_secrets(holder, now: datetime | None = None) -> list[str]:
    """The secrets that sign now: the current one, and the previous one during its overlap."""
    now = now or timezone.now()
    found = [holder.secret]
    if holder.previous_secret and holder.previous_secret_until and holder.previous_secret_until > now:
        found.append(holder.previous_secret)
    return found


def headers(holder, msg_id: str, body: str, now: datetime | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt made ``now``."""
    now = now or timezone.now()
    timestamp = int(now.timestamp())
    signatures = " ".join(sign(secret, msg_id, timestamp, body) for secret in signing_secrets(holder, now))
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signatures}


def rotate(holder, now: datetime | None = None) -> str:
    """Give ``holder`` a new secret, keeping the current one signing for the overlap;
    returns the new secret (shown once). The caller saves ``holder``."""
    now = now or timezone.now()
    holder.previous_secret = holder.secret
    holder.previous_secret_until = now + ROTATION_OVERLAP
    holder.secret = new_secret()
    return holder.secret
