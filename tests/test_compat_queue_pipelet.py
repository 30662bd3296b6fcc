"""The queue API served by the real providers: a Pipelet client that changes
only host and key, against the Pipelet provider pointed at the fake Pipelet
(and Kling's model id against the fake AI/ML API), every job run through the
real pipeline, every video decoded."""

from __future__ import annotations

import base64
import io
import json

import av
import pytest
from rest_framework.test import APIClient

from jobs.ledger import balance_of
from jobs.models import Job, LedgerEntry
from tests.api_helpers import key_client
from tests.factories import photo_bytes
from tests.fakes.fixtures import aiml_server_fixture, pipelet_server_fixture  # noqa: F401 (the fixtures)
from tests.pipeline_helpers import advance, make_due, run_until_final

pytestmark = pytest.mark.django_db

PIPELET = "wan22-fast-i2v"
KLING = "kling-video/v1/standard/image-to-video"
PHOTO = base64.b64encode(photo_bytes()).decode()
END_FRAME = base64.b64encode(photo_bytes(seed=7)).decode()


@pytest.fixture(autouse=True)
def _no_public_address(settings):
    settings.PUBLIC_BASE_URL = ""  # images go inline: nothing but the fakes is reached


def pipelet_client() -> APIClient:
    """What a Pipelet client sends: its key as a Bearer token (key_client's default)."""
    return key_client()


def create(client: APIClient, model: str = PIPELET, headers: dict | None = None, **fields):
    body = {"prompt": "A cat wearing a superman cape playing with a dog", "data_uri": PHOTO, **fields}
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in (headers or {}).items()}
    return client.post(f"/queue/{model}", json.dumps(body), content_type="application/json", **extra)


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def status_of(client: APIClient, created: dict) -> dict:
    response = client.get(path_of(created["status_url"]))
    assert response.status_code in (200, 202), response.content
    return response.json()


def step(created: dict) -> Job:
    """One task run for the job once it is due: the worker looks at Pipelet once."""
    job = Job.objects.get(pk=created["request_id"])
    if job.status != Job.QUEUED:
        make_due(job)
    return advance(job)


