"""A refused job leaves no image behind, and uploads that never got a job are swept away."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from jobs import views
from jobs.models import Upload
from jobs.sweeper import discard_orphan_uploads
from tests.api_helpers import image_file, key_client
from tests.factories import UserFactory, make_job, make_upload

pytestmark = pytest.mark.django_db


def stored_files(folder: str = "") -> list[str]:
    """Every file in the storage (each test has its own MEDIA_ROOT or bucket prefix)."""
    if not default_storage.exists(folder):
        return []
    folders, files = default_storage.listdir(folder)
    found = [f"{folder}{name}" for name in files]
    for sub in folders:
        found += stored_files(f"{folder}{sub}/")
    return found


def test_a_start_refused_for_credits_after_the_image_was_read_keeps_nothing():
    client = key_client(credits=0)
    response = client.post("/api/img2video", {"image": image_file()}, format="multipart")
    assert response.status_code == 402
    assert Upload.objects.count() == 0
    assert stored_files() == []


def test_a_dashboard_submit_that_loses_a_credit_race_keeps_nothing(client, monkeypatch):
    user = UserFactory(credits=0)
    client.force_login(user)
    # As if another tab spent the last credit between the page's check and the hold.
    monkeypatch.setattr(views, "balance_of", lambda user: 1)
    form = {"framing": "auto", "provider": "local", "motion_bucket_id": "160", "seed_mode": "random"}
    response = client.post(reverse("home"), {**form, "cfg_scale": "2.0", "image": image_file()})
    assert response.status_code == 402
    assert Upload.objects.count() == 0
    assert stored_files() == []


def test_an_upload_that_never_got_a_job_is_deleted_with_its_files_after_an_hour():
    user = UserFactory()
    orphan = make_upload(user)
    Upload.objects.filter(pk=orphan.pk).update(created_at=timezone.now() - timedelta(hours=2))
    fresh = make_upload(user)
    used = make_job(user).upload
    Upload.objects.filter(pk=used.pk).update(created_at=timezone.now() - timedelta(hours=2))
    orphan_files = [orphan.original, orphan.normalized]

    assert discard_orphan_uploads() == 1

    assert set(Upload.objects.values_list("pk", flat=True)) == {fresh.pk, used.pk}
    assert not any(default_storage.exists(field.name) for field in orphan_files)
    assert default_storage.exists(fresh.original.name) and default_storage.exists(used.normalized.name)
