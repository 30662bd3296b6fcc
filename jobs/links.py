"""Signed, expiring links to a job's files.

A token signs "<object id>:<kind>" with the site's secret and a timestamp, so a
link works without credentials until ``RESULT_LINK_SECONDS`` have passed and
opens only the one file it was made for: the kind is part of what is signed,
so an API video link never opens a staff-only file, and the other way round.
"""

from __future__ import annotations

from django.conf import settings
from django.core import signing

SALT = "i2v.result-link"


def sign(object_id, kind: str) -> str:
    return signing.TimestampSigner(salt=SALT).sign(f"{object_id}:{kind}")


def check(object_id, kind: str, token: str) -> bool:
    try:
        value = signing.TimestampSigner(salt=SALT).unsign(token, max_age=settings.RESULT_LINK_SECONDS)
    except signing.BadSignature:
        return False
    return value == f"{object_id}:{kind}"
