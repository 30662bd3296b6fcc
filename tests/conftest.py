"""Shared test setup: files under a temporary MEDIA_ROOT, the pipeline run
in-process (django-q2 sync mode) unless a test starts a real worker."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import pytest
from django_q.conf import Conf


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    if getattr(settings, "AWS_STORAGE_BUCKET_NAME", ""):
        # One folder of the bucket per test, as MEDIA_ROOT is one per test.
        settings.AWS_LOCATION = f"tests/{tmp_path.name}-{uuid.uuid4().hex[:8]}"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.WORK_DIR = tmp_path / "work"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _fresh_request_budgets(settings, tmp_path):
    # Every test starts with full budgets (per user, and per address for wrong keys).
    settings.RATE_LIMIT_DIR = tmp_path / "ratelimit"


@pytest.fixture(autouse=True)
def _budget_windows_hold_still(monkeypatch):
    # Budgets count in fixed windows: a test that happened to cross a minute's
    # end saw its budget filled again and its 429 never came. In this process
    # the budgets' clock stays at the test's start (servers a test starts keep
    # the real one, and their tests use hour-long windows).
    from jobs.api import ratelimit

    started = time.time()
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: started))


@pytest.fixture(autouse=True)
def _fresh_shared_cache(settings):
    # A shared cache server (CACHE_URL=redis://...) keeps budgets between
    # tests; its database is this suite's own, so it is emptied for each test.
    if not settings.CACHES["default"]["BACKEND"].endswith("FileBasedCache"):
        from django.core.cache import cache

        cache.clear()


@pytest.fixture(autouse=True)
def _follow_storage_redirects(monkeypatch):
    from tests.storage_harness import follow_storage_redirects, storage_is_remote

    if storage_is_remote():
        follow_storage_redirects(monkeypatch)


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _sync_tasks(monkeypatch):
    # django-q2 reads Q_CLUSTER once at import; flip its switch directly.
    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def user():
    """A user with the default 100 credits; a test module may override it."""
    from tests.factories import UserFactory

    return UserFactory()


@pytest.fixture
def logged_in(client, user):
    """The test client, logged in as ``user``."""
    client.force_login(user)
    return client


# Fixtures shared by the tests that run real worker processes.
from tests.processes import cluster_factory  # noqa: E402, F401
