"""The callback an I2V job sends when it ends: the original's bytes, retried,
recorded, sent again by staff."""

from __future__ import annotations

import json
import threading
import time as time_module
from datetime import timedelta
from pathlib import Path

import pytest
from django.core import signing
from django.db import connection
from django.test import Client
from django.utils import timezone

from jobs import actions, links, media, pipeline
from jobs.models import CallbackAttempt, CallbackDelivery, CallbackTarget, Job
from jobs.sweeper import sweep_deliveries
from jobs.webhooks import delivery, outbox
from jobs.webhooks.formats import title_from_prompt
from tests.api_helpers import key_client
from tests.factories import UserFactory, make_job, photo_bytes
from tests.fakes.callback_receiver import FakeCallbackReceiver
from tests.fakes.image_server import ImageServer

FAILURE_BODY = b'{"data": {"addToInventory": false, "status": "FAILED", "output": null}}'


@pytest.fixture
def receiver(settings):
    with FakeCallbackReceiver() as fake:
        settings.CALLBACK_API_URL = f"{fake.base_url}/requests"
        settings.GAME_API_KEY = "game-key-123"
        settings.SAFE_FETCH_ALLOW = (fake.address,)
        settings.CALLBACK_RETRY_SCHEDULE = [10.0, 60.0]
        settings.CALLBACK_TIMEOUT = 5.0
        yield fake


def i2v_job(request_id: str = "req-1", *, prompt: str = "", base_url: str = "https://i2v.example.com") -> Job:
    """A queued job as the I2V endpoint makes it (its callback target included)."""
    from jobs.webhooks.formats import i2v_callback_url

    job = make_job(UserFactory(), request_id=request_id, prompt=prompt)
    CallbackTarget.objects.create(
        job=job,
        owner=job.owner,
        format=CallbackTarget.FORMAT_I2V,
        request_id=request_id,
        url=i2v_callback_url(request_id),
        public_base_url=base_url,
    )
    return job


def expected_success(title: str, url: str) -> bytes:
    output = f'{{"title": "{title}", "type": "MEDIA", "category": "MARKETING_VIDEO", "url": "{url}"}}'
    return f'{{"data": {{"addToInventory": true, "status": "COMPLETED", "output": {output}}}}}'.encode()


# --- the whole flow, in process ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_finished_i2v_job_posts_the_success_body_byte_for_byte_and_its_video_downloads(receiver, settings):
    with ImageServer(photo_bytes(900, 600, fmt="PNG")) as images:
        settings.SAFE_FETCH_ALLOW = (receiver.address, images.address)
        settings.PUBLIC_BASE_URL = "http://testserver"
        client = key_client()
        response = client.post(
            "/api/v1/i2v",
            json.dumps({"image_id": f"{images.base_url}/cat.png"}),
            content_type="application/json",
            HTTP_X_REQUEST_ID="abc-123",
        )
    assert response.status_code == 200
    job = Job.objects.get(request_id="abc-123")
    assert job.status == Job.COMPLETED, job.error_message

    [call] = receiver.wait_for(1)
    assert call.method == "POST"
    assert call.path == "/requests/abc-123/callback"
    assert call.headers["x-api-key"] == "game-key-123"
    assert call.headers["content-type"] == "application/json"
    url = json.loads(call.body)["data"]["output"]["url"]
    assert url.startswith(f"http://testserver/api/v1/jobs/{job.pk}/video?token=")
    assert call.body == expected_success("Generated Video", url)

    # Anyone can download it, with no credentials.
    video = Client().get(url.removeprefix("http://testserver"))
    assert video.status_code == 200 and video["Content-Type"] == "video/mp4"
    path = Path(settings.WORK_DIR) / "downloaded.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(video.streaming_content))
    assert media.probe_video(path).frames >= 14

    [sent] = CallbackDelivery.objects.filter(job=job)
    assert sent.status == CallbackDelivery.DELIVERED and sent.attempts == 1
    messages = list(job.events.values_list("message", flat=True))
    assert any(
        m.startswith(f"Callback attempt 1 to {receiver.base_url}/requests/abc-123/callback delivered") for m in messages
    )


@pytest.mark.django_db
def test_a_failed_job_sends_the_failure_body(receiver):
    job = i2v_job("r-fail")
    pipeline.fail(job, "provider_failed", "The provider could not make this video.")
    [row] = CallbackDelivery.objects.filter(job=job)
    delivery.deliver(row.pk)
    [call] = receiver.wait_for(1)
    assert call.path == "/requests/r-fail/callback"
    assert call.body == FAILURE_BODY


