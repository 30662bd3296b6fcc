"""API keys: shown once, stored as a hash, told apart by prefix, revocable."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from jobs.models import ApiKey
from tests.api_helpers import key_client
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_a_new_key_is_shown_once_and_stored_only_as_a_hash(client):
    user = UserFactory()
    client.force_login(user)
    created = client.post("/api/v1/keys", {"name": "ci"}, content_type="application/json").json()
    full = created["key"]
    assert re.fullmatch(r"i2v_[0-9a-f]{8}_[\w-]{40,}", full)
    stored = ApiKey.objects.get(prefix=created["prefix"])
    assert full not in (stored.key_hash, stored.prefix, stored.name)
    listing = client.get("/api/v1/keys").json()
    assert listing[0]["prefix"] == created["prefix"] and "key" not in listing[0]


def test_a_key_authenticates_and_records_when_it_was_last_used():
    api = key_client()
    assert api.get("/api/v1/credits").status_code == 200
    assert ApiKey.objects.get(user=api.user).last_used_at is not None


def test_a_revoked_key_stops_working_at_once():
    api = key_client()
    prefix = ApiKey.objects.get(user=api.user).prefix
    assert api.delete(f"/api/v1/keys/{prefix}").status_code == 204
    response = api.get("/api/v1/credits")
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


def test_one_user_cannot_revoke_anothers_key():
    owner, other = key_client(), key_client()
    prefix = ApiKey.objects.get(user=owner.user).prefix
    assert other.delete(f"/api/v1/keys/{prefix}").status_code == 404
    assert owner.get("/api/v1/credits").status_code == 200


def test_createapikey_prints_a_working_key():
    user = UserFactory()
    out = io.StringIO()
    call_command("createapikey", user.username, stdout=out, stderr=io.StringIO())
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {out.getvalue().strip()}")
    assert api.get("/api/v1/credits").json() == {"balance": 100}
