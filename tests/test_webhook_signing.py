"""Standard Webhooks signatures, checked with the reference ``standardwebhooks``
package: secrets, the three headers, and a rotation's 24 hours of two signatures."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from jobs.models import WebhookEndpoint
from jobs.webhooks import signing
from jobs.webhooks.endpoints import rotate_secret
from tests.factories import UserFactory

BODY = '{"type":"job.completed","timestamp":"2026-03-14T09:26:55Z","data":{"id":"x"}}'


def endpoint(**fields) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        owner=UserFactory(),
        url="https://hooks.example.com/i2v",
        events=["job.completed"],
        public_base_url="https://i2v.example.com",
        secret=signing.new_secret(),
        **fields,
    )


def test_a_secret_is_whsec_and_base64_of_at_least_24_random_bytes():
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert signing.new_secret() != secret


def test_a_signature_is_the_one_the_reference_package_makes():
    secret = signing.new_secret()
    at = datetime(2026, 3, 14, 9, 26, 55, tzinfo=UTC)
    ours = signing.sign(secret, "msg_abc", int(at.timestamp()), BODY)
    assert ours == Webhook(secret).sign("msg_abc", at, BODY)


@pytest.mark.django_db
def test_the_headers_verify_with_the_reference_package():
    hook = endpoint()
    headers = signing.headers(hook, "msg_1", BODY)
    assert headers["webhook-id"] == "msg_1"
    assert abs(int(headers["webhook-timestamp"]) - timezone.now().timestamp()) < 5
    assert Webhook(hook.secret).verify(BODY, headers)["type"] == "job.completed"


@pytest.mark.django_db
def test_a_changed_body_or_another_secret_does_not_verify():
    hook = endpoint()
    headers = signing.headers(hook, "msg_1", BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(hook.secret).verify(BODY.replace("x", "y"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(BODY, headers)


@pytest.mark.django_db
def test_after_a_rotation_both_secrets_verify_for_24_hours_then_only_the_new_one(monkeypatch):
    hook = endpoint()
    old = hook.secret
    new = rotate_secret(hook)
    hook.refresh_from_db()
    assert new == hook.secret != old
    assert hook.previous_secret_until - timezone.now() > timedelta(hours=23, minutes=59)

    headers = signing.headers(hook, "msg_2", BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(BODY, headers)
    assert Webhook(new).verify(BODY, headers)

    # A day and a minute later (the timestamp is the attempt's, so it still verifies).
    later = timezone.now() + timedelta(hours=24, minutes=1)
    headers = signing.headers(hook, "msg_2", BODY, now=later)
    headers["webhook-timestamp"] = str(int(timezone.now().timestamp()))
    headers["webhook-signature"] = " ".join(
        signing.sign(secret, "msg_2", int(headers["webhook-timestamp"]), BODY)
        for secret in signing.signing_secrets(hook, later)
    )
    assert len(headers["webhook-signature"].split(" ")) == 1
    assert Webhook(new).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(BODY, headers)


@pytest.mark.django_db
def test_the_message_id_is_msg_and_unique():
    ids = {signing.new_msg_id() for _ in range(200)}
    assert len(ids) == 200 and all(i.startswith("msg_") for i in ids)
