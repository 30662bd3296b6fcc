"""The native API's jobs: create three ways, list, detail, cancel, retry, files."""

from __future__ import annotations

import base64
import io
import time
from datetime import timedelta

import av
import pytest
from rest_framework.test import APIClient

from jobs import pipeline
from jobs.models import Job, Upload
from tests.api_helpers import image_file, key_client
from tests.factories import UserFactory, make_job, photo_bytes
from tests.fakes.fixtures import stability_server_fixture  # noqa: F401

pytestmark = pytest.mark.django_db


def create(client, capture=None, **fields):
    fields.setdefault("image", image_file())
    fields.setdefault("provider", "local")
    if capture is None:
        return client.post("/api/v1/jobs", fields, format="multipart")
    with capture(execute=True):
        return client.post("/api/v1/jobs", fields, format="multipart")


def test_a_call_without_a_key_is_refused_with_401_and_the_error_shape():
    response = APIClient().get("/api/v1/jobs")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert error["status"] == 401 and error["message"]


def test_a_wrong_or_revoked_key_is_refused():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer i2v_deadbeef_nope")
    assert client.get("/api/v1/jobs").json()["error"]["message"] == "The API key is missing, wrong or revoked."


def test_an_uploaded_image_becomes_a_video_reachable_by_a_signed_link(django_capture_on_commit_callbacks):
    client = key_client()
    response = create(client, django_capture_on_commit_callbacks, seed=7, motion_bucket_id=180, cfg_scale=2.5)
    assert response.status_code == 201, response.json()
    job_id = response.json()["id"]
    assert response["Location"].endswith(job_id)

    detail = client.get(f"/api/v1/jobs/{job_id}").json()
    assert detail["status"] == "completed"
    assert detail["parameters"]["seed"] == 7 and detail["seed_used"] == 7
    assert detail["parameters"]["motion_bucket_id"] == 180 and detail["parameters"]["cfg_scale"] == 2.5
    assert [e["to_status"] for e in detail["timeline"]][-1] == "completed"
    assert detail["error"] is None and detail["cost"] == 1

    anonymous = APIClient()  # a <video> tag sends no key: the link is enough
    video = anonymous.get(detail["video"]["url"])
    assert video.status_code == 200
    with av.open(io.BytesIO(b"".join(video.streaming_content))) as container:
        assert sum(1 for _ in container.decode(video=0)) == detail["video"]["frames"] >= 14
    partial = anonymous.get(detail["video"]["url"], HTTP_RANGE="bytes=0-99")
    assert partial.status_code == 206 and partial["Content-Range"].startswith("bytes 0-99/")
    assert anonymous.get(detail["video"]["poster_url"])["Content-Type"] == "image/jpeg"


def test_a_tampered_or_expired_link_is_not_found(django_capture_on_commit_callbacks, settings, monkeypatch):
    client = key_client()
    job_id = create(client, django_capture_on_commit_callbacks).json()["id"]
    url = client.get(f"/api/v1/jobs/{job_id}").json()["video"]["url"]
    assert APIClient().get(url[:-3] + "abc").status_code == 404
    other = make_job()
    assert APIClient().get(url.replace(job_id, str(other.pk))).status_code == 404

    settings.RESULT_LINK_SECONDS = 60
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + timedelta(minutes=5).total_seconds())
    assert APIClient().get(url).status_code == 404


def test_a_base64_data_uri_is_accepted(django_capture_on_commit_callbacks):
    client = key_client()
    encoded = base64.b64encode(photo_bytes(800, 800, fmt="PNG")).decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/jobs", {"data_uri": f"data:image/png;base64,{encoded}"}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["parameters"]["width"] == 768


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"cfg_scale": 11}, "cfg_scale", "from 0 to 10"),
        ({"motion_bucket_id": 0}, "motion_bucket_id", "from 1 to 255"),
        ({"seed": "abc"}, "seed", "valid integer"),
        ({"seed": 4294967295}, "seed", "seed must be from 0 to 4294967294."),
        ({"cfg_scale": -0.5}, "cfg_scale", "cfg_scale must be from 0 to 10."),
        ({"provider": "nope"}, "provider", "Unknown provider"),
        ({"model": "nope"}, "model", "Unknown model"),
        ({"framing": "panorama"}, "framing", "valid choice"),
        ({"image_url": "https://example.com/a.png"}, "image", "exactly one"),
    ],
)
def test_bad_parameters_get_a_400_naming_the_field(fields, field, words):
    response = create(key_client(), **fields)
    assert response.status_code == 400
    error = response.json()["error"]
    assert field in error["fields"]
    assert words in " ".join(error["fields"][field])
    assert Job.objects.count() == 0
    assert Upload.objects.count() == 0  # not even the image is kept


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("{not json", "JSON parse error"),
        ('{"data_uri": "%%%%"}', "not valid base64"),
        ('{"data_uri": "aGVsbG8="}', "JPEG or PNG"),
        ("[1, 2, 3]", "Expected a dictionary"),
    ],
)
def test_malformed_bodies_get_a_400_with_a_message(body, words):
    response = key_client().post("/api/v1/jobs", body, content_type="application/json")
    assert response.status_code == 400
    assert words in str(response.json()["error"])


