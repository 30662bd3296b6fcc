"""The queue-style API (Pipelet's, fal's): create, every status shape, cancel,
the result in both output modes, errors, isolation, credits and idempotency."""

from __future__ import annotations

import base64
import io
import json
import uuid
from datetime import datetime

import av
import pytest
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from jobs import pipeline
from jobs.api.auth import PerUserThrottle
from jobs.compat import queue
from jobs.models import Job, QueueRequest
from providers.local import DURATION, LocalProvider
from providers.params import COMMON, Param
from providers.registry import PROVIDERS, provider_class
from tests.api_helpers import key_client
from tests.factories import photo_bytes
from tests.fakes.callback_receiver import FakeCallbackReceiver
from tests.fakes.fixtures import stability_server_fixture  # noqa: F401
from tests.pipeline_helpers import run_until_final

pytestmark = pytest.mark.django_db

PHOTO = base64.b64encode(photo_bytes(640, 360)).decode()
HEIGHT = Param("height", "choice", 480, "Pipelet's output height.", choices=(480, 720))


class PipeletLike(LocalProvider):
    """Renders like the local provider, but is known by Pipelet-style and Kling-style model ids
    (not the real ones, which the pipelet and kling providers declare)."""

    name = "pipeletlike"
    label = "Pipelet-like (tests)"
    models = ("wanlike-i2v", "wanlike-i2v-pro", "klinglike-video/v1/standard/image-to-video")
    parameters = (*COMMON, DURATION, HEIGHT)


class NotConfigured(PipeletLike):
    name = "notconfigured"
    label = "Not configured (tests)"
    models = ("wanlike-i2v-premium",)

    @classmethod
    def unavailable_reason(cls) -> str:
        return "PIPELET_API_KEY is not set."


@pytest.fixture
def pipelet_like(monkeypatch):
    # The registry as it will be once the pipelet provider is in: model ids declared by a provider.
    monkeypatch.setitem(PROVIDERS, "pipeletlike", "tests.test_compat_queue.PipeletLike")
    monkeypatch.setitem(PROVIDERS, "notconfigured", "tests.test_compat_queue.NotConfigured")
    provider_class.cache_clear()
    yield
    provider_class.cache_clear()


def queue_client(scheme: str = "Bearer", **user_fields) -> APIClient:
    client = key_client(**user_fields)
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {client.raw_key}")
    return client


def submit(client, model: str = "local", capture=None, headers: dict | None = None, **body):
    body.setdefault("prompt", "A cat wearing a superman cape")
    if "image_url" not in body:
        body.setdefault("data_uri", PHOTO)
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in (headers or {}).items()}
    send = lambda: client.post(f"/queue/{model}", json.dumps(body), content_type="application/json", **extra)  # noqa: E731
    if capture is None:
        return send()
    with capture(execute=True):
        return send()


