"""Signed, expiring links to a job's files.

A token signs "<object id>:<kind>" with the site's secret and a timestamp, so a
link works without credentials until ``RESULT_LINK_SECONDS`` have passed and
opens only the one file it was made for: the kind is part of what is signed,
so an API video link never opens a staff-only file, and the other way round.

A link that must outlive that (a callback's video link, which has to work for
the whole retention period) signs its own end instead: "<id>:<kind>:<until>",
with ``until`` in whole seconds since the epoch. The end is part of what is
signed, so it cannot be moved.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils import timezone

SALT = "i2v.result-link"
IMAGE = "public-image"  # the kind of an upload's normalised image


def sign(object_id, kind: str, *, until: datetime | None = None) -> str:
    """A token for ``kind`` of ``object_id``: valid ``RESULT_LINK_SECONDS``, or until ``until``."""
    value = f"{object_id}:{kind}"
    if until is not None:
        value = f"{value}:{int(until.timestamp())}"
    return signing.TimestampSigner(salt=SALT).sign(value)


def check(object_id, kind: str, token: str) -> bool:
    signer = signing.TimestampSigner(salt=SALT)
    try:
        value = signer.unsign(token)
    except signing.BadSignature:
        return False
    plain = f"{object_id}:{kind}"
    if value == plain:
        try:
            signer.unsign(token, max_age=settings.RESULT_LINK_SECONDS)
        except signing.SignatureExpired:
            return False
        return True
    head, _, until = value.rpartition(":")
    return head == plain and until.isdigit() and int(until) > timezone.now().timestamp()


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
