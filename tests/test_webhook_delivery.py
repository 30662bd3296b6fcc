"""Deliveries to webhook endpoints and jobs' callback URLs: Standard Webhooks
headers that verify, retries with one webhook-id, Retry-After, 410, redirects,
the events filter, a crash mid-attempt, and the caps that keep a hanging
receiver from taking the workers."""

from __future__ import annotations

import json
import time as time_module
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.conf import Conf
from standardwebhooks import Webhook

from jobs import pipeline
from jobs.models import CallbackAttempt, CallbackDelivery, Job, WebhookEndpoint
from jobs.webhooks import delivery, dispatch, transport
from jobs.webhooks.endpoints import create_endpoint, enable_endpoint, job_callback_secret
from tests.api_helpers import key_client
from tests.factories import UserFactory, make_job
from tests.fakes.callback_receiver import FakeCallbackReceiver
from tests.pipeline_helpers import run_until_final


@pytest.fixture
def receiver(settings):
    with FakeCallbackReceiver() as fake:
        settings.SAFE_FETCH_ALLOW = (fake.address,)
        settings.WEBHOOK_RETRY_SCHEDULE = [0.0, 1.0, 1.0, 1.0]
        settings.WEBHOOK_TIMEOUT = 5.0
        yield fake


def register(receiver, owner=None, events=None, path="/hooks") -> tuple[WebhookEndpoint, str]:
    return create_endpoint(
        owner=owner or UserFactory(),
        url=f"{receiver.base_url}{path}",
        events=events,
        public_base_url="https://i2v.example.com",
    )


def verified(call, secret: str) -> dict:
    return Webhook(secret).verify(call.body, call.headers)


def only_delivery(**filters) -> CallbackDelivery:
    [row] = CallbackDelivery.objects.filter(**filters)
    return row


# --- what is sent ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_completed_job_is_posted_signed_with_the_job_as_the_api_shows_it(receiver):
    endpoint, secret = register(receiver)
    client = key_client(endpoint.owner)
    job = make_job(endpoint.owner)
    job = run_until_final(job)
    assert job.status == Job.COMPLETED

    [call] = receiver.wait_for(1)
    assert call.path == "/hooks" and call.headers["content-type"] == "application/json"
    body = verified(call, secret)
    assert body["type"] == "job.completed"
    assert call.headers["webhook-id"].startswith("msg_")
    shown = client.get(f"/api/v1/jobs/{job.pk}").json()
    assert body["data"]["id"] == shown["id"] and body["data"]["status"] == "completed"
    assert body["data"].keys() == shown.keys()
    assert body["data"]["parameters"] == shown["parameters"]
    video = body["data"]["video"]["url"]
    assert video.startswith(f"https://i2v.example.com/api/v1/jobs/{job.pk}/video?token=")
    # The link opens without a key.
    from django.test import Client

    assert Client().get(video.removeprefix("https://i2v.example.com")).status_code == 200
    row = only_delivery(endpoint=endpoint)
    assert row.status == CallbackDelivery.DELIVERED and row.msg_id == call.headers["webhook-id"]


@pytest.mark.django_db
def test_a_receiver_that_fails_three_times_gets_the_fourth_attempt_with_the_same_id(receiver):
    receiver.answers.extend([500, 502, 504])
    endpoint, secret = register(receiver)
    job = make_job(endpoint.owner)
    pipeline.fail(job, "x", "No.")
    row = only_delivery(endpoint=endpoint)

    attempts = [delivery.deliver(row.pk) for _ in range(4)]
    assert [a.status_code for a in attempts] == [500, 502, 504, 200]
    assert [a.succeeded for a in attempts] == [False, False, False, True]
    calls = receiver.wait_for(4)
    assert len({call.headers["webhook-id"] for call in calls}) == 1
    assert len({call.body for call in calls}) == 1
    for call in calls:
        assert verified(call, secret)["type"] == "job.failed"
    row.refresh_from_db()
    assert row.status == CallbackDelivery.DELIVERED and row.attempts == 4
    assert delivery.deliver(row.pk) is None  # delivered: nothing more is sent