def path_of(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[1].join(("/", ""))


def read_result(response) -> dict:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    if "Content-Length" in response:
        assert int(response["Content-Length"]) == len(content)
    return json.loads(content)


def frames_of(mp4: bytes) -> int:
    with av.open(io.BytesIO(mp4)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        return sum(1 for _ in container.decode(video=0))


# --- create -------------------------------------------------------------------------------


def test_a_pipelet_style_create_answers_the_request_id_and_three_absolute_urls():
    client = queue_client()
    response = submit(client, duration=2)
    assert response.status_code == 200, response.json()
    body = response.json()
    request_id = body["request_id"]
    base = f"http://testserver/queue/local/requests/{request_id}"
    assert body == {
        "request_id": request_id,
        "response_url": base,
        "status_url": f"{base}/status",
        "cancel_url": f"{base}/cancel",
    }
    job = Job.objects.get(pk=request_id)
    assert (job.provider, job.model, job.extra_params["duration"]) == ("local", "camera-motion", 2.0)
    assert job.prompt == "A cat wearing a superman cape"
    assert job.queue_request.model_id == "local" and job.queue_request.output == QueueRequest.OUTPUT_BASE64


def test_urls_start_at_public_base_url_when_it_is_set(settings):
    settings.PUBLIC_BASE_URL = "https://i2v.example.com"
    body = submit(queue_client()).json()
    assert body["status_url"] == f"https://i2v.example.com/queue/local/requests/{body['request_id']}/status"


def test_a_data_uri_with_its_data_prefix_and_line_breaks_is_accepted():
    wrapped = "\n".join(PHOTO[i : i + 76] for i in range(0, len(PHOTO), 76))
    response = submit(queue_client(), data_uri=f"data:image/jpeg;base64,{wrapped}")
    assert response.status_code == 200, response.json()


def test_an_image_url_is_fetched_like_the_native_apis(settings):
    from tests.fakes.image_server import ImageServer

    with ImageServer(photo_bytes(900, 600, fmt="PNG")) as images:
        settings.SAFE_FETCH_ALLOW = (images.address,)
        response = submit(queue_client(), image_url=f"{images.base_url}/cat.png")
    assert response.status_code == 200, response.json()
    assert Job.objects.get(pk=response.json()["request_id"]).upload.source_url.endswith("/cat.png")


def test_a_private_image_url_is_refused_with_a_message():
    response = submit(queue_client(), image_url="http://10.0.0.5/a.png")
    assert response.status_code == 422
    assert "private" in response.json()["detail"]


# --- status ---------------------------------------------------------------------------------


def test_a_waiting_request_is_in_queue_with_a_zero_based_position():
    client = queue_client()
    first, second = submit(client).json(), submit(client).json()
    for body, position in ((first, 0), (second, 1)):
        response = client.get(path_of(body["status_url"]))
        assert response.status_code == 202
        assert response.json() == {
            "status": "IN_QUEUE",
            **body,
            "queue_position": position,
            "statusMessages": {},
        }
        assert response["Cache-Control"] == "no-store"


def test_a_request_the_provider_queues_shows_the_providers_position():
    client = queue_client()
    body = submit(client).json()
    Job.objects.filter(pk=body["request_id"]).update(status=Job.SUBMITTED, queue_position=4)
    assert client.get(path_of(body["status_url"])).json()["queue_position"] == 3


def test_a_running_request_is_in_progress_with_its_progress_and_a_logs_key():
    client = queue_client()
    body = submit(client).json()
    Job.objects.filter(pk=body["request_id"]).update(
        status=Job.RUNNING, progress=0.45, status_message="Rendering 120 frames: 45%"
    )
    response = client.get(path_of(body["status_url"]))
    assert response.status_code == 202
    assert response.json() == {
        "status": "IN_PROGRESS",
        **body,
        "logs": None,
        "statusMessages": {"message": "PROCESSING", "detail_message": "Progress: 45% done (Rendering 120 frames: 45%)"},
    }
    for flag in ("true", "1", "True"):
        logs = client.get(path_of(body["status_url"]), {"logs": flag}).json()["logs"]
        assert [line["message"] for line in logs] == ["Job created; 1 credit(s) held"]
        assert set(logs[0]) == {"message", "level", "source", "timestamp"} and logs[0]["level"] == "INFO"
        assert datetime.fromisoformat(logs[0]["timestamp"].replace("Z", "+00:00"))
    assert client.get(path_of(body["status_url"]), {"logs": "false"}).json()["logs"] is None


def test_a_completed_request_is_200_with_its_timeline_and_metrics(django_capture_on_commit_callbacks):
    client = queue_client()
    body = submit(client, capture=django_capture_on_commit_callbacks, duration=1).json()
    response = client.get(path_of(body["status_url"]), {"logs": "true"})
    assert response.status_code == 200
    status = response.json()
    assert status["status"] == "COMPLETED" and status["response_url"] == body["response_url"]
    assert status["statusMessages"]["message"] == "COMPLETED"
    assert [line["message"] for line in status["logs"]][-1].startswith("Video ready")
    assert status["metrics"]["inference_time"] >= 0


def test_a_failed_request_says_why_and_a_fal_caller_sees_it_as_fal_reports_it(stability_server):
    stability_server.script.content_moderation = True
    bearer = queue_client()
    body = submit(bearer, "stability").json()
    pipeline.advance(body["request_id"])
    job = Job.objects.get(pk=body["request_id"])
    assert job.status == Job.FAILED

    status = bearer.get(path_of(body["status_url"]))
    assert status.status_code == 200
    assert status.json()["status"] == "FAILED"
    assert status.json()["statusMessages"] == {"message": "FAILED", "detail_message": job.error_message}
    assert status.json()["logs"] is None

    fal = APIClient()
    fal.credentials(HTTP_AUTHORIZATION=f"Key {bearer.raw_key}")
    seen = fal.get(path_of(body["status_url"])).json()
    assert (seen["status"], seen["error"], seen["error_type"]) == ("COMPLETED", job.error_message, "FAILED")
    assert "logs" in seen

    result = bearer.get(path_of(body["response_url"]))
    assert result.status_code == 422
    assert result.json() == {"detail": job.error_message, "status": "FAILED"}


# --- cancel -----------------------------------------------------------------------------------


def test_a_queued_request_is_cancelled_with_204_and_its_credits_come_back():
    client = queue_client()
    body = submit(client).json()
    assert client.get("/api/v1/credits").json()["balance"] == 99
    response = client.put(path_of(body["cancel_url"]))
    assert response.status_code == 204 and response.content == b""
    assert client.get("/api/v1/credits").json()["balance"] == 100
    status = client.get(path_of(body["status_url"])).json()
    assert status["status"] == "CANCELLED"
    assert status["statusMessages"]["message"] == "CANCELLED"
    assert client.put(path_of(body["cancel_url"])).status_code == 204  # again: it is cancelled
    result = client.get(path_of(body["response_url"]))
    assert result.status_code == 422 and result.json()["status"] == "CANCELLED"


def test_cancel_once_a_provider_that_cannot_stop_has_it_is_409_and_400_for_fal_callers(stability_server):
    stability_server.script.never_finish = True
    client = queue_client()
    body = submit(client, "stability").json()
    pipeline.advance(body["request_id"])
    response = client.put(path_of(body["cancel_url"]))
    assert response.status_code == 409
    assert "cannot stop it" in response.json()["detail"]
    assert response.json()["status"] == "IN_PROGRESS"
    # fal-client retries a 409 ten times before it gives up: its callers get 400 at once.
    client.credentials(HTTP_AUTHORIZATION=f"Key {client.raw_key}")
    assert client.put(path_of(body["cancel_url"])).status_code == 400
    assert Job.objects.get(pk=body["request_id"]).status != Job.CANCELLED


def test_cancel_of_a_completed_request_is_409(django_capture_on_commit_callbacks):
    client = queue_client()
    body = submit(client, capture=django_capture_on_commit_callbacks, duration=1).json()
    response = client.put(path_of(body["cancel_url"]))
    assert response.status_code == 409
    assert response.json() == {
        "detail": "This job is already completed; there is nothing to cancel.",
        "status": "COMPLETED",
    }


# --- result -----------------------------------------------------------------------------------


def test_the_result_is_the_mp4_as_base64_streamed_with_a_signed_link(django_capture_on_commit_callbacks):
    client = queue_client()
    body = submit(client, capture=django_capture_on_commit_callbacks, duration=1, seed=7).json()
    response = client.get(path_of(body["response_url"]))
    assert response.status_code == 200
    assert response.streaming and response["Content-Type"] == "application/json"
    result = read_result(response)
    mp4 = base64.b64decode(result["video"]["data_uri"], validate=True)
    assert frames_of(mp4) >= 12
    assert result["video"]["file_size"] == len(mp4) and result["video"]["content_type"] == "video/mp4"
    assert result["seed"] == 7
    # The link works with no key at all, and is the same video.
    linked = APIClient().get(path_of(result["video"]["url"]))
    assert linked.status_code == 200 and b"".join(linked.streaming_content) == mp4


def test_with_x_pipelet_output_binary_the_result_holds_the_link(django_capture_on_commit_callbacks):
    client = queue_client()
    body = submit(
        client, capture=django_capture_on_commit_callbacks, headers={"x-pipelet-output": "binary"}, duration=1
    ).json()
    result = client.get(path_of(body["response_url"])).json()
    video = result["video"]
    assert video["data_uri"] == video["data_url"] == video["url"]
    assert video["url"].startswith(f"http://testserver/api/v1/jobs/{body['request_id']}/video?token=")
    linked = APIClient().get(path_of(video["url"]))
    assert frames_of(b"".join(linked.streaming_content)) >= 12


def test_an_unknown_output_mode_is_refused():
    response = submit(queue_client(), headers={"x-pipelet-output": "gzip"})
    assert response.status_code == 422 and "x-pipelet-output" in response.json()["detail"]


class ShortReads(io.BytesIO):
    """A stored file whose reads come back short (as network storage may)."""

    def read(self, size=-1):
        return super().read(min(size, 1000) if size and size > 0 else 1000)


def test_the_base64_is_made_a_bounded_chunk_at_a_time_and_joins_up_whatever_the_reads_return():
    data = bytes(range(256)) * 1000 + b"tail"
    chunks = list(queue._base64_chunks(ShortReads(data)))
    assert b"".join(chunks) == base64.b64encode(data)
    assert max(len(chunk) for chunk in chunks) <= 4 * queue.CHUNK // 3
    chunks = list(queue._base64_chunks(io.BytesIO(data)))
    assert len(chunks) > 4 and max(len(chunk) for chunk in chunks) == 4 * queue.CHUNK // 3
    assert b"".join(chunks) == base64.b64encode(data)


def test_the_result_before_completion_is_400_saying_the_status():
    client = queue_client()
    body = submit(client).json()
    response = client.get(path_of(body["response_url"]))
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Request is still IN_QUEUE: poll its status_url until it is COMPLETED.",
        "status": "IN_QUEUE",
    }


def test_a_result_past_retention_is_410(django_capture_on_commit_callbacks):
    client = queue_client()
    body = submit(client, capture=django_capture_on_commit_callbacks, duration=1).json()
    Job.objects.filter(pk=body["request_id"]).update(status=Job.EXPIRED, video="")
    assert client.get(path_of(body["status_url"])).json()["statusMessages"]["message"] == "EXPIRED"
    response = client.get(path_of(body["response_url"]))
    assert response.status_code == 410 and "results are kept for 24 hours" in response.json()["detail"]


# --- model ids ----------------------------------------------------------------------------------


def test_a_model_id_a_provider_declares_goes_to_that_provider_with_its_parameters(pipelet_like):
    client = queue_client()
    response = submit(client, "wanlike-i2v-pro", duration=2, height=720)
    assert response.status_code == 200, response.json()
    job = Job.objects.get(pk=response.json()["request_id"])
    assert (job.provider, job.model) == ("pipeletlike", "wanlike-i2v-pro")
    assert job.extra_params == {"duration": 2.0, "height": 720}
    assert response.json()["status_url"].startswith("http://testserver/queue/wanlike-i2v-pro/requests/")


def test_a_model_id_with_slashes_works_and_its_request_is_found_under_fals_app_id_too(
    pipelet_like, django_capture_on_commit_callbacks
):
    client = queue_client()
    model = "klinglike-video/v1/standard/image-to-video"
    body = submit(client, model, django_capture_on_commit_callbacks, duration=1).json()
    assert body["status_url"] == f"http://testserver/queue/{model}/requests/{body['request_id']}/status"
    assert client.get(path_of(body["status_url"])).json()["status"] == "COMPLETED"
    # fal-client's status(app, id) and result(app, id) keep only the first two segments.
    assert client.get(f"/queue/klinglike-video/v1/requests/{body['request_id']}/status").status_code == 200
    assert client.get(f"/queue/klinglike-video/requests/{body['request_id']}/status").status_code == 404
    assert client.get(f"/queue/wanlike-i2v/requests/{body['request_id']}/status").status_code == 404


def test_a_known_model_whose_provider_is_not_configured_is_503_listing_what_is_available(pipelet_like):
    response = submit(queue_client(), "wanlike-i2v-premium")
    assert response.status_code == 503
    assert response.json()["detail"] == (
        "The model 'wanlike-i2v-premium' is not available on this server: PIPELET_API_KEY is not set. "
        "Model ids available here: local, camera-motion, pipeletlike, wanlike-i2v, wanlike-i2v-pro, "
        "klinglike-video/v1/standard/image-to-video."
    )


def test_an_unknown_model_id_is_404_listing_what_is_available():
    response = submit(queue_client(), "wan22-fast-t2v")
    assert response.status_code == 404
    assert response.json() == {
        "detail": "Unknown model id 'wan22-fast-t2v'. Model ids available here: local, camera-motion."
    }


def test_a_parameter_the_models_provider_does_not_take_is_refused_naming_it():
    response = submit(queue_client(), height=720)
    assert response.status_code == 422
    assert response.json()["detail"].startswith("Unknown field 'height': the model local takes prompt, ")


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"motoin": 3}, "Unknown field 'motoin'"),
        ({"data_uri": "not base64!!"}, "not valid base64"),
        ({"data_uri": base64.b64encode(b"%PDF-1.4 not an image").decode()}, "not a JPEG or PNG"),
        ({"data_uri": ""}, "exactly one of data_uri"),
        ({"image_url": "https://example.com/a.png", "data_uri": PHOTO}, "exactly one of data_uri"),
        ({"prompt": 5}, "prompt must be a string"),
        ({"duration": 30}, "duration must be from 1 to 10"),
        ({"seed": -1}, "seed must be"),
    ],
)
def test_a_body_that_cannot_be_used_is_422_with_a_message_naming_the_problem(body, words):
    client = queue_client()
    response = submit(client, **body)
    assert response.status_code == 422, response.json()
    assert words in response.json()["detail"]
    assert not Job.objects.exists()