def read_body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def decode_mp4(data: bytes) -> tuple[str, int, int]:
    """(codec, height, frames) of an MP4, by decoding every frame."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        return stream.codec_context.name, stream.codec_context.height, frames


def assert_nothing_held(client: APIClient) -> None:
    assert not Job.objects.exists()
    assert not LedgerEntry.objects.filter(user=client.user).exclude(kind="grant").exists()
    assert balance_of(client.user) == 100


# --- the whole way ------------------------------------------------------------------------------


def test_a_pipelet_client_sees_pipelets_queue_places_and_progress_then_decodes_the_video(pipelet_server):
    client = pipelet_client()
    response = create(client, duration=7, height=480)
    assert response.status_code == 200, response.json()
    created = response.json()
    assert set(created) == {"request_id", "response_url", "status_url", "cancel_url"}
    assert created["status_url"] == f"http://testserver/queue/{PIPELET}/requests/{created['request_id']}/status"
    assert balance_of(client.user) == 90

    seen = [status_of(client, created)]  # still in our own queue: next in line
    while seen[-1]["status"] not in ("COMPLETED", "FAILED", "CANCELLED") and len(seen) < 20:
        step(created)
        seen.append(status_of(client, created))

    waiting = [s for s in seen if s["status"] == "IN_QUEUE"]
    # Ours first (nothing ahead), then exactly the 0-based places the fake Pipelet gave: 2, 1, 0.
    assert [s["queue_position"] for s in waiting] == [0, 2, 1, 0]
    assert pipelet_server.script.queue_positions == [2, 1, 0]
    assert all(s["statusMessages"] == {} for s in waiting)
    working = [s for s in seen if s["status"] == "IN_PROGRESS"]
    assert [s["statusMessages"] for s in working] == [
        {"message": "PROCESSING", "detail_message": f"Progress: {n}/24 Tasks done"} for n in (4, 12, 20)
    ]
    assert all("queue_position" not in s for s in working)
    assert seen[-1]["status"] == "COMPLETED"
    assert client.get(path_of(created["status_url"])).status_code == 200

    result = client.get(path_of(created["response_url"]))
    assert result.status_code == 200
    video = json.loads(read_body(result))["video"]
    assert decode_mp4(base64.b64decode(video["data_uri"], validate=True)) == ("h264", 480, 14)
    assert balance_of(client.user) == 90
    [sent] = pipelet_server.creates
    assert (sent.body["duration"], sent.body["height"]) == (7, 480)
    assert sent.body["prompt"] == "A cat wearing a superman cape playing with a dog"
    assert "second_image_uri" not in sent.body and "priority" not in sent.body


def test_the_premium_and_pro_ids_reach_pipelet_under_their_own_names_at_their_own_cost(pipelet_server):
    client = pipelet_client()
    created = create(client, "wan22-fast-i2v-pro").json()
    assert balance_of(client.user) == 75
    step(created)
    assert pipelet_server.creates[0].path == "/queue/wan22-fast-i2v-pro"
    assert status_of(client, created)["status_url"].startswith("http://testserver/queue/wan22-fast-i2v-pro/")


def test_a_pipelet_id_is_503_naming_the_setting_when_pipelet_is_not_configured(settings):
    settings.PIPELET_API_KEY = ""
    response = create(pipelet_client())
    assert response.status_code == 503
    assert "PIPELET_API_KEY" in response.json()["detail"]


def test_a_video_pipelet_failed_is_failed_with_its_message_and_the_credits_come_back(pipelet_server):
    pipelet_server.script.outcome = "FAILED"
    client = pipelet_client()
    created = create(client).json()
    job = run_until_final(Job.objects.get(pk=created["request_id"]), rounds=12)

    status = status_of(client, created)
    assert status["status"] == "FAILED"
    assert status["statusMessages"] == {"message": "FAILED", "detail_message": job.error_message}
    assert "Pipelet could not make this video" in job.error_message
    assert balance_of(client.user) == 100


# --- cancel ---------------------------------------------------------------------------------------


def test_a_request_still_in_pipelets_queue_is_cancelled_there_with_204(pipelet_server):
    client = pipelet_client()
    created = create(client).json()
    step(created)
    assert status_of(client, created)["status"] == "IN_QUEUE"

    response = client.put(path_of(created["cancel_url"]))

    assert response.status_code == 204 and response.content == b""
    [cancel] = pipelet_server.cancels
    assert cancel.status == 204 and cancel.path == f"/queue/{PIPELET}/requests/{next(iter(pipelet_server.jobs))}/cancel"
    assert status_of(client, created)["status"] == "CANCELLED"
    assert balance_of(client.user) == 100


def test_cancel_once_pipelet_has_started_is_409_with_a_detail(pipelet_server):
    client = pipelet_client()
    created = create(client).json()
    for _ in range(4):
        step(created)
    assert status_of(client, created)["status"] == "IN_PROGRESS"

    response = client.put(path_of(created["cancel_url"]))

    assert response.status_code == 409
    assert "Pipelet has started this video" in response.json()["detail"]
    assert response.json()["status"] == "IN_PROGRESS"
    assert balance_of(client.user) == 90


def test_cancel_when_pipelet_started_since_our_last_look_is_409_as_pipelet_answered(pipelet_server):
    client = pipelet_client()
    created = create(client).json()
    step(created)
    [remote] = pipelet_server.jobs.values()
    remote.state = "IN_PROGRESS"  # Pipelet began it between two of our polls

    response = client.put(path_of(created["cancel_url"]))

    assert response.status_code == 409 and "has started" in response.json()["detail"]
    assert [c.status for c in pipelet_server.cancels] == [409]
    assert Job.objects.get(pk=created["request_id"]).status == Job.SUBMITTED


# --- Pipelet's rules and fields ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"duration": 6, "height": 720}, "At 720p Pipelet makes at most 5 s"),
        ({"duration": 8, "height": 480}, "duration must be from 1 to 7"),
        ({"height": 1080}, "height must be 720 or 480"),
        ({"priority": "high"}, "priority must be a whole number from 0 to 10"),
        ({"width": 1280}, "Unknown field 'width'"),
    ],
)
def test_pipelets_rules_are_422_naming_the_rule_before_anything_reaches_pipelet(pipelet_server, fields, words):
    client = pipelet_client()
    response = create(client, **fields)
    assert response.status_code == 422, response.json()
    assert set(response.json()) == {"detail"} and words in response.json()["detail"]
    assert pipelet_server.requests == []
    assert_nothing_held(client)


def test_priority_is_passed_to_pipelet(pipelet_server):
    created = create(pipelet_client(), priority=5).json()
    step(created)
    assert pipelet_server.creates[0].body["priority"] == 5


def test_x_pipelet_output_binary_gives_a_signed_link_that_serves_the_video(pipelet_server):
    client = pipelet_client()
    created = create(client, headers={"x-pipelet-output": "binary"}).json()
    run_until_final(Job.objects.get(pk=created["request_id"]), rounds=12)

    video = client.get(path_of(created["response_url"])).json()["video"]

    assert video["data_uri"] == video["data_url"] == video["url"]
    assert "token=" in video["data_uri"]
    served = APIClient().get(path_of(video["data_uri"]))  # no key: the link is the credential
    assert served.status_code == 200
    assert decode_mp4(read_body(served))[:2] == ("h264", 720)


# --- the end frame ----------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "data:image/jpeg;base64,"], ids=["bare", "data-uri"])
def test_second_image_uri_becomes_the_end_frame_pipelet_receives(pipelet_server, prefix):
    client = pipelet_client()
    response = create(client, second_image_uri=prefix + END_FRAME)
    assert response.status_code == 200, response.json()
    job = step(response.json())

    assert job.tail_upload is not None
    [remote] = pipelet_server.jobs.values()
    assert remote.tail_size == remote.image_size, "a decodable image, fitted to the photo's framing"
    assert isinstance(remote.tail_size, tuple)
    assert pipelet_server.creates[0].body["second_image_uri"] != pipelet_server.creates[0].body["data_uri"]


def test_tail_image_url_as_a_data_uri_is_taken_too(pipelet_server):
    response = create(pipelet_client(), tail_image_url="data:image/jpeg;base64," + END_FRAME)
    assert response.status_code == 200, response.json()
    step(response.json())
    [remote] = pipelet_server.jobs.values()
    assert remote.tail_size == remote.image_size


def test_tail_image_url_as_a_public_link_is_fetched_like_the_native_apis(pipelet_server, settings):
    from tests.fakes.image_server import ImageServer

    with ImageServer(photo_bytes(900, 600, fmt="PNG", seed=3)) as images:
        settings.SAFE_FETCH_ALLOW = (pipelet_server.address, images.address)
        response = create(pipelet_client(), tail_image_url=f"{images.base_url}/end.png")
    assert response.status_code == 200, response.json()
    job = step(response.json())
    assert images.hits == ["/end.png"]
    assert job.tail_upload.source_url.endswith("/end.png")
    [remote] = pipelet_server.jobs.values()
    assert remote.tail_size == remote.image_size


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"second_image_uri": "not base64!!"}, "second_image_uri is not valid base64"),
        ({"second_image_uri": base64.b64encode(b"%PDF-1.4 no image").decode()}, "not a JPEG or PNG"),
        ({"second_image_uri": 5}, "second_image_uri must be a string"),
        ({"second_image_uri": END_FRAME, "tail_image_url": "https://example.com/end.jpg"}, "not both"),
        ({"tail_image_url": "http://127.0.0.1:1/end.jpg"}, "tail_image_url points to a private or local address"),
    ],
)
def test_an_end_frame_that_cannot_be_used_is_422_naming_it_and_nothing_is_held(pipelet_server, fields, words):
    client = pipelet_client()
    response = create(client, **fields)
    assert response.status_code == 422, response.json()
    assert words in response.json()["detail"]
    assert pipelet_server.requests == []
    assert_nothing_held(client)


@pytest.mark.parametrize("field", ["second_image_uri", "tail_image_url"])
def test_an_end_frame_for_a_model_that_takes_none_is_422_naming_the_field(field):
    client = pipelet_client()
    response = create(client, "local", **{field: "data:image/jpeg;base64," + END_FRAME})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert f"({field})" in detail and "does not take an end frame" in detail and "pipelet" in detail
    assert_nothing_held(client)


def test_the_unknown_field_message_lists_the_end_frame_only_for_models_that_take_one(pipelet_server):
    client = pipelet_client()
    pipelet = create(client, width=1).json()["detail"]
    local = create(client, "local", width=1).json()["detail"]
    assert "second_image_uri" in pipelet and "tail_image_url" in pipelet
    assert "second_image_uri" not in local and "tail_image_url" not in local


# --- Kling --------------------------------------------------------------------------------------------


def test_klings_model_id_makes_a_video_through_ai_ml_api(aiml_server):
    client = pipelet_client()
    response = create(client, KLING, duration=5, second_image_uri=END_FRAME)
    assert response.status_code == 200, response.json()
    created = response.json()
    assert status_of(client, created)["status"] == "IN_QUEUE"

    job = run_until_final(Job.objects.get(pk=created["request_id"]))

    assert job.status == Job.COMPLETED, job.error_message
    assert status_of(client, created)["status"] == "COMPLETED"
    video = json.loads(read_body(client.get(path_of(created["response_url"]))))["video"]
    codec, _, frames = decode_mp4(base64.b64decode(video["data_uri"], validate=True))
    assert codec == "h264" and frames > 0
    [sent] = aiml_server.submits
    assert sent.body["model"] == KLING
    assert aiml_server.generations[job.provider_job_id].images["tail_image_url"] == (1024, 576)
    assert balance_of(client.user) == 90


def test_a_failing_kling_request_says_klings_message_and_the_credits_come_back(aiml_server):
    aiml_server.script.failure = ("content_policy", "The prompt was flagged by the content policy")
    client = pipelet_client()
    created = create(client, KLING).json()
    run_until_final(Job.objects.get(pk=created["request_id"]))

    status = status_of(client, created)
    assert status["status"] == "FAILED"
    assert status["statusMessages"]["message"] == "FAILED"
    assert "The prompt was flagged by the content policy" in status["statusMessages"]["detail_message"]
    result = client.get(path_of(created["response_url"]))
    assert result.status_code == 422 and "flagged" in result.json()["detail"]
    assert balance_of(client.user) == 100


# --- the schema -----------------------------------------------------------------------------------------


def test_the_schema_documents_the_end_frame_and_pipelets_fields_and_its_examples_are_real(pipelet_server):
    from tests.test_compat_queue import documented_examples

    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    fields = schema["components"]["schemas"]["QueueSubmitRequest"]["properties"]
    for name in ("second_image_uri", "tail_image_url", "duration", "height", "priority"):
        assert fields[name]["description"] and "example" in fields[name], name
    [model] = [p for p in schema["paths"]["/queue/{modelId}"]["post"]["parameters"] if p["name"] == "modelId"]
    assert {PIPELET, "wan22-fast-i2v-premium", "wan22-fast-i2v-pro"} <= set(model["schema"]["enum"])

    examples = documented_examples()
    client = pipelet_client()
    assert create(client, duration=6, height=720).json() == examples[("queue_submit", "422", "Pipelet rule")]
    assert (
        create(client, "local", second_image_uri=END_FRAME).json()
        == examples[("queue_submit", "422", "No end frame here")]
    )
    request_examples = schema["paths"]["/queue/{modelId}"]["post"]["requestBody"]["content"]["application/json"]
    body = request_examples["examples"]["PipeletWithAnEndFrame"]["value"]
    # The documented body as sent, with images large enough to animate in place of the 1-pixel ones.
    accepted = create(client, **{**body, "data_uri": PHOTO, "second_image_uri": END_FRAME})
    assert accepted.status_code == 200, accepted.json()
    step(accepted.json())
    sent = pipelet_server.creates[-1].body
    assert {name: sent[name] for name in ("duration", "height", "priority")} == {
        "duration": 7,
        "height": 480,
        "priority": 5,
    }
    assert isinstance(list(pipelet_server.jobs.values())[-1].tail_size, tuple)
    working = create(client).json()
    for _ in range(4):
        step(working)
    shown = status_of(client, working)
    documented = examples[("queue_status", "202", "In progress at Pipelet")]
    assert shown.keys() == documented.keys() and shown["statusMessages"] == documented["statusMessages"]
