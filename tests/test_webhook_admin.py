"""Support's view of webhooks: endpoints, deliveries with every attempt inline,
and "send again" (the same body and webhook-id, signed afresh)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from standardwebhooks import Webhook

from jobs import pipeline
from jobs.models import CallbackDelivery
from jobs.webhooks import delivery
from jobs.webhooks.endpoints import create_endpoint
from tests.factories import UserFactory, make_job
from tests.fakes.callback_receiver import FakeCallbackReceiver


@pytest.fixture
def receiver(settings):
    with FakeCallbackReceiver() as fake:
        settings.SAFE_FETCH_ALLOW = (fake.address,)
        settings.WEBHOOK_RETRY_SCHEDULE = [0.0, 1.0]
        yield fake


@pytest.fixture
def staff(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True, username="support"))
    return client


@pytest.fixture
def sent(receiver):
    """A delivery that failed once (HTTP 500), then got through."""
    endpoint, secret = create_endpoint(
        owner=UserFactory(), url=f"{receiver.base_url}/hooks", public_base_url="https://i2v.example.com"
    )
    receiver.answers.append(500)
    pipeline.fail(make_job(endpoint.owner), "x", "No.")
    row = CallbackDelivery.objects.get(endpoint=endpoint)
    delivery.deliver(row.pk)
    delivery.deliver(row.pk)
    row.refresh_from_db()
    return row, secret


@pytest.mark.django_db
def test_a_delivery_page_shows_every_attempt(staff, sent):
    row, _ = sent
    page = staff.get(reverse("admin:jobs_callbackdelivery_change", args=[row.pk])).content.decode()
    assert row.msg_id in page and "job.failed" in page
    assert "500" in page and "200" in page and "scripted" in page
    assert "Send again" in page


@pytest.mark.django_db
def test_the_deliveries_list_finds_a_delivery_by_its_webhook_id(staff, sent):
    row, _ = sent
    page = staff.get(reverse("admin:jobs_callbackdelivery_changelist"), {"q": row.msg_id}).content.decode()
    assert f"/admin/jobs/callbackdelivery/{row.pk}/change/" in page


@pytest.mark.django_db
def test_send_again_sends_the_same_event_signed_afresh(staff, sent, receiver, django_capture_on_commit_callbacks):
    row, secret = sent
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(reverse("admin:jobs_callbackdelivery_send_again", args=[row.pk]))
    assert response.status_code == 302
    calls = receiver.wait_for(3)
    assert calls[2].body == calls[0].body and calls[2].headers["webhook-id"] == row.msg_id
    assert Webhook(secret).verify(calls[2].body, calls[2].headers)
    again = CallbackDelivery.objects.exclude(pk=row.pk).get()
    assert again.requested_by == "support" and again.status == CallbackDelivery.DELIVERED


@pytest.mark.django_db
def test_send_again_is_also_an_action_on_the_list(staff, sent, receiver, django_capture_on_commit_callbacks):
    row, _ = sent
    with django_capture_on_commit_callbacks(execute=True):
        staff.post(
            reverse("admin:jobs_callbackdelivery_changelist"),
            {"action": "send_again", "_selected_action": [row.pk]},
        )
    assert len(receiver.wait_for(3)) == 3


@pytest.mark.django_db
def test_the_endpoint_page_shows_its_state_and_latest_deliveries_but_no_secret(staff, sent):
    row, secret = sent
    page = staff.get(reverse("admin:jobs_webhookendpoint_change", args=[row.endpoint_id])).content.decode()
    assert row.endpoint.url in page and row.msg_id in page
    assert secret not in page
    listing = staff.get(reverse("admin:jobs_webhookendpoint_changelist")).content.decode()
    assert row.endpoint.url in listing
    everything = staff.get(
        reverse("admin:jobs_callbackdelivery_changelist"), {"endpoint__id__exact": str(row.endpoint_id)}
    )
    assert (
        everything.status_code == 200
        and f"/admin/jobs/callbackdelivery/{row.pk}/change/" in everything.content.decode()
    )


@pytest.mark.django_db
def test_a_410_disabled_endpoint_can_be_enabled_from_the_admin(staff, receiver):
    endpoint, _ = create_endpoint(
        owner=UserFactory(), url=f"{receiver.base_url}/hooks", public_base_url="https://i2v.example.com"
    )
    receiver.answers.append(410)
    pipeline.fail(make_job(endpoint.owner), "x", "No.")
    delivery.deliver(CallbackDelivery.objects.get(endpoint=endpoint).pk)
    endpoint.refresh_from_db()
    assert not endpoint.is_enabled
    page = staff.get(reverse("admin:jobs_webhookendpoint_change", args=[endpoint.pk])).content.decode()
    assert "410 Gone" in page
    staff.post(
        reverse("admin:jobs_webhookendpoint_changelist"),
        {"action": "enable_endpoints", "_selected_action": [endpoint.pk]},
    )
    endpoint.refresh_from_db()
    assert endpoint.is_enabled


@pytest.mark.django_db
def test_staff_without_the_operate_permission_cannot_send_again(client, sent):
    from django.contrib.auth.models import Permission

    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_callbackdelivery"))
    client.force_login(viewer)
    row, _ = sent
    page = client.get(reverse("admin:jobs_callbackdelivery_change", args=[row.pk])).content.decode()
    assert "Send again" not in page
    assert client.post(reverse("admin:jobs_callbackdelivery_send_again", args=[row.pk])).status_code == 403