def test_a_body_that_is_not_a_json_object_or_not_json_at_all_is_refused():
    client = queue_client()
    listed = client.post("/queue/local", "[1, 2]", content_type="application/json")
    assert listed.status_code == 422 and "JSON object" in listed.json()["detail"]
    broken = client.post("/queue/local", "{nope", content_type="application/json")
    assert broken.status_code == 400 and broken.json()["detail"].startswith("The body is not valid JSON")
    text = client.post("/queue/local", "hello", content_type="text/plain")
    assert text.status_code == 415 and "detail" in text.json()


def test_an_oversized_data_uri_is_413_before_it_is_decoded(settings):
    settings.MAX_UPLOAD_BYTES = 1000
    response = submit(queue_client(), data_uri="A" * 4000)
    assert response.status_code == 413
    assert response.json() == {"detail": "The image is too large; images must be 0.000953674 MB or smaller."}


def test_an_oversized_body_is_413_in_this_apis_shape(settings):
    settings.MAX_API_BODY_BYTES = 100
    response = submit(queue_client())
    assert response.status_code == 413 and set(response.json()) == {"detail"}


@pytest.fixture
def callback_receiver(settings):
    with FakeCallbackReceiver() as fake:
        settings.SAFE_FETCH_ALLOW = (fake.address,)
        settings.WEBHOOK_RETRY_SCHEDULE = [0.0, 1.0, 1.0]
        yield fake


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("asked_by", ["fal_webhook", "x-pipelet-webhook"])
def test_a_callback_asked_for_by_fal_or_pipelet_gets_a_signed_delivery_when_the_job_ends(callback_receiver, asked_by):
    client = queue_client()
    url = f"{callback_receiver.base_url}/done/{asked_by}"
    if asked_by == "fal_webhook":
        body = {"prompt": "waves", "data_uri": PHOTO}
        response = client.post(f"/queue/local?fal_webhook={url}", json.dumps(body), content_type="application/json")
    else:
        response = submit(client, headers={"x-pipelet-webhook": url})
    assert response.status_code == 200, response.json()
    job = run_until_final(Job.objects.get(pk=response.json()["request_id"]))
    assert job.status == Job.COMPLETED
    [call] = callback_receiver.wait_for(1)
    assert call.path == f"/done/{asked_by}"
    secret = client.get("/api/v1/webhooks/job-callback-secret").json()["secret"]
    delivered = Webhook(secret).verify(call.body, call.headers)
    assert delivered["type"] == "job.completed" and delivered["data"]["id"] == str(job.pk)