@pytest.mark.django_db
def test_a_cancelled_job_sends_the_failure_body(receiver):
    job = i2v_job("r-cancel")
    actions.cancel_job(job)
    delivery.deliver(CallbackDelivery.objects.get(job=job).pk)
    assert receiver.wait_for(1)[0].body == FAILURE_BODY


@pytest.mark.django_db
def test_the_outbox_row_commits_with_the_ending_or_not_at_all(receiver, monkeypatch):
    job = i2v_job("r-crash")

    def crash(*args, **kwargs):
        raise RuntimeError("worker died here")

    monkeypatch.setattr(outbox.formats, "body_for", crash)
    with pytest.raises(RuntimeError):
        pipeline.fail(job, "provider_failed", "No.")
    job.refresh_from_db()
    assert job.status == Job.QUEUED and not CallbackDelivery.objects.exists()


@pytest.mark.django_db
def test_a_job_ends_once_so_it_gets_one_callback(receiver):
    job = i2v_job()
    assert pipeline.fail(job, "x", "First.")
    assert not pipeline.fail(job, "x", "Second.")
    assert not pipeline.transition(Job.objects.get(pk=job.pk), Job.FAILED, "again", from_status=Job.QUEUED)
    assert CallbackDelivery.objects.filter(job=job).count() == 1


@pytest.mark.django_db
def test_a_job_not_from_the_i2v_endpoint_sends_no_callback(receiver):
    job = make_job(UserFactory())
    pipeline.fail(job, "x", "No.")
    assert not CallbackDelivery.objects.exists()


@pytest.mark.django_db
def test_without_callback_api_url_no_callback_is_sent_and_the_job_says_so(settings):
    settings.CALLBACK_API_URL = ""
    job = i2v_job()
    pipeline.fail(job, "x", "No.")
    assert not CallbackDelivery.objects.exists()
    assert job.events.filter(message="No callback sent: CALLBACK_API_URL is not set.").exists()


# --- retries and what is recorded ---------------------------------------------------------


@pytest.mark.django_db
def test_a_receiver_that_fails_twice_then_accepts_gets_the_same_body_three_times(receiver):
    receiver.answers.extend([500, 503])
    job = i2v_job("r-retry")
    pipeline.fail(job, "x", "No.")
    row = CallbackDelivery.objects.get(job=job)

    before = timezone.now()
    first = delivery.deliver(row.pk)
    assert not first.succeeded and first.status_code == 500
    row.refresh_from_db()
    assert row.status == CallbackDelivery.PENDING
    assert timedelta(seconds=9) < row.next_attempt_at - before < timedelta(seconds=11)
    second = delivery.deliver(row.pk)
    row.refresh_from_db()
    assert second.status_code == 503 and row.next_attempt_at - timezone.now() > timedelta(seconds=55)
    third = delivery.deliver(row.pk)
    assert third.succeeded and third.status_code == 200

    calls = receiver.wait_for(3)
    assert [call.body for call in calls] == [FAILURE_BODY] * 3
    row.refresh_from_db()
    assert row.status == CallbackDelivery.DELIVERED and row.attempts == 3 and row.delivered_at
    attempts = list(CallbackAttempt.objects.filter(delivery=row).values_list("status_code", "succeeded"))
    assert attempts == [(500, False), (503, False), (200, True)]
    assert CallbackAttempt.objects.filter(delivery=row).first().response_body == '{"error": "scripted"}'
    lines = [m for m in job.events.values_list("message", flat=True) if m.startswith("Callback attempt")]
    assert len(lines) == 3
    assert "answered 500" in lines[0] and "Next try in 10 s" in lines[0]
    assert "delivered (HTTP 200" in lines[2]


@pytest.mark.django_db
def test_a_delivery_gives_up_when_the_schedule_runs_out(receiver, settings):
    settings.CALLBACK_RETRY_SCHEDULE = [0.0]
    receiver.default_status = 500
    job = i2v_job()
    pipeline.fail(job, "x", "No.")
    row = CallbackDelivery.objects.get(job=job)
    delivery.deliver(row.pk)
    delivery.deliver(row.pk)
    row.refresh_from_db()
    assert row.status == CallbackDelivery.FAILED and row.next_attempt_at is None
    assert delivery.deliver(row.pk) is None  # nothing more is sent
    assert len(receiver.received) == 2
    assert job.events.filter(message__contains="Gave up after 2 attempts").exists()