@pytest.mark.django_db
def test_retries_follow_the_schedule_with_a_little_jitter_and_give_up_when_it_runs_out(receiver, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [0.0, 100.0, 1000.0]
    receiver.default_status = 500
    endpoint, _ = register(receiver)
    pipeline.fail(make_job(endpoint.owner), "x", "No.")
    row = only_delivery(endpoint=endpoint)
    for pause in (100.0, 1000.0):
        before = timezone.now()
        attempt = delivery.deliver(row.pk)
        assert pause * 0.94 <= (attempt.next_attempt_at - before).total_seconds() <= pause * 1.06 + 1
    last = delivery.deliver(row.pk)
    row.refresh_from_db()
    assert last.next_attempt_at is None and row.status == CallbackDelivery.FAILED
    assert row.job.events.filter(message__contains="Gave up after 3 attempts").exists()


@pytest.mark.django_db
def test_a_redirect_is_not_followed_and_is_a_failed_attempt(receiver):
    receiver.answers.append(("redirect", "/elsewhere"))
    endpoint, _ = register(receiver)
    pipeline.fail(make_job(endpoint.owner), "x", "No.")
    attempt = delivery.deliver(only_delivery(endpoint=endpoint).pk)
    assert not attempt.succeeded and attempt.status_code == 302
    assert "redirect, which is not followed" in attempt.error
    assert receiver.wait_for(1)[0].path == "/hooks"
    time_module.sleep(0.2)  # a followed redirect would have arrived by now
    assert [call.path for call in receiver.received] == ["/hooks"]
    assert only_delivery(endpoint=endpoint).status == CallbackDelivery.PENDING


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.django_db
def test_retry_after_on_429_and_503_sets_the_next_attempt(receiver, status):
    receiver.answers.append((status, {"Retry-After": "120"}))
    endpoint, _ = register(receiver)
    pipeline.fail(make_job(endpoint.owner), "x", "No.")
    before = timezone.now()
    attempt = delivery.deliver(only_delivery(endpoint=endpoint).pk)
    assert attempt.status_code == status
    assert 119 <= (attempt.next_attempt_at - before).total_seconds() <= 122  # not the schedule's 1 s
    assert (
        CallbackDelivery.objects.get(endpoint=endpoint)
        .job.events.filter(message__contains="as its Retry-After asked")
        .exists()
    )


@pytest.mark.django_db
def test_a_huge_retry_after_is_capped_and_a_date_is_understood(receiver, settings):
    settings.WEBHOOK_RETRY_AFTER_MAX = 600
    receiver.answers.append((429, {"Retry-After": "999999"}))
    endpoint, _ = register(receiver)
    pipeline.fail(make_job(endpoint.owner), "x", "No.")
    row = only_delivery(endpoint=endpoint)
    before = timezone.now()
    assert 599 <= (delivery.deliver(row.pk).next_attempt_at - before).total_seconds() <= 602
    http_date = (timezone.now() + timedelta(seconds=300)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    receiver.answers.append((503, {"Retry-After": http_date}))
    before = timezone.now()
    assert 295 <= (delivery.deliver(row.pk).next_attempt_at - before).total_seconds() <= 302


@pytest.mark.django_db
def test_a_410_disables_the_endpoint_and_its_other_deliveries_wait(receiver):
    receiver.answers.append(410)
    endpoint, _ = register(receiver)
    for _ in range(2):
        pipeline.fail(make_job(endpoint.owner), "x", "No.")
    first, second = CallbackDelivery.objects.filter(endpoint=endpoint).order_by("id")
    attempt = delivery.deliver(first.pk)
    assert attempt.status_code == 410
    endpoint.refresh_from_db()
    first.refresh_from_db()
    assert not endpoint.is_enabled and "410 Gone" in endpoint.disabled_reason
    assert first.status == CallbackDelivery.FAILED
    # Nothing more goes to it: the other delivery is not due while it is disabled,
    # and a new event writes nothing.
    CallbackDelivery.objects.filter(pk=second.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert not delivery.due().filter(pk=second.pk).exists()
    pipeline.fail(make_job(endpoint.owner), "x", "No.")
    assert CallbackDelivery.objects.filter(endpoint=endpoint).count() == 2
    assert len(receiver.received) == 1

    enable_endpoint(endpoint)
    assert delivery.due().filter(pk=second.pk).exists()


@pytest.mark.django_db
def test_the_events_filter_is_respected(receiver):
    owner = UserFactory()
    failures, _ = register(receiver, owner, events=["job.failed"], path="/failures")
    everything, _ = register(receiver, owner, events=["job.started", "job.completed"], path="/all")
    job = run_until_final(make_job(owner))
    assert job.status == Job.COMPLETED
    assert not CallbackDelivery.objects.filter(endpoint=failures).exists()
    kinds = list(CallbackDelivery.objects.filter(endpoint=everything).values_list("event_type", flat=True))
    assert kinds == ["job.started", "job.completed"]
    pipeline.fail(make_job(owner), "x", "No.")
    assert CallbackDelivery.objects.filter(endpoint=failures, event_type="job.failed").count() == 1


@pytest.mark.django_db
def test_another_users_endpoint_hears_nothing(receiver):
    endpoint, _ = register(receiver)
    pipeline.fail(make_job(UserFactory()), "x", "No.")
    assert not CallbackDelivery.objects.filter(endpoint=endpoint).exists()


@pytest.mark.django_db(transaction=True)
def test_a_jobs_own_callback_url_gets_a_signed_delivery(receiver, settings):
    settings.PUBLIC_BASE_URL = "https://i2v.example.com"
    client = key_client()
    from tests.api_helpers import image_file

    response = client.post(
        "/api/v1/jobs", {"image": image_file(), "callback_url": f"{receiver.base_url}/done/42"}, format="multipart"
    )
    assert response.status_code == 201, response.content
    job = Job.objects.get(pk=response.json()["id"])
    job = run_until_final(job)
    assert job.status == Job.COMPLETED
    [call] = receiver.wait_for(1)
    assert call.path == "/done/42"
    secret = client.get("/api/v1/webhooks/job-callback-secret").json()["secret"]
    assert secret == job_callback_secret(job.owner).secret
    body = verified(call, secret)
    assert body["type"] == "job.completed" and body["data"]["id"] == str(job.pk)
    [row] = client.get(f"/api/v1/jobs/{job.pk}/deliveries").json()["results"]
    assert row["webhook_id"] == call.headers["webhook-id"] and row["endpoint"] is None
    assert row["status"] == "delivered" and row["attempts"][0]["status_code"] == 200


@pytest.mark.django_db
def test_a_callback_url_on_a_private_address_is_refused_at_creation(settings):
    settings.SAFE_FETCH_ALLOW = ()
    from tests.api_helpers import image_file

    response = key_client().post(
        "/api/v1/jobs", {"image": image_file(), "callback_url": "http://127.0.0.1:9/x"}, format="multipart"
    )
    assert response.status_code == 400
    assert "callback_url" in response.json()["error"]["fields"]
    assert not Job.objects.exists()


# --- crash safety ---------------------------------------------------------------------------------


class WorkerDied(BaseException):
    """What a killed worker looks like from inside: nothing after it runs."""


@pytest.mark.django_db
def test_an_attempt_whose_worker_died_is_retried_after_its_lease_with_the_same_id(
    receiver, monkeypatch, django_capture_on_commit_callbacks
):
    endpoint, _ = register(receiver)
    pipeline.fail(make_job(endpoint.owner), "x", "No.")
    row = only_delivery(endpoint=endpoint)
    real_post = transport.post

    def post_then_die(*args, **kwargs):
        real_post(*args, **kwargs)  # the receiver got it; the worker dies before recording
        raise WorkerDied

    monkeypatch.setattr(transport, "post", post_then_die)
    with pytest.raises(WorkerDied):
        delivery.deliver(row.pk)
    monkeypatch.setattr(transport, "post", real_post)
    row.refresh_from_db()
    assert row.status == CallbackDelivery.PENDING and row.lease_until > timezone.now()
    assert dispatch.dispatch() == 0  # its lease still holds it

    # The lease runs out; the sweeper hands it over again.
    later = row.lease_until + timedelta(seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch.dispatch() == 1
    first, second = receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == row.msg_id
    assert first.body == second.body
    row.refresh_from_db()
    assert row.status == CallbackDelivery.DELIVERED and row.attempts == 2
    assert CallbackAttempt.objects.filter(delivery=row).count() == 1  # the dead worker recorded nothing


@pytest.mark.django_db
def test_a_batch_task_delivered_twice_or_late_makes_no_extra_attempt(receiver, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)  # queued, not run: we run the task by hand
    endpoint, _ = register(receiver)
    pipeline.fail(make_job(endpoint.owner), "x", "No.")
    row = only_delivery(endpoint=endpoint)
    CallbackDelivery.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
    assert dispatch.dispatch() == 1
    row.refresh_from_db()
    token = row.lease_until
    from jobs.tasks import deliver_callbacks

    monkeypatch.setattr(Conf, "SYNC", True)
    deliver_callbacks([row.pk], token.isoformat())
    deliver_callbacks([row.pk], token.isoformat())  # django-q2 redelivers it
    assert len(receiver.wait_for(1)) == 1
    row.refresh_from_db()
    assert row.attempts == 1


# --- the caps -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_one_receiver_gets_one_batch_in_flight_and_the_others_get_the_free_slots(receiver, settings, monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", False)  # queued, not run: we look at what was handed over
    settings.WEBHOOK_ENDPOINT_CONCURRENCY = 3
    settings.WEBHOOK_MAX_TASKS = 2
    slow, _ = register(receiver, path="/slow")
    for _ in range(10):
        pipeline.fail(make_job(slow.owner), "x", "No.")
    other, _ = register(receiver, path="/other")
    pipeline.fail(make_job(other.owner), "x", "No.")
    third, _ = register(receiver, path="/third")
    pipeline.fail(make_job(third.owner), "x", "No.")
    # Due in this order: the slow receiver's backlog first, then the others'.
    for seconds, endpoint in ((30, slow), (20, other), (10, third)):
        due = timezone.now() - timedelta(seconds=seconds)
        CallbackDelivery.objects.filter(endpoint=endpoint).update(next_attempt_at=due)

    assert dispatch.dispatch() == 4  # 3 for the first receiver in line, 1 for the next; no slot for the third
    held = CallbackDelivery.objects.filter(lease_until__isnull=False)
    assert held.filter(endpoint=slow).count() == 3 and held.filter(endpoint=other).count() == 1
    assert dispatch.dispatch() == 0  # both slots are taken until those finish

    CallbackDelivery.objects.filter(endpoint=other).update(lease_until=None, status=CallbackDelivery.DELIVERED)
    assert dispatch.dispatch() == 1  # the freed slot goes to the third receiver, not to more of the first
    assert held.filter(endpoint=third).count() == 1 and held.filter(endpoint=slow).count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_hanging_receiver_costs_one_timeout_per_batch_not_per_delivery(receiver, settings):
    settings.WEBHOOK_TIMEOUT = 1.0
    settings.WEBHOOK_ENDPOINT_CONCURRENCY = 4
    settings.WEBHOOK_RETRY_SCHEDULE = [60.0, 60.0]  # not sent on commit: this test makes the attempts
    receiver.default_status = "hang"
    endpoint, _ = register(receiver)
    for _ in range(4):
        pipeline.fail(make_job(endpoint.owner), "x", "No.")
    CallbackDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    ids = list(CallbackDelivery.objects.values_list("pk", flat=True))
    started = time_module.monotonic()
    from jobs.tasks import deliver_callbacks

    token = timezone.now() + timedelta(seconds=60)  # as the dispatcher stamps a batch
    CallbackDelivery.objects.update(lease_until=token)
    Conf.SYNC, was = False, Conf.SYNC
    try:
        deliver_callbacks(ids, token.isoformat())
    finally:
        Conf.SYNC = was
        receiver.release()
    assert time_module.monotonic() - started < 3.5  # four attempts side by side, not 4 s in a row
    errors = list(CallbackAttempt.objects.values_list("error", flat=True))
    assert len(errors) == 4 and all("did not answer within 1 s" in error for error in errors)


def test_the_answer_is_kept_to_2_kb():
    assert transport.BODY_CAP == 2048


@pytest.mark.django_db
def test_a_long_answer_is_recorded_cut_at_2_kb(receiver, monkeypatch):
    endpoint, _ = register(receiver)
    pipeline.fail(make_job(endpoint.owner), "x", "No.")
    real_post = transport.post

    def long_answer(*args, **kwargs):
        answer = real_post(*args, **kwargs)
        return transport.Answer(answer.status, json.dumps({"pad": "x" * 5000}).encode()[: transport.BODY_CAP])

    monkeypatch.setattr(transport, "post", long_answer)
    attempt = delivery.deliver(only_delivery(endpoint=endpoint).pk)
    assert len(attempt.response_body) == 2048 and attempt.duration_ms >= 0