def test_a_callback_to_a_private_address_is_refused_naming_where_it_came_from():
    client = queue_client()
    query = client.post(
        "/queue/local?fal_webhook=http://10.0.0.5/hook", json.dumps({}), content_type="application/json"
    )
    assert query.status_code == 422
    assert query.json()["detail"].startswith("fal_webhook points to a private or local address (10.0.0.5)")
    header = submit(client, headers={"x-pipelet-webhook": "http://10.0.0.5/hook"})
    assert header.status_code == 422 and header.json()["detail"].startswith("x-pipelet-webhook points to")
    assert not Job.objects.exists()


def test_two_different_callbacks_in_one_create_are_refused(callback_receiver):
    response = queue_client().post(
        f"/queue/local?fal_webhook={callback_receiver.base_url}/a",
        json.dumps({"prompt": "waves", "data_uri": PHOTO}),
        content_type="application/json",
        HTTP_X_PIPELET_WEBHOOK=f"{callback_receiver.base_url}/b",
    )
    assert response.status_code == 422 and "different URLs" in response.json()["detail"]
    assert not Job.objects.exists()


def test_a_caller_without_credits_gets_402_with_balance_and_cost_and_nothing_is_made(stability_server):
    response = submit(queue_client(credits=5), "stability")
    assert response.status_code == 402
    assert response.json()["balance"] == 5 and response.json()["cost"] == 20
    assert "Not enough credits" in response.json()["detail"]
    assert not Job.objects.exists()


