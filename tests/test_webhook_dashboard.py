"""The dashboard's webhook pages: endpoints with a secret shown once, each
endpoint's deliveries and attempts, the notice after a 410, the job page's
Webhooks section, sending a delivery again."""

from __future__ import annotations

import pytest
from django.urls import reverse
from standardwebhooks import Webhook

from jobs import pipeline
from jobs.models import CallbackDelivery, WebhookEndpoint
from jobs.webhooks import delivery
from tests.factories import UserFactory, make_job
from tests.fakes.callback_receiver import FakeCallbackReceiver


@pytest.fixture
def receiver(settings):
    with FakeCallbackReceiver() as fake:
        settings.SAFE_FETCH_ALLOW = (fake.address,)
        settings.WEBHOOK_RETRY_SCHEDULE = [0.0, 1.0, 1.0, 1.0]
        yield fake


def add_endpoint(client, url, events=("job.completed", "job.failed")):
    return client.post(reverse("webhooks"), {"url": url, "events": list(events), "description": "Orders"})


@pytest.mark.django_db
def test_adding_an_endpoint_shows_its_secret_once(logged_in, user, receiver):
    response = add_endpoint(logged_in, f"{receiver.base_url}/hooks")
    assert response.status_code == 201
    endpoint = WebhookEndpoint.objects.get(owner=user)
    page = response.content.decode()
    assert endpoint.secret in page and "shown only this once" in page
    assert response["Cache-Control"] == "no-store"
    assert endpoint.events == ["job.completed", "job.failed"] and endpoint.description == "Orders"

    again = logged_in.get(reverse("webhooks")).content.decode()
    assert endpoint.url in again and endpoint.secret not in again
    assert endpoint.secret not in logged_in.get(reverse("webhook-detail", args=[endpoint.pk])).content.decode()


@pytest.mark.django_db
def test_a_private_address_is_refused_with_a_reason(logged_in, settings):
    settings.SAFE_FETCH_ALLOW = ()
    response = add_endpoint(logged_in, "http://127.0.0.1:8000/hooks")
    assert response.status_code == 400
    assert "private or local address" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_no_event_chosen_is_refused(logged_in, receiver):
    response = add_endpoint(logged_in, f"{receiver.base_url}/hooks", events=())
    assert response.status_code == 400 and "Choose at least one event." in response.content.decode()


@pytest.mark.django_db
def test_the_endpoint_page_lists_deliveries_with_each_attempt_and_sends_one_again(
    logged_in, user, receiver, django_capture_on_commit_callbacks
):
    add_endpoint(logged_in, f"{receiver.base_url}/hooks")
    endpoint = WebhookEndpoint.objects.get(owner=user)
    receiver.answers.append(500)
    job = make_job(user)
    pipeline.fail(job, "x", "No.")
    row = CallbackDelivery.objects.get(endpoint=endpoint)
    delivery.deliver(row.pk)
    delivery.deliver(row.pk)

    page = logged_in.get(reverse("webhook-detail", args=[endpoint.pk])).content.decode()
    assert row.msg_id in page and "job.failed" in page
    assert "HTTP 500" in page and "HTTP 200" in page and "Delivered" in page
    assert "{&quot;error&quot;: &quot;scripted&quot;}" in page  # the answer's body

    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in.post(reverse("webhook-redeliver", args=[row.pk]))
    assert response.status_code == 302
    calls = receiver.wait_for(3)
    assert calls[2].headers["webhook-id"] == calls[0].headers["webhook-id"] == row.msg_id
    assert Webhook(endpoint.secret).verify(calls[2].body, calls[2].headers)


@pytest.mark.django_db
def test_after_a_410_the_pages_say_the_endpoint_is_disabled_and_it_can_be_enabled(logged_in, user, receiver):
    add_endpoint(logged_in, f"{receiver.base_url}/hooks")
    endpoint = WebhookEndpoint.objects.get(owner=user)
    receiver.answers.append(410)
    pipeline.fail(make_job(user), "x", "No.")
    delivery.deliver(CallbackDelivery.objects.get(endpoint=endpoint).pk)

    for url in (reverse("webhooks"), reverse("webhook-detail", args=[endpoint.pk])):
        page = logged_in.get(url).content.decode()
        assert "Disabled" in page and "410 Gone" in page and "Enable again" in page

    response = logged_in.post(reverse("webhook-enable", args=[endpoint.pk]), follow=True)
    assert "enabled again" in response.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.is_enabled and endpoint.disabled_reason == ""


@pytest.mark.django_db
def test_rotating_shows_the_new_secret_once(logged_in, user, receiver):
    add_endpoint(logged_in, f"{receiver.base_url}/hooks")
    endpoint = WebhookEndpoint.objects.get(owner=user)
    old = endpoint.secret
    page = logged_in.post(reverse("webhook-rotate", args=[endpoint.pk])).content.decode()
    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.secret in page and endpoint.previous_secret == old
    assert endpoint.secret not in logged_in.get(reverse("webhook-detail", args=[endpoint.pk])).content.decode()


@pytest.mark.django_db
def test_the_job_page_has_a_webhooks_section(logged_in, user, receiver):
    add_endpoint(logged_in, f"{receiver.base_url}/hooks")
    job = make_job(user)
    assert "No webhooks sent about this job yet" in logged_in.get(reverse("job-detail", args=[job.pk])).content.decode()
    pipeline.fail(job, "x", "No.")
    delivery.deliver(CallbackDelivery.objects.get(job=job).pk)
    page = logged_in.get(reverse("job-detail", args=[job.pk])).content.decode()
    assert 'id="job-webhooks"' in page and "job.failed" in page and "HTTP 200" in page


@pytest.mark.django_db
def test_another_users_endpoint_and_deliveries_are_not_found(logged_in, receiver):
    other = UserFactory()
    from jobs.webhooks.endpoints import create_endpoint

    endpoint, _ = create_endpoint(owner=other, url=f"{receiver.base_url}/x", public_base_url="https://i2v.example.com")
    pipeline.fail(make_job(other), "x", "No.")
    row = CallbackDelivery.objects.get(endpoint=endpoint)
    assert logged_in.get(reverse("webhook-detail", args=[endpoint.pk])).status_code == 404
    assert logged_in.post(reverse("webhook-redeliver", args=[row.pk])).status_code == 404
    assert logged_in.post(reverse("webhook-delete", args=[endpoint.pk])).status_code == 404
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


@pytest.mark.django_db
def test_the_job_callback_secret_is_shown_and_can_be_rotated(logged_in, user):
    page = logged_in.get(reverse("webhooks")).content.decode()
    from jobs.models import JobCallbackSecret

    secret = JobCallbackSecret.objects.get(user=user)
    assert secret.secret in page
    logged_in.post(reverse("job-callback-secret-rotate"))
    secret.refresh_from_db()
    assert secret.previous_secret and secret.secret in logged_in.get(reverse("webhooks")).content.decode()


@pytest.mark.django_db
def test_the_pages_need_a_login(client):
    response = client.get(reverse("webhooks"))
    assert response.status_code == 302 and "/login/" in response["Location"]
