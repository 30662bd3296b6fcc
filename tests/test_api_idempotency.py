"""Idempotency-Key on create, per the IETF httpapi draft."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from jobs import creation
from jobs.api import idempotency
from jobs.models import Job, Upload
from tests.api_helpers import image_file, key_client
from tests.factories import photo_bytes
from tests.processes import database_url, shared_files_env

pytestmark = pytest.mark.django_db


def post(api, key, **fields):
    fields.setdefault("image", image_file())
    fields.setdefault("provider", "local")
    return api.post("/api/v1/jobs", fields, format="multipart", HTTP_IDEMPOTENCY_KEY=key)


def test_a_repeat_with_the_same_key_and_body_replays_the_first_answer():
    api = key_client()
    first = post(api, "k-1", seed=5)
    second = post(api, "k-1", seed=5)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == 1


def test_the_same_key_with_another_body_is_422():
    api = key_client()
    post(api, "k-2", seed=5)
    response = post(api, "k-2", seed=6)
    assert response.status_code == 422
    assert "different request body" in response.json()["error"]["message"]
    assert Job.objects.count() == 1


def test_keys_are_scoped_to_the_caller():
    a, b = key_client(), key_client()
    assert post(a, "shared", seed=1).status_code == 201
    assert post(b, "shared", seed=2).status_code == 201
    assert Job.objects.count() == 2


def test_a_refused_request_leaves_the_key_free_for_a_corrected_retry():
    api = key_client()
    assert post(api, "k-4", cfg_scale=99).status_code == 400
    assert post(api, "k-4", cfg_scale=2).status_code == 201


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_creates_with_one_key_make_one_job():
    api = key_client(credits=100)
    results: list[int] = []
    barrier = threading.Barrier(20)

    def send():
        try:
            barrier.wait()
            results.append(post(api, "burst", seed=9).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert Job.objects.count() == 1
    assert results.count(201) >= 1
    assert set(results) <= {201, 409}
    assert len(results) == 20


# --- a create in progress, a create that died, a create that outlived its lease ------------


@pytest.fixture
def later(monkeypatch):
    """Move the key store's clock forward, as if that many seconds had passed."""

    class Clock:
        offset = timedelta(0)

        def now(self):
            return timezone.now() + self.offset

    clock = Clock()
    monkeypatch.setattr(idempotency, "timezone", clock)

    def advance(seconds: float) -> None:
        clock.offset += timedelta(seconds=seconds)

    return advance


class HeldCreate:
    """A create running in a thread, held just before its image is stored until released."""

    def __init__(self, monkeypatch, api, key: str, **fields) -> None:
        self.reached, self.release = threading.Event(), threading.Event()
        self.response = None
        store = creation.create_upload

        def held_store(**kwargs):
            if threading.current_thread() is self.thread:
                self.reached.set()
                assert self.release.wait(60), "the test never released the held create"
            return store(**kwargs)

        monkeypatch.setattr(creation, "create_upload", held_store)

        def run():
            try:
                self.response = post(api, key, **fields)
            finally:
                connection.close()

        self.thread = threading.Thread(target=run)
        self.thread.start()
        assert self.reached.wait(60), "the create never reached the image store"

    def finish(self):
        self.release.set()
        self.thread.join(60)
        return self.response


@pytest.mark.django_db(transaction=True)
def test_a_repeat_while_the_first_is_in_progress_is_409(monkeypatch):
    api = key_client()
    first = HeldCreate(monkeypatch, api, "k-3", seed=5)
    response = post(api, "k-3", seed=5)
    assert response.status_code == 409 and response["Retry-After"] == "1"
    assert "still being handled" in response.json()["error"]["message"]
    assert first.finish().status_code == 201
    assert post(api, "k-3", seed=5)["Idempotent-Replayed"] == "true"


@pytest.mark.django_db(transaction=True)
def test_a_request_that_outlives_its_lease_yields_to_the_retry_and_makes_no_second_job(monkeypatch, later):
    api = key_client()
    slow = HeldCreate(monkeypatch, api, "k-slow", seed=5)
    later(settings_lease() + 1)
    retry = post(api, "k-slow", seed=5)
    assert retry.status_code == 201
    late = slow.finish()
    assert late.status_code == 409
    assert "took over" in late.json()["error"]["message"]
    assert Job.objects.count() == 1 and Upload.objects.count() == 1  # the late one's image is gone too
    assert post(api, "k-slow", seed=5).json()["id"] == retry.json()["id"]