# --- keys and isolation ----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Key", "Bearer", "key", "bearer"])
def test_the_key_may_come_as_key_or_bearer(scheme):
    client = queue_client(scheme)
    body = submit(client).json()
    assert client.get(path_of(body["status_url"])).status_code == 202


@pytest.mark.parametrize(
    ("authorization", "words"),
    [
        (None, "Authentication required. Send your API key as 'Authorization: Key <key>'"),
        ("Key i2v_deadbeef_nope", "The API key is wrong or revoked."),
        ("Basic dXNlcjpwYXNz", "the 'basic' scheme"),
        ("Key", "no key after its scheme"),
    ],
)
def test_without_a_good_key_every_operation_is_401_saying_how_to_send_it(authorization, words):
    owner = queue_client()
    body = submit(owner).json()
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    for response in (
        submit(client),
        client.get(path_of(body["status_url"])),
        client.put(path_of(body["cancel_url"])),
        client.get(path_of(body["response_url"])),
    ):
        assert response.status_code == 401
        assert words in response.json()["detail"]
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_another_callers_request_and_another_models_path_are_404_and_an_id_that_cannot_be_one_400():
    owner, stranger = queue_client(), queue_client()
    body = submit(owner).json()
    for client, path in (
        (stranger, path_of(body["status_url"])),
        (stranger, path_of(body["response_url"])),
        (owner, f"/queue/camera-motion/requests/{body['request_id']}/status"),
        (owner, f"/queue/local/requests/{uuid.uuid4()}/status"),
        (owner, f"/queue/local/requests/{uuid.uuid4()}"),
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"detail": queue.NOT_FOUND_MESSAGE}
    assert stranger.put(path_of(body["cancel_url"])).status_code == 404
    for path in ("/queue/local/requests/12/status", "/queue/local/requests/12", "/queue/local/requests/12/cancel"):
        response = owner.put(path) if path.endswith("cancel") else owner.get(path)
        assert response.status_code == 400 and response.json() == {"detail": queue.BAD_ID_MESSAGE}
    assert Job.objects.get(pk=body["request_id"]).status == Job.QUEUED
    native = owner.get(f"/api/v1/jobs/{body['request_id']}")
    assert native.status_code == 200  # the same job, seen by its owner through the native API


