"""``/api/v1/webhooks``: endpoints (list, create, detail, update, delete), their
secrets (shown once, rotated), their deliveries with attempts, redelivery; a
job's deliveries; the job-callback secret. Per-user isolation throughout."""

from __future__ import annotations

import pytest
from standardwebhooks import Webhook

from jobs import pipeline
from jobs.models import CallbackDelivery, WebhookEndpoint
from jobs.webhooks import delivery
from tests.api_helpers import key_client
from tests.factories import make_job
from tests.fakes.callback_receiver import FakeCallbackReceiver


@pytest.fixture
def receiver(settings):
    with FakeCallbackReceiver() as fake:
        settings.SAFE_FETCH_ALLOW = (fake.address,)
        settings.WEBHOOK_RETRY_SCHEDULE = [0.0, 1.0, 1.0]
        yield fake


@pytest.fixture
def api():
    return key_client()


def create(api, receiver, **body):
    return api.post("/api/v1/webhooks", {"url": f"{receiver.base_url}/hooks", **body}, format="json")


@pytest.mark.django_db
def test_creating_an_endpoint_answers_its_secret_once(api, receiver):
    response = create(api, receiver, description="Orders")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("whsec_")
    assert body["events"] == ["job.completed", "job.failed", "job.cancelled"]
    assert body["enabled"] is True and body["description"] == "Orders"
    assert response["Location"] == f"/api/v1/webhooks/{body['id']}"
    listed = api.get("/api/v1/webhooks").json()
    assert [e["id"] for e in listed] == [body["id"]] and "secret" not in listed[0]
    assert "secret" not in api.get(f"/api/v1/webhooks/{body['id']}").json()


@pytest.mark.django_db
def test_events_may_be_chosen_and_unknown_ones_are_refused(api, receiver):
    chosen = create(api, receiver, events=["job.started", "job.failed"])
    assert chosen.json()["events"] == ["job.started", "job.failed"]
    bad = create(api, receiver, events=["job.done"])
    assert bad.status_code == 400 and "events" in bad.json()["error"]["fields"]
    empty = create(api, receiver, events=[])
    assert empty.status_code == 400


