"""The original I2V API's own pipeline through i2v: an image URL and an
x-request-id in, Replicate's CLIP interrogator writes the prompt, Pika makes the
video from the same URL, and the G.A.M.E callback carries a link to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from jobs import media
from jobs.models import Job
from jobs.webhooks.formats import i2v_failure, i2v_success, title_from_prompt
from tests.api_helpers import key_client
from tests.factories import photo_bytes
from tests.fakes.callback_receiver import FakeCallbackReceiver
from tests.fakes.image_server import ImageServer
from tests.fakes.pika_server import FakePikaServer
from tests.fakes.replicate_server import FakeReplicateServer
from tests.pipeline_helpers import run_until_final

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(settings, monkeypatch):
    """Fake Pika, Replicate, an image host and the callback receiver; the
    settings of an install where the original's keys are set and no
    PUBLIC_BASE_URL is (so Pika and CLIP are given the image URL, as the
    original gave them)."""
    from jobs import pipeline

    with (
        FakePikaServer(token="pika-key") as pika,
        FakeReplicateServer(token="r8_key") as replicate,
        ImageServer(photo_bytes(900, 600, fmt="PNG")) as images,
        FakeCallbackReceiver() as receiver,
    ):
        settings.PIKAPI_BASE_URL, settings.PIKAPI_BEARER_TOKEN = pika.base_url, pika.token
        settings.REPLICATE_BASE_URL, settings.REPLICATE_API_TOKEN = replicate.base_url, "r8_key"
        settings.PIKA_POLL_INTERVAL = settings.REPLICATE_POLL_INTERVAL = 0.0
        settings.PUBLIC_BASE_URL = ""
        settings.CALLBACK_API_URL = f"{receiver.base_url}/requests"
        settings.GAME_API_KEY = "game-key-123"
        settings.SAFE_FETCH_ALLOW = (pika.address, images.address, receiver.address, replicate.address)
        monkeypatch.setattr(pipeline, "MIN_POLL_GAP", 0.0)
        replicate.script.finish_after_polls = 1
        replicate.script.clip_text = "a tabby cat on a windowsill, soft light, 35mm photograph"
        yield pika, replicate, images, receiver


def start(images, request_id: str):
    return key_client().post(
        "/api/v1/i2v",
        json.dumps({"image_id": f"{images.base_url}/cats&#x2F;tabby.png"}),
        content_type="application/json",
        HTTP_X_REQUEST_ID=request_id,
    )


def test_clip_writes_the_prompt_pika_makes_the_video_and_the_callback_links_to_it(world):
    pika, replicate, images, receiver = world
    response = start(images, "game-7")
    assert response.status_code == 200
    assert response.json() == {
        "message": "Video generation pipeline initialized | ETA: 5-7 minutes",
        "request_id": "game-7",
    }

    job = run_until_final(Job.objects.get(request_id="game-7"), rounds=20)
    assert job.status == Job.COMPLETED, job.error_message
    assert job.provider == "pika"

    # CLIP was asked once, about the image the client named, as the original asked it.
    [described] = replicate.created("clip")
    assert described.input == {
        "image": f"{images.base_url}/cats/tabby.png",
        "clip_model_name": "ViT-L-14/openai",
        "mode": "best",
    }
    assert (job.prompt, job.prompt_source) == (replicate.script.clip_text, Job.PROMPT_CLIP)

    # Pika was asked once, with CLIP's words and the same image URL, with the original's values.
    [submit] = pika.submits
    sent = submit.body
    assert sent["promptText"] == replicate.script.clip_text
    assert sent["image"] == f"{images.base_url}/cats/tabby.png"
    assert sent["model"] == "1.5"
    assert sent["options"]["frameRate"] == 24
    assert sent["options"]["parameters"] == {"motion": 2, "guidanceScale": 16}

    # The callback: the original's body, byte for byte, titled from the prompt's first clause.
    [call] = receiver.wait_for(1)
    assert (call.path, call.headers["x-api-key"]) == ("/requests/game-7/callback", "game-key-123")
    url = json.loads(call.body)["data"]["output"]["url"]
    assert title_from_prompt(job.prompt) == "A tabby cat on a windowsill"
    assert call.body == i2v_success("A tabby cat on a windowsill", url).encode()

    # Anyone can download the video from the callback's link, and it plays.
    video = Client().get(url.removeprefix("http://testserver"))
    assert video.status_code == 200
    path = Path(settings.WORK_DIR) / "from-callback.mp4"
    path.write_bytes(b"".join(video.streaming_content))
    assert media.probe_video(path).codec == "h264"


def test_a_failing_pika_job_sends_the_failure_body_and_gives_the_credits_back(world):
    pika, replicate, images, receiver = world
    pika.script.statuses = ["queued", "failed"]
    response = start(images, "game-8")
    assert response.status_code == 200
    job = run_until_final(Job.objects.get(request_id="game-8"), rounds=20)
    assert job.status == Job.FAILED
    assert job.error_message and "Pika" in job.error_message
    assert job.owner.credits.balance == 100  # held, then released
    [call] = receiver.wait_for(1)
    assert call.path == "/requests/game-8/callback"
    assert call.body == i2v_failure().encode()
    assert len(pika.submits) == 1 and len(replicate.created("clip")) == 1