def test_an_oversized_body_is_refused_with_413_before_it_is_read():
    client = key_client()
    response = client.post("/api/v1/jobs", b"x", content_type="application/json", CONTENT_LENGTH=str(50 * 1024 * 1024))
    assert response.status_code == 413
    assert "10 MB" in response.json()["error"]["message"]


def test_an_oversized_data_uri_is_refused():
    payload = "A" * (15 * 1024 * 1024)
    response = key_client().post("/api/v1/jobs", {"data_uri": payload}, format="json")
    assert response.status_code == 413


def test_an_image_over_the_cap_in_a_body_under_it_is_a_413_giving_its_size():
    big = io.BytesIO(b"\xff\xd8\xff" + b"\0" * (11 * 1024 * 1024))
    big.name = "huge.jpg"
    response = key_client().post("/api/v1/jobs", {"image": big}, format="multipart")
    assert response.status_code == 413
    assert response.json()["error"]["message"] == "The file is 11.0 MB; images must be 10 MB or smaller."
    assert response.json()["error"]["fields"] == {"image": ["The file is 11.0 MB; images must be 10 MB or smaller."]}


def test_a_job_the_caller_cannot_afford_is_a_402_with_balance_and_cost(stability_server):
    response = create(key_client(credits=5), provider="stability")
    assert response.status_code == 402
    error = response.json()["error"]
    assert (error["balance"], error["cost"]) == (5, 20)
    assert Job.objects.count() == 0


def test_the_list_shows_only_the_callers_jobs_newest_first_and_filters():
    client = key_client()
    mine = [make_job(client.user) for _ in range(3)]
    Job.objects.filter(pk=mine[0].pk).update(status=Job.FAILED)
    make_job()  # someone else's

    listing = client.get("/api/v1/jobs", {"page_size": 2}).json()
    assert listing["count"] == 3 and len(listing["results"]) == 2 and listing["next"]
    assert [j["id"] for j in listing["results"]] == [str(mine[2].pk), str(mine[1].pk)]
    failed = client.get("/api/v1/jobs", {"status": "failed"}).json()
    assert [j["id"] for j in failed["results"]] == [str(mine[0].pk)]
    assert client.get("/api/v1/jobs", {"provider": "stability"}).json()["count"] == 0


def test_another_users_job_is_404_everywhere(django_capture_on_commit_callbacks):
    owner = key_client()
    job_id = create(owner, django_capture_on_commit_callbacks).json()["id"]
    stranger = key_client()
    for method, path in [
        ("get", f"/api/v1/jobs/{job_id}"),
        ("post", f"/api/v1/jobs/{job_id}/cancel"),
        ("post", f"/api/v1/jobs/{job_id}/retry"),
        ("get", f"/api/v1/jobs/{job_id}/video"),
        ("get", f"/api/v1/jobs/{job_id}/poster"),
    ]:
        response = getattr(stranger, method)(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["status"] == 404
    assert owner.get(f"/api/v1/jobs/{job_id}/video").status_code == 200


def test_cancel_of_a_queued_job_works_and_of_a_finished_one_is_409(django_capture_on_commit_callbacks):
    client = key_client()
    queued = create(client).json()  # not handed to a worker in this test
    assert queued["cancellable"] is True
    response = client.post(f"/api/v1/jobs/{queued['id']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert response.json()["cancellable"] is False

    done = create(client, django_capture_on_commit_callbacks).json()["id"]
    refused = client.post(f"/api/v1/jobs/{done}/cancel")
    assert refused.status_code == 409
    assert "already completed" in refused.json()["error"]["message"]


def test_cancel_once_the_provider_cannot_stop_is_409(stability_server):
    stability_server.script.never_finish = True
    client = key_client()
    job_id = create(client, provider="stability").json()["id"]
    pipeline.advance(job_id)
    assert client.get(f"/api/v1/jobs/{job_id}").json()["cancellable"] is False  # so a client need not try
    response = client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert response.status_code == 409
    assert "cannot stop it" in response.json()["error"]["message"]


def test_retry_of_a_failed_job_makes_a_new_job_and_of_a_completed_one_is_409(stability_server):
    stability_server.script.content_moderation = True
    client = key_client()
    failed_id = create(client, provider="stability", seed=3).json()["id"]
    pipeline.advance(failed_id)
    stability_server.script.content_moderation = False

    retried = client.post(f"/api/v1/jobs/{failed_id}/retry")
    assert retried.status_code == 201
    assert retried.json()["id"] != failed_id and retried.json()["parameters"]["seed"] == 3
    pipeline.advance(retried.json()["id"])
    again = client.post(f"/api/v1/jobs/{retried.json()['id']}/retry")
    assert again.status_code == 409


def test_the_dashboard_session_can_use_the_api_too(client):
    user = UserFactory()
    client.force_login(user)
    assert client.get("/api/v1/credits").json() == {"balance": 100}