def test_a_job_made_elsewhere_is_not_a_queue_request(django_capture_on_commit_callbacks):
    from tests.factories import make_job

    client = queue_client()
    job = make_job(client.user)
    assert client.get(f"/queue/local/requests/{job.pk}/status").status_code == 404


# --- idempotency and budgets ------------------------------------------------------------------------


def test_an_idempotency_key_makes_the_create_safe_to_retry():
    client = queue_client()
    first = submit(client, headers={"Idempotency-Key": "create-1"})
    again = submit(client, headers={"Idempotency-Key": "create-1"})
    assert again.status_code == 200 and again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == 1
    other = submit(client, headers={"Idempotency-Key": "create-1"}, prompt="Something else")
    assert other.status_code == 422
    assert other.json() == {
        "detail": "This Idempotency-Key was already used with a different request body; use a new key."
    }


def test_creates_count_against_the_request_budget_but_status_polls_do_not(monkeypatch):
    monkeypatch.setattr(PerUserThrottle, "THROTTLE_RATES", {"api": "2/minute"})
    client = queue_client()
    body = submit(client).json()
    assert all(client.get(path_of(body["status_url"])).status_code == 202 for _ in range(5))
    assert client.get(path_of(body["response_url"])).status_code == 400
    throttled = submit(client)
    assert throttled.status_code == 429 and "throttled" in throttled.json()["detail"]
    assert int(throttled["Retry-After"]) > 0