@pytest.mark.django_db
def test_a_redirect_is_not_followed_and_counts_as_a_failure(receiver):
    receiver.answers.append(("redirect", "/requests/elsewhere"))
    job = i2v_job()
    pipeline.fail(job, "x", "No.")
    attempt = delivery.deliver(CallbackDelivery.objects.get(job=job).pk)
    assert not attempt.succeeded and attempt.status_code == 302
    assert "redirect, which is not followed" in attempt.error
    time_module.sleep(0.2)  # a followed redirect would have arrived by now
    assert [call.path for call in receiver.received] == ["/requests/req-1/callback"]


@pytest.mark.django_db
def test_a_callback_url_on_a_private_address_is_refused_and_recorded(receiver, settings):
    settings.SAFE_FETCH_ALLOW = ()
    job = i2v_job()
    pipeline.fail(job, "x", "No.")
    attempt = delivery.deliver(CallbackDelivery.objects.get(job=job).pk)
    assert not attempt.succeeded and attempt.status_code is None
    assert "private or local address" in attempt.error
    assert receiver.received == []


@pytest.mark.django_db
def test_a_receiver_that_does_not_answer_in_time_is_a_failed_attempt(receiver, settings):
    settings.CALLBACK_TIMEOUT = 1.0
    receiver.answers.append("hang")
    job = i2v_job()
    pipeline.fail(job, "x", "No.")
    started = time_module.monotonic()
    attempt = delivery.deliver(CallbackDelivery.objects.get(job=job).pk)
    assert time_module.monotonic() - started < 5
    assert not attempt.succeeded and "did not answer within 1 s" in attempt.error


@pytest.mark.django_db
def test_the_sweeper_hands_over_due_deliveries_only(receiver, django_capture_on_commit_callbacks):
    job = i2v_job()
    pipeline.fail(job, "x", "No.")
    row = CallbackDelivery.objects.get(job=job)
    assert sweep_deliveries() == 0  # handed to the queue on commit; not due yet
    CallbackDelivery.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_deliveries() == 1
    assert receiver.wait_for(1)[0].body == FAILURE_BODY
    row.refresh_from_db()
    assert row.status == CallbackDelivery.DELIVERED


@pytest.mark.django_db
def test_an_attempt_in_progress_is_not_made_twice(receiver):
    job = i2v_job()
    pipeline.fail(job, "x", "No.")
    row = CallbackDelivery.objects.get(job=job)
    CallbackDelivery.objects.filter(pk=row.pk).update(lease_until=timezone.now() + timedelta(seconds=30))
    assert delivery.deliver(row.pk) is None
    assert receiver.received == []


# --- staff sends it again -------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_can_send_a_delivered_callback_again_with_the_same_body(receiver, django_capture_on_commit_callbacks):
    job = i2v_job()
    pipeline.fail(job, "x", "No.")
    delivery.deliver(CallbackDelivery.objects.get(job=job).pk)
    with django_capture_on_commit_callbacks(execute=True):
        again = outbox.send_again(job, by="support@example.com")
    assert again.requested_by == "support@example.com"
    calls = receiver.wait_for(2)
    assert calls[0].body == calls[1].body == FAILURE_BODY
    assert job.events.filter(message__contains="queued again by support@example.com").exists()


# --- the link and the title -----------------------------------------------------------------


def test_a_callback_link_outlives_result_link_seconds_but_not_its_end(monkeypatch, settings):
    settings.RESULT_LINK_SECONDS = 3600
    now = timezone.now()
    long_link = links.sign("job-1", "video", until=now + timedelta(hours=24))
    short_link = links.sign("job-1", "video")
    later = time_module.time() + 2 * 3600
    monkeypatch.setattr(signing.time, "time", lambda: later)
    monkeypatch.setattr(timezone, "now", lambda: now + timedelta(hours=2))
    assert links.check("job-1", "video", long_link)
    assert not links.check("job-1", "video", short_link)
    assert not links.check("job-1", "poster", long_link)
    assert not links.check("job-2", "video", long_link)
    monkeypatch.setattr(timezone, "now", lambda: now + timedelta(hours=25))
    assert not links.check("job-1", "video", long_link)


def test_a_signed_end_cannot_be_moved():
    token = links.sign("job-1", "video", until=timezone.now() + timedelta(hours=1))
    value, _, rest = token.partition(":video:")
    moved = f"{value}:video:{int(rest.split(':', 1)[0]) + 86400}:{rest.split(':', 1)[1]}"
    assert not links.check("job-1", "video", moved)


