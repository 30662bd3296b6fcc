"""Shared by the API tests: a client holding a real API key."""

from __future__ import annotations

import io
import shutil

from django.conf import settings
from rest_framework.test import APIClient

from jobs.apikeys import create_api_key
from tests.factories import UserFactory, photo_bytes


def key_client(user=None, **user_fields) -> APIClient:
    user = user or UserFactory(**user_fields)
    _, full = create_api_key(user=user, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {full}")
    client.user = user
    client.raw_key = full
    return client


def image_file(name: str = "photo.jpg", **kwargs) -> io.BytesIO:
    handle = io.BytesIO(photo_bytes(**kwargs))
    handle.name = name
    return handle


def reset_budgets() -> None:
    """Give every user and address a full request budget again: in their files,
    or in the shared cache when budgets are counted there (``CACHE_URL=redis://``,
    the scale configuration), where they would outlast a test or an example."""
    from django.core.cache import cache

    from jobs.api import ratelimit

    shutil.rmtree(settings.RATE_LIMIT_DIR, ignore_errors=True)
    if not isinstance(ratelimit.counter(), ratelimit.FileCounter):
        cache.clear()