def test_wrong_methods_and_unknown_paths_answer_json():
    client = queue_client()
    body = submit(client).json()
    assert client.get("/queue/local").status_code == 405
    posted = client.post(path_of(body["status_url"]))
    assert posted.status_code == 405 and posted.json() == {"detail": 'Method "POST" not allowed.'}
    for path in ("/queue/", "/queue", "/queue/local/requests", f"/queue/local/requests/{body['request_id']}/x"):
        response = client.get(path)
        assert response.status_code == 404 and "POST /queue/{modelId}" in response.json()["detail"], path


# --- the documented examples are real answers ----------------------------------------------------------


def documented_examples() -> dict[tuple[str, str, str], object]:
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    found = {}
    for path, item in schema["paths"].items():
        if not path.startswith("/queue/"):
            continue
        for operation in item.values():
            for status, response in operation["responses"].items():
                for example in response.get("content", {}).get("application/json", {}).get("examples", {}).values():
                    found[(operation["operationId"], status, example["summary"])] = example["value"]
    return found


def test_the_documented_examples_are_the_bodies_the_endpoints_really_answer(django_capture_on_commit_callbacks):
    examples = documented_examples()
    client = queue_client()
    queued = submit(client).json()
    done = submit(client, capture=django_capture_on_commit_callbacks, duration=1).json()
    running = submit(client).json()
    Job.objects.filter(pk=running["request_id"]).update(status=Job.RUNNING)
    # Word for word: the messages do not depend on ids, hosts or times.
    same = {
        ("queue_submit", "401", "No key"): submit(APIClient()),
        ("queue_submit", "404", "Unknown model"): submit(client, "wan22-fast-t2v"),
        ("queue_submit", "415", "Not JSON"): client.post("/queue/local", "x", content_type="text/plain"),
        ("queue_submit", "422", "Unknown field"): submit(client, width=1280),
        ("queue_submit", "422", "No image"): submit(client, data_uri=""),
        ("queue_submit", "422", "Bad base64"): submit(client, data_uri="!!"),
        ("queue_submit", "422", "Callback not public"): submit(
            client, headers={"x-pipelet-webhook": "http://10.0.0.5/"}
        ),
        ("queue_status", "404", "Not found"): client.get(f"/queue/local/requests/{uuid.uuid4()}/status"),
        ("queue_status", "400", "Not a request id"): client.get("/queue/local/requests/12/status"),
        ("queue_status", "405", "Not GET"): client.post(path_of(queued["status_url"])),
        ("queue_result", "400", "Still in progress"): client.get(path_of(running["response_url"])),
        ("queue_cancel", "409", "Already completed"): client.put(path_of(done["cancel_url"])),
    }
    # The same keys: these hold ids, hosts, positions or times.
    alike = {
        ("queue_submit", "200", "Queued"): submit(client),
        ("queue_status", "202", "In queue"): client.get(path_of(queued["status_url"])),
        ("queue_status", "202", "In progress"): client.get(path_of(running["status_url"])),
        ("queue_status", "200", "Completed"): client.get(path_of(done["status_url"])),
        ("queue_result", "200", "Base64"): client.get(path_of(done["response_url"])),
    }
    for (operation, status, name), response in {**same, **alike}.items():
        assert str(response.status_code) == status, (operation, name)
        body = read_result(response)
        example = examples[(operation, status, name)]
        if (operation, status, name) in same:
            assert body == example, name
        else:
            assert body.keys() == example.keys(), name


