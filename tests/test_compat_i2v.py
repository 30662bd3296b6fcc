"""The I2V-API-compatible endpoint: POST /api/v1/i2v, as the original answered it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from jobs.models import CallbackTarget, Job
from tests.api_helpers import key_client
from tests.factories import UserFactory, make_job, photo_bytes
from tests.fakes.image_server import ImageServer

pytestmark = pytest.mark.django_db

PHOTO = photo_bytes(900, 600, fmt="PNG")


@pytest.fixture
def images(settings):
    with ImageServer(PHOTO) as server:
        settings.SAFE_FETCH_ALLOW = (server.address,)
        yield server


def post(client, body, request_id: str | None = "req-1", **headers):
    if request_id is not None:
        headers["HTTP_X_REQUEST_ID"] = request_id
    return client.post("/api/v1/i2v", json.dumps(body), content_type="application/json", **headers)


def test_a_request_starts_a_job_and_answers_exactly_the_originals_body(images):
    client = key_client()
    response = post(client, {"image_id": f"{images.base_url}/photos/cat.png"}, "abc-123")
    assert response.status_code == 200
    assert response.json() == {
        "message": "Video generation pipeline initialized | ETA: 5-7 minutes",
        "request_id": "abc-123",
    }
    assert list(response.json()) == ["message", "request_id"]
    job = Job.objects.get()
    assert job.request_id == "abc-123" and job.provider == "local" and job.owner == client.user
    assert job.upload.original_name == "cat.png"
    assert images.hits == ["/photos/cat.png"]


def test_html_escaped_characters_in_the_image_id_are_unescaped_first(images):
    escaped = f"{images.base_url}&#x2F;photos&#x2F;cat.png?size&#x3D;large&amp;v=2"
    assert post(key_client(), {"image_id": escaped}).status_code == 200
    assert images.hits == ["/photos/cat.png?size=large&v=2"]


def test_the_key_may_come_as_x_api_key(images):
    client = key_client()
    response = post(APIClient(), {"image_id": f"{images.base_url}/a.png"}, HTTP_X_API_KEY=client.raw_key)
    assert response.status_code == 200
    assert Job.objects.get().owner == client.user


def test_without_a_key_the_answer_is_401_in_fastapis_shape(images):
    response = post(APIClient(), {"image_id": f"{images.base_url}/a.png"})
    assert response.status_code == 401
    assert "x-api-key" in response.json()["detail"]
    assert response["WWW-Authenticate"] == 'Bearer realm="i2v"'
    assert images.hits == [] and not Job.objects.exists()


def test_a_wrong_key_is_401():
    response = post(APIClient(), {"image_id": "https://example.com/a.png"}, HTTP_X_API_KEY="i2v_nope_nope")
    assert response.status_code == 401
    assert response.json() == {"detail": "The API key is missing, wrong or revoked."}


def test_the_same_request_id_twice_starts_one_job_and_answers_the_same_body(images):
    client = key_client()
    first = post(client, {"image_id": f"{images.base_url}/a.png"}, "same")
    # Meanwhile history exists that would change the ETA; the answer stays the first one.
    for _ in range(3):
        job = make_job(client.user, provider="local")
        Job.objects.filter(pk=job.pk).update(status=Job.COMPLETED, finished_at=job.created_at + timedelta(minutes=12))
    second = post(client, {"image_id": f"{images.base_url}/b.png"}, "same")
    assert second.status_code == 200
    assert second.content == first.content
    assert Job.objects.filter(request_id="same").count() == 1
    assert images.hits == ["/a.png"]


def test_the_same_request_id_from_another_caller_is_another_job(images):
    post(key_client(), {"image_id": f"{images.base_url}/a.png"}, "shared")
    assert post(key_client(), {"image_id": f"{images.base_url}/a.png"}, "shared").status_code == 200
    assert Job.objects.filter(request_id="shared").count() == 2


def test_a_missing_request_id_header_is_422_like_fastapi():
    response = post(key_client(), {"image_id": "https://example.com/a.png"}, request_id=None)
    assert response.status_code == 422
    assert response.json() == {
        "detail": [{"loc": ["header", "x-request-id"], "msg": "field required", "type": "value_error.missing"}]
    }


def test_a_body_without_image_id_is_422_like_fastapi():
    response = post(key_client(), {"image": "https://example.com/a.png"})
    assert response.status_code == 422
    assert response.json() == {
        "detail": [{"loc": ["body", "image_id"], "msg": "field required", "type": "value_error.missing"}]
    }


def test_a_body_that_is_not_json_is_422():
    client = key_client()
    response = client.post("/api/v1/i2v", "{nope", content_type="application/json", HTTP_X_REQUEST_ID="r")
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "value_error.jsondecode"


@pytest.mark.parametrize(
    "url, words",
    [
        ("ftp://example.com/a.png", "http"),
        ("http://127.0.0.1:9/a.png", "private or local address"),
        ("http://169.254.169.254/latest/meta-data", "private or local address"),
        ("", "image_id is empty"),
    ],
)
def test_an_image_url_that_is_not_public_http_is_400_with_a_message(url, words):
    response = post(key_client(), {"image_id": url})
    assert response.status_code == 400
    assert words in response.json()["detail"]
    assert not Job.objects.exists()


def test_an_over_long_request_id_is_400():
    response = post(key_client(), {"image_id": "https://example.com/a.png"}, "x" * 129)
    assert response.status_code == 400
    assert "x-request-id" in response.json()["detail"]


def test_a_caller_without_credits_gets_402_before_the_image_is_fetched(images):
    client = key_client(UserFactory(credits=0))
    response = post(client, {"image_id": f"{images.base_url}/a.png"})
    assert response.status_code == 402
    assert "credits" in response.json()["detail"].lower()
    assert images.hits == []


def test_an_unusable_provider_is_503_not_500(images, settings):
    settings.I2V_COMPAT_PROVIDER = "nonesuch"
    response = post(key_client(), {"image_id": f"{images.base_url}/a.png"})
    assert response.status_code == 503
    assert "not available" in response.json()["detail"]


def test_the_eta_comes_from_recent_jobs_of_the_provider(images):
    owner = UserFactory()
    now = timezone.now()
    for minutes in (2.0, 2.2, 2.4, 2.5, 2.6, 3.0, 3.5, 4.0, 6.5, 8.0):
        job = make_job(owner, provider="local")
        Job.objects.filter(pk=job.pk).update(
            status=Job.COMPLETED, created_at=now - timedelta(minutes=minutes), finished_at=now
        )
    response = post(key_client(owner), {"image_id": f"{images.base_url}/a.png"})
    # Median 2.75 min -> 3; 90th percentile 6.65 min -> 7.
    assert response.json()["message"] == "Video generation pipeline initialized | ETA: 3-7 minutes"


def test_a_job_with_a_callback_target_remembers_where_links_start(images, settings):
    settings.PUBLIC_BASE_URL = "https://i2v.example.com"
    settings.CALLBACK_API_URL = "https://game.example.com/requests"
    post(key_client(), {"image_id": f"{images.base_url}/a.png"}, "r/1")
    target = CallbackTarget.objects.get()
    assert target.url == "https://game.example.com/requests/r%2F1/callback"
    assert target.public_base_url == "https://i2v.example.com"


def test_without_public_base_url_links_start_at_the_requests_host(images):
    post(key_client(), {"image_id": f"{images.base_url}/a.png"}, HTTP_HOST="localhost")
    assert CallbackTarget.objects.get().public_base_url == "http://localhost"


def test_a_callback_url_with_a_placeholder_gets_the_request_id(images, settings):
    settings.CALLBACK_API_URL = "https://game.example.com/hooks?id={request_id}"
    post(key_client(), {"image_id": f"{images.base_url}/a.png"}, "r-9")
    assert CallbackTarget.objects.get().url == "https://game.example.com/hooks?id=r-9"


def test_get_is_405_in_fastapis_shape():
    response = key_client().get("/api/v1/i2v")
    assert response.status_code == 405
    assert response.json() == {"detail": 'Method "GET" not allowed.'}


def test_root_answers_the_originals_api_information_for_json_clients(client):
    body = client.get("/", HTTP_ACCEPT="application/json").json()
    assert body["endpoints"]["i2v"] == "/api/v1/i2v"
    assert body["message"] and body["endpoints"]["jobs"] == "/api/v1/jobs"


# --- the documented examples are real answers ------------------------------------------------


def documented_examples() -> dict[tuple[str, str], object]:
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/v1/i2v"]["post"]
    return {
        (status, example["summary"]): example["value"]
        for status, response in operation["responses"].items()
        for example in response["content"]["application/json"]["examples"].values()
    }


def test_the_documented_examples_are_the_bodies_the_endpoint_really_answers(images, settings):
    examples = documented_examples()
    client = key_client()
    url = f"{images.base_url}/a.png"
    real = {
        ("200", "Started"): post(client, {"image_id": url}, "your-request-id"),
        ("400", "Not http"): post(client, {"image_id": "ftp://example.com/a.png"}),
        ("400", "Empty URL"): post(client, {"image_id": ""}),
        ("400", "Bad request id"): post(client, {"image_id": url}, "é"),
        ("401", "No key"): post(APIClient(), {"image_id": url}),
        ("401", "Wrong or revoked key"): post(APIClient(), {"image_id": url}, HTTP_X_API_KEY="i2v_nope_nope"),
        ("415", "Not JSON"): client.post("/api/v1/i2v", "x", content_type="text/plain", HTTP_X_REQUEST_ID="r"),
        ("422", "No x request id"): post(client, {"image_id": url}, request_id=None),
        ("422", "No image id"): post(client, {}),
        ("422", "Not JSON"): client.post("/api/v1/i2v", "nope", content_type="application/json", HTTP_X_REQUEST_ID="r"),
    }
    same_shape = {
        ("400", "Private address"): post(client, {"image_id": "http://10.0.0.5/a.png"}),
        ("402", "Not enough credits"): post(key_client(UserFactory(credits=0)), {"image_id": url}),
    }
    settings.MAX_UPLOAD_BYTES = 1000
    same_shape[("413", "Image too large")] = post(client, {"image_id": url}, "big")
    settings.I2V_COMPAT_PROVIDER = "pika"
    same_shape[("503", "Not available")] = post(client, {"image_id": url}, "r-503")
    for (status, name), response in {**real, **same_shape}.items():
        assert str(response.status_code) == status, (name, response.json())
        example = examples[(status, name)]
        if (status, name) in real:
            assert response.json() == example, name
        else:
            assert type(response.json()["detail"]) is type(example["detail"]), name
    assert examples[("413", "Image too large")]["detail"] == "image_id is larger than the 10 MB limit."