def settings_lease() -> int:
    from django.conf import settings

    return settings.IDEMPOTENCY_LEASE_SECONDS


CRASHING_CREATE = """
import os, sys, django
django.setup()
from rest_framework.test import APIClient
from jobs import creation
from jobs.api import idempotency

def die(*args, **kwargs):
    os._exit(3)  # as a killed worker: no cleanup, no answer

if sys.argv[1] == "after-job":
    idempotency.Claim.store = die  # the job is committed; the answer is never stored
else:
    creation.create_upload = die  # dies while storing the image, before any job
client = APIClient()
client.credentials(HTTP_AUTHORIZATION="Bearer " + sys.argv[2])
with open(sys.argv[3], "rb") as image:
    client.post("/api/v1/jobs", {"image": image, "provider": "local", "seed": 7}, format="multipart",
                HTTP_IDEMPOTENCY_KEY="crash-key")
os._exit(0)
"""


def crash_a_create(settings, tmp_path, api, when: str) -> None:
    """Send a create with key "crash-key" from another process that dies mid-request."""
    image = tmp_path / "photo.jpg"
    image.write_bytes(photo_bytes())
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "i2v_site.settings",
        "DATABASE_URL": database_url(),
        "I2V_VAR_DIR": str(tmp_path / "var"),
        "I2V_ENV_FILE": str(tmp_path / "none.env"),
        **shared_files_env(settings),
        "SECRET_KEY": settings.SECRET_KEY,
        "ALLOWED_HOSTS": "testserver",
        "IDEMPOTENCY_LEASE_SECONDS": str(settings.IDEMPOTENCY_LEASE_SECONDS),
    }
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_CREATE, when, api.raw_key, str(image)],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr.decode()[-3000:]


def retry(api):
    handle = io.BytesIO(photo_bytes())
    handle.name = "photo.jpg"
    return api.post(
        "/api/v1/jobs",
        {"image": handle, "provider": "local", "seed": 7},
        format="multipart",
        HTTP_IDEMPOTENCY_KEY="crash-key",
    )


@pytest.mark.django_db(transaction=True)
def test_a_create_that_died_after_making_its_job_is_answered_with_that_job_once_the_lease_ends(
    settings, tmp_path, later
):
    api = key_client()
    crash_a_create(settings, tmp_path, api, "after-job")
    made = Job.objects.get()
    assert retry(api).status_code == 409  # within the lease: it might still be running
    later(settings.IDEMPOTENCY_LEASE_SECONDS + 1)
    answer = retry(api)
    assert answer.status_code == 201
    assert answer.json()["id"] == str(made.pk)
    assert answer["Location"] == f"/api/v1/jobs/{made.pk}"
    assert Job.objects.count() == 1
    assert retry(api).json()["id"] == str(made.pk)  # stored now: replayed
    assert api.get("/api/v1/credits").json()["balance"] == 100 - made.cost  # held once


@pytest.mark.django_db(transaction=True)
def test_a_create_that_died_before_making_a_job_is_handled_afresh_once_the_lease_ends(settings, tmp_path, later):
    api = key_client()
    crash_a_create(settings, tmp_path, api, "before-job")
    assert Job.objects.count() == 0
    assert retry(api).status_code == 409
    later(settings.IDEMPOTENCY_LEASE_SECONDS + 1)
    answer = retry(api)
    assert answer.status_code == 201
    assert [str(pk) for pk in Job.objects.values_list("pk", flat=True)] == [answer.json()["id"]]
    assert retry(api).json()["id"] == answer.json()["id"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_after_a_crash_make_no_second_job(settings, tmp_path, later):
    api = key_client()
    crash_a_create(settings, tmp_path, api, "after-job")
    later(settings.IDEMPOTENCY_LEASE_SECONDS + 1)
    results: list[tuple[int, str | None]] = []
    barrier = threading.Barrier(8)

    def send():
        try:
            barrier.wait()
            response = retry(api)
            results.append((response.status_code, response.json().get("id")))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    made = Job.objects.get()
    assert len(results) == 8
    assert {code for code, _ in results} <= {201, 409}
    assert {job_id for code, job_id in results if code == 201} == {str(made.pk)}
