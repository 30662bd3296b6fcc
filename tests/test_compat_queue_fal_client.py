"""The queue-style API driven by real clients against real processes: the
``fal_client`` package (1.0.3) and a Pipelet-style client written from the
doc's curl examples with ``requests``, talking to gunicorn while a django-q2
cluster and the sweeper make the videos with the local provider."""

from __future__ import annotations

import base64
import io

import av
import fal_client
import pytest
import requests

from jobs.models import Job
from tests.api_helpers import key_client
from tests.factories import photo_bytes
from tests.live_web import LiveWeb
from tests.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PHOTO = base64.b64encode(photo_bytes(640, 360)).decode()
ARGUMENTS = {"prompt": "A cat wearing a superman cape", "data_uri": PHOTO, "duration": 1}


def frames_of(mp4: bytes) -> int:
    with av.open(io.BytesIO(mp4)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        return sum(1 for _ in container.decode(video=0))


@pytest.fixture
def web(settings, tmp_path):
    server = LiveWeb(settings, tmp_path, workers=2, JOB_DISPATCH_GRACE="30")
    yield server
    server.stop()


@pytest.fixture
def workers(cluster_factory):
    """Starts the cluster and the sweeper when the test is ready for jobs to run."""
    cluster = cluster_factory()

    def start():
        cluster.start("worker")
        cluster.start("sweeper")
        return cluster

    return start


@pytest.fixture
def fal(web, monkeypatch):
    # fal-client builds its submit URL from this module global; the rest come from our answers.
    monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", f"{web.url}/queue/")
    owner = key_client()
    monkeypatch.setenv("FAL_KEY", owner.raw_key)  # read by a client made without a key, as fal's docs say
    return fal_client.SyncClient(), owner


def test_fal_client_submits_sees_queue_positions_and_logs_cancels_and_gets_a_playable_video(fal, workers):
    client, owner = fal
    first = client.submit("local", ARGUMENTS)
    second = client.submit("local", ARGUMENTS)
    third = client.submit("local", ARGUMENTS)
    assert first.status_url.endswith(f"/queue/local/requests/{first.request_id}/status")

    # No worker yet: all three wait, 0-based, in order.
    assert [h.status() for h in (first, second, third)] == [
        fal_client.Queued(position=0),
        fal_client.Queued(position=1),
        fal_client.Queued(position=2),
    ]

    # A queued request is cancelled (204); fal-client then sees it ended, with the reason.
    second.cancel()
    cancelled = second.status(with_logs=True)
    assert isinstance(cancelled, fal_client.Completed)
    assert cancelled.error_type == "CANCELLED" and cancelled.error
    assert [line["message"] for line in cancelled.logs][-1].startswith("Cancelled")
    with pytest.raises(fal_client.FalClientHTTPError) as refused:
        second.get()
    assert refused.value.status_code == 422 and "cancelled" in str(refused.value).lower()

    cluster = workers()
    seen = []
    for event in first.iter_events(with_logs=True, interval=0.2):
        seen.append(event)
    done = seen[-1]
    assert isinstance(done, fal_client.Completed) and done.error is None
    assert done.metrics["inference_time"] >= 0
    assert any(line["message"].startswith("Video ready") for line in done.logs)
    assert all(isinstance(e, fal_client.Queued | fal_client.InProgress | fal_client.Completed) for e in seen)

    result = first.get()
    mp4 = base64.b64decode(result["video"]["data_uri"], validate=True)
    assert frames_of(mp4) >= 12 and result["video"]["file_size"] == len(mp4)
    assert requests.get(result["video"]["url"], timeout=60).content == mp4  # the signed link, no key

    # Too late to cancel: fal-client is answered 400 (not 409, which it would retry for ~50 s).
    with pytest.raises(fal_client.FalClientHTTPError) as too_late:
        first.cancel()
    assert too_late.value.status_code == 400 and "already completed" in str(too_late.value)

    # subscribe(): submit, poll with logs, fetch, in one call.
    updates = []
    video = client.subscribe("local", ARGUMENTS, with_logs=True, on_queue_update=updates.append, interval=0.2)
    assert frames_of(base64.b64decode(video["video"]["data_uri"])) >= 12
    assert isinstance(updates[-1], fal_client.Completed)
    wait_until(
        lambda: Job.objects.get(pk=third.request_id).is_final,
        120,
        lambda: f"the third request never ended:\n{cluster.log_text()[-3000:]}",
    )
    assert Job.objects.filter(owner=owner.user, status=Job.COMPLETED).count() == 3


def test_a_pipelet_style_client_following_the_docs_curl_examples_gets_a_valid_mp4(web, workers):
    owner = key_client()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {owner.raw_key}"}
    body = {"prompt": "A cat wearing a superman cape playing with a dog", "data_uri": PHOTO, "duration": 1}
    created = requests.post(f"{web.url}/queue/local", json=body, headers=headers, timeout=60)
    assert created.status_code == 200, created.text
    urls = created.json()
    assert set(urls) == {"request_id", "response_url", "status_url", "cancel_url"}

    queued = requests.get(urls["status_url"], headers=headers, timeout=60).json()
    assert (queued["status"], queued["queue_position"], queued["statusMessages"]) == ("IN_QUEUE", 0, {})
    assert queued["response_url"] == urls["response_url"]

    cluster = workers()

    def finished():
        status = requests.get(urls["status_url"], headers=headers, timeout=60).json()
        return status if status["status"] in ("COMPLETED", "FAILED", "CANCELLED") else None

    status = wait_until(finished, 120, lambda: f"never finished:\n{cluster.log_text()[-3000:]}", interval=0.3)
    assert status["status"] == "COMPLETED", status

    # curl -s $response_url | jq -r '.video.data_uri' | base64 --decode > output.mp4
    result = requests.get(urls["response_url"], headers=headers, timeout=60)
    assert result.headers["Content-Length"] == str(len(result.content))
    mp4 = base64.b64decode(result.json()["video"]["data_uri"], validate=True)
    assert mp4[4:8] == b"ftyp" and frames_of(mp4) >= 12

    # x-pipelet-output: binary -> the result is a link to fetch instead.
    linked = requests.post(
        f"{web.url}/queue/local", json=body, headers={**headers, "x-pipelet-output": "binary"}, timeout=60
    ).json()
    wait_until(
        lambda: requests.get(linked["status_url"], headers=headers, timeout=60).json()["status"] == "COMPLETED",
        120,
        lambda: f"never finished:\n{cluster.log_text()[-3000:]}",
        interval=0.3,
    )
    video = requests.get(linked["response_url"], headers=headers, timeout=60).json()["video"]
    assert video["data_uri"] == video["data_url"] == video["url"]
    assert frames_of(requests.get(video["data_uri"], timeout=60).content) >= 12
