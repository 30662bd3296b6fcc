"""The original I2V API's flow end to end, through real processes: gunicorn,
a django-q2 cluster and the sweeper, against independent fakes (an image host
and the G.A.M.E callback receiver), every byte checked."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from jobs import media
from jobs.models import CallbackDelivery, Job
from jobs.webhooks.formats import i2v_success
from tests.api_helpers import key_client
from tests.factories import photo_bytes
from tests.fakes.callback_receiver import FakeCallbackReceiver
from tests.fakes.image_server import ImageServer
from tests.live_web import LiveWeb
from tests.processes import wait_for, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FAILURE_BODY = b'{"data": {"addToInventory": false, "status": "FAILED", "output": null}}'


@pytest.fixture
def fakes(settings):
    with ImageServer(photo_bytes(900, 600, fmt="PNG")) as images, FakeCallbackReceiver() as receiver:
        settings.SAFE_FETCH_ALLOW = (images.address, receiver.address)
        settings.CALLBACK_API_URL = f"{receiver.base_url}/requests"
        settings.GAME_API_KEY = "game-key-123"
        yield images, receiver


def env_for(images, receiver, **extra: str) -> dict[str, str]:
    return {
        "SAFE_FETCH_ALLOW": f"{images.address},{receiver.address}",
        "CALLBACK_API_URL": f"{receiver.base_url}/requests",
        "GAME_API_KEY": "game-key-123",
        "I2V_COMPAT_PROVIDER": "local",
        "CALLBACK_RETRY_SCHEDULE": "1,1,1",
        **extra,
    }


def send(url: str, body: dict, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **headers}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_originals_flow_end_to_end_with_the_callback_byte_for_byte_and_a_playable_video(
    cluster_factory, fakes, settings, tmp_path
):
    images, receiver = fakes
    client = key_client()
    cluster = cluster_factory(**env_for(images, receiver))
    cluster.start("worker")
    cluster.start("sweeper")
    web = LiveWeb(settings, tmp_path, workers=1, JOB_DISPATCH_GRACE="30", **env_for(images, receiver))
    try:
        headers = {"x-request-id": "game-req-42", "x-api-key": client.raw_key}
        status, answer = send(f"{web.url}/api/v1/i2v", {"image_id": f"{images.base_url}&#x2F;cat.png"}, headers)
        assert status == 200, answer
        assert (
            answer
            == b'{"message":"Video generation pipeline initialized | ETA: 5-7 minutes","request_id":"game-req-42"}'
        )

        job = Job.objects.get(request_id="game-req-42")
        job = wait_for(job, lambda j: j.is_final, 120, cluster)
        assert job.status == Job.COMPLETED, job.error_message
        [call] = receiver.wait_for(1, timeout=60)
        assert (call.method, call.path) == ("POST", "/requests/game-req-42/callback")
        assert call.headers["x-api-key"] == "game-key-123"
        url = json.loads(call.body)["data"]["output"]["url"]
        assert url.startswith(f"{web.url}/api/v1/jobs/{job.pk}/video?token=")
        assert call.body == i2v_success("Generated Video", url).encode()
        assert call.body.startswith(b'{"data": {"addToInventory": true, "status": "COMPLETED", "output": {"title": ')

        # The link works for anyone: no key, no cookie.
        with urllib.request.urlopen(url, timeout=60) as response:
            assert response.headers["Content-Type"] == "video/mp4"
            video = tmp_path / "from-callback.mp4"
            video.write_bytes(response.read())
        info = media.probe_video(Path(video))
        assert info.codec == "h264" and info.frames >= 14

        # The same x-request-id again: the same answer, nothing new started.
        again_status, again = send(f"{web.url}/api/v1/i2v", {"image_id": f"{images.base_url}/other.png"}, headers)
        assert (again_status, again) == (status, answer)
        assert Job.objects.filter(request_id="game-req-42").count() == 1
        assert images.hits == ["/cat.png"]
        assert CallbackDelivery.objects.get(job=job).status == CallbackDelivery.DELIVERED
        assert len(receiver.received) == 1
    finally:
        web.stop()


def test_a_job_that_times_out_sends_the_failure_body(cluster_factory, fakes):
    images, receiver = fakes
    # INITIAL_WAIT_TIME puts the first look past MAX_CHECK_TIME: the wait is bounded and the job fails.
    cluster = cluster_factory(**env_for(images, receiver, INITIAL_WAIT_TIME="3", MAX_CHECK_TIME="1"))
    cluster.start("worker")
    cluster.start("sweeper")
    client = key_client()
    response = client.post(
        "/api/v1/i2v",
        json.dumps({"image_id": f"{images.base_url}/cat.png"}),
        content_type="application/json",
        HTTP_X_REQUEST_ID="will-fail",
    )
    assert response.status_code == 200
    job = wait_for(Job.objects.get(request_id="will-fail"), lambda j: j.is_final, 120, cluster)
    assert job.status == Job.FAILED and job.error_code == "timed_out"
    assert "did not finish within 1 seconds" in job.error_message
    [call] = receiver.wait_for(1, timeout=60)
    assert call.path == "/requests/will-fail/callback" and call.body == FAILURE_BODY


def test_a_worker_killed_mid_delivery_sends_the_same_body_again_and_nothing_else(cluster_factory, fakes):
    images, receiver = fakes
    receiver.answers.append("hang")  # the first attempt never gets its answer
    cluster = cluster_factory(**env_for(images, receiver, CALLBACK_TIMEOUT="6"))
    cluster.start("worker")
    cluster.start("sweeper")
    client = key_client()
    response = client.post(
        "/api/v1/i2v",
        json.dumps({"image_id": f"{images.base_url}/cat.png"}),
        content_type="application/json",
        HTTP_X_REQUEST_ID="kill-me",
    )
    assert response.status_code == 200
    assert receiver.hanging.wait(120), cluster.log_text()[-3000:]
    cluster.kill("worker")
    cluster.start("worker")

    calls = receiver.wait_for(2, timeout=90)
    job = Job.objects.get(request_id="kill-me")
    delivery = wait_until(
        lambda: CallbackDelivery.objects.filter(job=job, status=CallbackDelivery.DELIVERED).first(),
        60,
        lambda: cluster.log_text()[-3000:],
    )
    assert calls[0].body == calls[1].body
    assert json.loads(calls[1].body)["data"]["status"] == "COMPLETED"
    assert CallbackDelivery.objects.filter(job=job).count() == 1
    assert delivery.attempts == 2  # the killed one, and the one that was answered