@pytest.mark.parametrize(
    "prompt, title",
    [
        ("a cat sitting on a chair, digital art, trending", "A cat sitting on a chair"),
        ("NASA rocket_launch at dawn", "NASA rocket launch at dawn"),
        ("", "Generated Video"),
        ("  , oddly", "Generated Video"),
        ("word " * 40, ("Word " + "word " * 15).strip()),
    ],
)
def test_the_title_is_the_prompts_first_clause(prompt, title):
    assert title_from_prompt(prompt) == title


# --- the same x-request-id at the same moment (PostgreSQL) ------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_concurrent_double_post_makes_one_job(settings):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writes; the race needs PostgreSQL")
    with ImageServer(photo_bytes(900, 600, fmt="PNG")) as images:
        settings.SAFE_FETCH_ALLOW = (images.address,)
        client = key_client()
        answers: list = []
        barrier = threading.Barrier(4)

        def send():
            barrier.wait()
            try:
                answers.append(
                    client.post(
                        "/api/v1/i2v",
                        json.dumps({"image_id": f"{images.base_url}/a.png"}),
                        content_type="application/json",
                        HTTP_X_REQUEST_ID="twice",
                    )
                )
            finally:
                connection.close()

        threads = [threading.Thread(target=send) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert [a.status_code for a in answers] == [200] * 4
    assert len({a.content for a in answers}) == 1
    assert Job.objects.filter(request_id="twice").count() == 1


# --- the admin --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_job_page_shows_each_attempt_and_sends_the_callback_again(
    receiver, client, django_capture_on_commit_callbacks
):
    from django.urls import reverse

    staff = UserFactory(is_staff=True, is_superuser=True, username="support")
    client.force_login(staff)
    receiver.answers.append(500)
    job = i2v_job("r-admin")
    pipeline.fail(job, "x", "No.")
    row = CallbackDelivery.objects.get(job=job)
    delivery.deliver(row.pk)
    delivery.deliver(row.pk)

    page = client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert 'id="job-callbacks"' in page
    assert f"{receiver.base_url}/requests/r-admin/callback" in page
    assert "Failed: HTTP 500" in page and "Delivered: HTTP 200" in page
    assert "Send the callback again" in page

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:jobs_job_callback", args=[job.pk]))
    assert response.status_code == 302
    calls = receiver.wait_for(3)
    assert calls[2].body == calls[0].body == FAILURE_BODY
    assert CallbackDelivery.objects.filter(job=job).count() == 2
    assert CallbackDelivery.objects.filter(job=job, requested_by="support").exists()


@pytest.mark.django_db
def test_a_job_without_callbacks_offers_no_resend(client):
    from django.urls import reverse

    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    job = make_job(UserFactory())
    page = client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "Send the callback again" not in page and "No callbacks." in page
    response = client.post(reverse("admin:jobs_job_callback", args=[job.pk]), follow=True)
    assert "has no callback to send again" in response.content.decode()


# --- timing (MAX_CHECK_TIME, INITIAL_WAIT_TIME) for I2V jobs ---------------------------------


@pytest.mark.django_db
def test_an_i2v_job_waits_initial_wait_time_and_fails_clearly_past_max_check_time(
    receiver, settings, django_capture_on_commit_callbacks
):
    settings.INITIAL_WAIT_TIME = 120
    settings.MAX_CHECK_TIME = 420
    with ImageServer(photo_bytes(900, 600, fmt="PNG")) as images:
        settings.SAFE_FETCH_ALLOW = (receiver.address, images.address)
        with django_capture_on_commit_callbacks(execute=True):
            response = key_client().post(
                "/api/v1/i2v",
                json.dumps({"image_id": f"{images.base_url}/a.png"}),
                content_type="application/json",
                HTTP_X_REQUEST_ID="slow-one",
            )
    assert response.status_code == 200
    job = Job.objects.get(request_id="slow-one")
    assert job.status == Job.SUBMITTED
    assert job.next_poll_at - job.submitted_at >= timedelta(seconds=119)

    # The provider never finishes: once MAX_CHECK_TIME has passed, the job fails, and says why.
    Job.objects.filter(pk=job.pk).update(
        submitted_at=job.submitted_at - timedelta(seconds=421), next_poll_at=timezone.now()
    )
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.advance(job.pk)
    job.refresh_from_db()
    assert job.status == Job.FAILED and job.error_code == "timed_out"
    assert job.error_message.startswith("The provider did not finish within 7 minutes")
    assert receiver.wait_for(1)[0].body == FAILURE_BODY
