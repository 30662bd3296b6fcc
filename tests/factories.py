"""Factories: users, images made in memory, uploads and jobs."""

from __future__ import annotations

import io

import factory
import numpy as np
from django.contrib.auth import get_user_model
from PIL import Image

from jobs import ledger
from jobs.creation import create_job, create_upload


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = "correct horse battery"

    @classmethod
    def _create(cls, model_class, *args, credits: int = 100, **kwargs):
        user = model_class.objects.create_user(*args, **kwargs)
        ledger.open_account(user, starting=credits)
        return user


def photo_bytes(width: int = 1200, height: int = 700, fmt: str = "JPEG", seed: int = 1) -> bytes:
    """A photo-like image: gradients, shapes and noise, so motion is visible."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    r = (x / width * 255).astype(np.uint8)
    g = (y / height * 255).astype(np.uint8)
    b = ((np.sin(x / 23.0) * np.cos(y / 17.0) + 1) * 127).astype(np.uint8)
    pixels = np.dstack([r, g, b])
    for _ in range(12):
        cx, cy, rad = rng.integers(0, width), rng.integers(0, height), rng.integers(20, 120)
        mask = (x - cx) ** 2 + (y - cy) ** 2 < rad**2
        pixels[mask] = rng.integers(0, 255, size=3)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def make_upload(owner, *, width: int = 1200, height: int = 700, framing: str | None = None):
    return create_upload(owner=owner, source=photo_bytes(width, height), filename="photo.jpg", framing=framing)


def make_job(owner=None, *, enqueue: bool = False, **params):
    owner = owner or UserFactory()
    upload = params.pop("upload", None) or make_upload(owner)
    return create_job(owner=owner, upload=upload, enqueue=enqueue, **params)
