"""Idempotency-Key on create, per the IETF httpapi draft."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from jobs.models import IdempotencyRecord, Job
from tests.api_helpers import image_file, key_client

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


def test_a_repeat_while_the_first_is_in_progress_is_409():
    api = key_client()
    first = post(api, "k-3", seed=5)
    IdempotencyRecord.objects.filter(key="k-3").update(response_status=None, response_body=None)
    response = post(api, "k-3", seed=5)
    assert response.status_code == 409 and response["Retry-After"] == "1"
    assert first.status_code == 201


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
