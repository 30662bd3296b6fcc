"""Where an image can come from besides a file upload: a URL or base64."""

from __future__ import annotations

import base64
import binascii
import re

from django.conf import settings

from jobs.creation import JobInputError

_DATA_URI = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?:;[\w=.+-]+)*;base64,", re.IGNORECASE)


def read_data_uri(text: str, *, field: str = "data_uri") -> bytes:
    """Decode ``data:image/…;base64,…`` or bare base64, refusing oversize input
    before decoding it."""
    text = text.strip()
    match = _DATA_URI.match(text)
    payload = text[match.end() :] if match else text
    if text.startswith("data:") and not match:
        raise JobInputError(field, f"{field} must be base64: data:image/png;base64,<data>.")
    payload = "".join(payload.split())
    limit = settings.MAX_UPLOAD_BYTES
    if len(payload) * 3 // 4 > limit + 2:
        raise JobInputError(
            field, f"The image is too large; images must be {limit / (1024 * 1024):g} MB or smaller.", "too_large"
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise JobInputError(field, f"{field} is not valid base64.") from None


def fetch_image_url(url: str, *, field: str = "image_url") -> bytes:
    """Download an image from a public URL, safely (see providers.safe_fetch)."""
    from providers.safe_fetch import FetchRefused, fetch

    try:
        return fetch(url, max_bytes=settings.MAX_UPLOAD_BYTES, deadline=20.0, field=field).content
    except FetchRefused as exc:
        raise JobInputError(field, exc.message, exc.code) from None
