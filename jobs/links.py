"""Signed, expiring links to a job's files.

A token signs "<object id>:<kind>" with the site's secret and a timestamp, so a
link works without credentials until ``RESULT_LINK_SECONDS`` have passed and
opens only the one file it was made for: the kind is part of what is signed,
so an API video link never opens a staff-only file, and the other way round.
"""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.urls import reverse

SALT = "i2v.result-link"
IMAGE = "public-image"  # the kind of an upload's normalised image


def sign(object_id, kind: str) -> str:
    return signing.TimestampSigner(salt=SALT).sign(f"{object_id}:{kind}")


def check(object_id, kind: str, token: str) -> bool:
    try:
        value = signing.TimestampSigner(salt=SALT).unsign(token, max_age=settings.RESULT_LINK_SECONDS)
    except signing.BadSignature:
        return False
    return value == f"{object_id}:{kind}"


def public_image_url(upload) -> str:
    """An absolute, expiring link to ``upload``'s normalised image under
    ``PUBLIC_BASE_URL``, for a provider that fetches its input by URL; "" when
    the install has no public address."""
    if not settings.PUBLIC_BASE_URL:
        return ""
    path = reverse("public-image", args=[upload.pk])
    return f"{settings.PUBLIC_BASE_URL}{path}?token={sign(upload.pk, IMAGE)}"


def provider_image_url(upload) -> str:
    """The URL a provider should fetch ``upload`` from: our signed link to the
    normalised frame when the install is public, else the URL the image came
    from (as the original I2V API passed it), else ""."""
    return public_image_url(upload) or upload.source_url