@pytest.mark.parametrize(
    "url, words",
    [
        ("http://127.0.0.1:9/hooks", "private or local address"),
        ("ftp://example.com/x", "http"),
        ("", "may not be blank"),
        ("http://169.254.169.254/latest", "private or local address"),
    ],
)
@pytest.mark.django_db
def test_a_url_we_would_not_post_to_is_refused_with_a_reason(api, settings, url, words):
    settings.SAFE_FETCH_ALLOW = ()
    response = api.post("/api/v1/webhooks", {"url": url}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert "url" in error["fields"] and words in error["message"]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_an_unknown_field_and_a_malformed_body_are_400(api, receiver):
    response = create(api, receiver, secret="whsec_mine")
    assert response.status_code == 400 and "secret" in response.json()["error"]["fields"]
    garbage = api.post("/api/v1/webhooks", "{not json", content_type="application/json")
    assert garbage.status_code == 400


@pytest.mark.django_db
def test_update_changes_only_what_is_sent(api, receiver):
    endpoint = create(api, receiver).json()
    response = api.patch(f"/api/v1/webhooks/{endpoint['id']}", {"description": "New"}, format="json")
    assert response.status_code == 200
    assert response.json()["description"] == "New" and response.json()["url"] == endpoint["url"]
    response = api.patch(f"/api/v1/webhooks/{endpoint['id']}", {"events": ["job.completed"]}, format="json")
    assert response.json()["events"] == ["job.completed"]
    disabled = api.patch(f"/api/v1/webhooks/{endpoint['id']}", {"enabled": False}, format="json").json()
    assert disabled["enabled"] is False and disabled["disabled_reason"] == "Disabled by its owner."


@pytest.mark.django_db
def test_delete_removes_it(api, receiver):
    endpoint = create(api, receiver).json()
    assert api.delete(f"/api/v1/webhooks/{endpoint['id']}").status_code == 204
    assert api.get(f"/api/v1/webhooks/{endpoint['id']}").status_code == 404
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_rotating_answers_the_new_secret_and_both_sign_for_a_day(api, receiver):
    endpoint = create(api, receiver).json()
    old = endpoint["secret"]
    rotated = api.post(f"/api/v1/webhooks/{endpoint['id']}/rotate-secret")
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new != old and rotated.json()["previous_secret_expires_at"]
    assert api.get(f"/api/v1/webhooks/{endpoint['id']}").json()["previous_secret_expires_at"]

    pipeline.fail(make_job(api.user), "x", "No.")
    delivery.deliver(CallbackDelivery.objects.get().pk)
    [call] = receiver.wait_for(1)
    assert Webhook(old).verify(call.body, call.headers) and Webhook(new).verify(call.body, call.headers)


@pytest.mark.django_db
def test_deliveries_are_listed_with_attempts_and_one_can_be_sent_again(
    api, receiver, django_capture_on_commit_callbacks
):
    endpoint = create(api, receiver).json()
    receiver.answers.append(503)
    job = make_job(api.user)
    pipeline.fail(job, "x", "No.")
    row = CallbackDelivery.objects.get()
    delivery.deliver(row.pk)
    delivery.deliver(row.pk)

    page = api.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries").json()
    [shown] = page["results"]
    assert shown["webhook_id"] == row.msg_id and shown["event_type"] == "job.failed"
    assert shown["status"] == "delivered" and shown["job"] == str(job.pk)
    first, second = shown["attempts"]
    assert first["status_code"] == 503 and not first["succeeded"] and first["next_attempt_at"]
    assert first["response_body"] == '{"error": "scripted"}' and first["duration_ms"] >= 0
    assert second["status_code"] == 200 and second["succeeded"]
    assert api.get(f"/api/v1/jobs/{job.pk}/deliveries").json()["results"] == page["results"]

    with django_capture_on_commit_callbacks(execute=True):
        again = api.post(f"/api/v1/webhooks/{endpoint['id']}/deliveries/{row.pk}/redeliver")
    assert again.status_code == 202 and again.json()["webhook_id"] == row.msg_id
    calls = receiver.wait_for(3)
    assert calls[2].headers["webhook-id"] == row.msg_id
    assert Webhook(endpoint["secret"]).verify(calls[2].body, calls[2].headers)


@pytest.mark.django_db
def test_a_disabled_endpoint_is_enabled_again_through_update(api, receiver, django_capture_on_commit_callbacks):
    endpoint = create(api, receiver).json()
    receiver.answers.append(410)
    pipeline.fail(make_job(api.user), "x", "No.")
    delivery.deliver(CallbackDelivery.objects.get().pk)
    shown = api.get(f"/api/v1/webhooks/{endpoint['id']}").json()
    assert shown["enabled"] is False and "410 Gone" in shown["disabled_reason"]
    row = CallbackDelivery.objects.get()
    refused = api.post(f"/api/v1/webhooks/{endpoint['id']}/deliveries/{row.pk}/redeliver")
    assert refused.status_code == 409

    pipeline.fail(make_job(api.user), "x", "No.")  # written while disabled? no: nothing is written
    assert CallbackDelivery.objects.count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        enabled = api.patch(f"/api/v1/webhooks/{endpoint['id']}", {"enabled": True}, format="json")
    assert enabled.json()["enabled"] is True and enabled.json()["disabled_reason"] == ""


@pytest.mark.django_db
def test_another_users_endpoints_and_deliveries_are_404(api, receiver):
    endpoint = create(api, receiver).json()
    pipeline.fail(make_job(api.user), "x", "No.")
    row = CallbackDelivery.objects.get()
    stranger = key_client()
    assert stranger.get("/api/v1/webhooks").json() == []
    for method, path in [
        ("get", f"/api/v1/webhooks/{endpoint['id']}"),
        ("patch", f"/api/v1/webhooks/{endpoint['id']}"),
        ("delete", f"/api/v1/webhooks/{endpoint['id']}"),
        ("post", f"/api/v1/webhooks/{endpoint['id']}/rotate-secret"),
        ("get", f"/api/v1/webhooks/{endpoint['id']}/deliveries"),
        ("post", f"/api/v1/webhooks/{endpoint['id']}/deliveries/{row.pk}/redeliver"),
        ("get", f"/api/v1/jobs/{row.job_id}/deliveries"),
    ]:
        assert getattr(stranger, method)(path, format="json").status_code == 404, (method, path)
    assert WebhookEndpoint.objects.filter(pk=endpoint["id"]).exists()


@pytest.mark.django_db
def test_the_job_callback_secret_is_one_per_account_and_rotates(api):
    first = api.get("/api/v1/webhooks/job-callback-secret").json()
    assert first["secret"].startswith("whsec_") and first["previous_secret_expires_at"] is None
    assert api.get("/api/v1/webhooks/job-callback-secret").json() == first
    rotated = api.post("/api/v1/webhooks/job-callback-secret/rotate").json()
    assert rotated["secret"] != first["secret"] and rotated["previous_secret_expires_at"]
    assert key_client().get("/api/v1/webhooks/job-callback-secret").json()["secret"] != rotated["secret"]


@pytest.mark.django_db
def test_without_a_key_every_webhook_operation_is_401(client):
    for path in ("/api/v1/webhooks", "/api/v1/webhooks/job-callback-secret"):
        assert client.get(path).status_code == 401