def test_the_schema_lists_the_model_ids_available_here(pipelet_like):
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    [model] = [p for p in schema["paths"]["/queue/{modelId}"]["post"]["parameters"] if p["name"] == "modelId"]
    assert "wanlike-i2v" in model["schema"]["enum"] and "wanlike-i2v-premium" not in model["schema"]["enum"]


def test_support_sees_in_the_admin_which_model_id_a_job_came_in_through(client):
    from tests.factories import UserFactory

    body = submit(queue_client(), headers={"x-pipelet-output": "binary"}).json()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get(f"/admin/jobs/job/{body['request_id']}/change/").content.decode()
    assert "Queue API model id" in page and "local (a signed link (x-pipelet-output))" in page


def test_a_large_result_streams_in_bounded_memory(django_capture_on_commit_callbacks, tmp_path):
    import hashlib
    import os
    import tracemalloc

    from django.core.files import File
    from django.core.files.storage import default_storage

    client = queue_client()
    body = submit(client, capture=django_capture_on_commit_callbacks, duration=1).json()
    job = Job.objects.get(pk=body["request_id"])
    size = 30 * 1024 * 1024 + 1  # not a multiple of 3, so the last chunk is padded
    # The stored video replaced by a large one, through the storage (local or S3).
    large = tmp_path / "large.mp4"
    with large.open("wb") as handle:
        for _ in range(30):
            handle.write(os.urandom(1024 * 1024))
        handle.write(b"!")
    expected = hashlib.sha256(base64.b64encode(large.read_bytes()))
    default_storage.delete(job.video.name)
    with large.open("rb") as handle:
        assert default_storage.save(job.video.name, File(handle)) == job.video.name

    tracemalloc.start()
    try:
        response = client.get(path_of(body["response_url"]))
        streamed, head, length = hashlib.sha256(), b"", 0
        for chunk in response.streaming_content:
            if len(head) < 4096:
                head += chunk[:4096]
            length += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert length == int(response["Content-Length"]) > 4 * size // 3
    assert peak < 4 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while streaming {size / 1e6:.0f} MB"
    prefix = b'"data_uri": "'
    assert head.index(prefix) > 0
    # The same bytes again, hashed this time: what comes after the prefix is the file's base64.
    response = client.get(path_of(body["response_url"]))
    data = b"".join(response.streaming_content)
    start = data.index(prefix) + len(prefix)
    streamed.update(data[start : data.index(b'"', start)])
    assert streamed.hexdigest() == expected.hexdigest()


def test_a_lost_database_connection_is_503_in_this_apis_shape():
    from django.db import OperationalError
    from django.test import RequestFactory

    from jobs.middleware import DatabaseOutageMiddleware

    request = RequestFactory().get("/queue/local/requests/0b7f1a52-3c5e-4d1a-9f6b-2a8c4e6d1f90/status")
    response = DatabaseOutageMiddleware(lambda request: None).process_exception(request, OperationalError("gone"))
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert set(json.loads(response.content)) == {"detail"}
