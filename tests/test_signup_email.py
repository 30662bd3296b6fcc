"""An email address is one account, whatever its letters' case."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from jobs.accounts import email_taken
from jobs.models import LedgerEntry
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
User = get_user_model()


def signup(client, username: str, email: str):
    phrase = "a long pass phrase 9"
    return client.post(
        reverse("signup"), {"username": username, "email": email, "password1": phrase, "password2": phrase}
    )


def test_the_same_email_in_capitals_cannot_make_a_second_account(client):
    UserFactory(username="marketer1", email="marketer1@example.com")
    response = signup(client, "marketer-two", "MARKETER1@Example.COM")
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="id_email-error"' in html
    assert "An account with this email address already exists" in html and "Log in" in html
    assert User.objects.count() == 1
    assert not LedgerEntry.objects.filter(user__username="marketer-two").exists()


def test_an_existing_account_in_capitals_blocks_the_lower_case_email_too(client):
    UserFactory(username="shouty", email="SHOUTY@EXAMPLE.COM")
    assert signup(client, "quiet", " shouty@example.com ").status_code == 400
    assert not User.objects.filter(username="quiet").exists()


def test_a_new_email_still_signs_up(client):
    UserFactory(username="marketer1", email="marketer1@example.com")
    response = signup(client, "marketer2", "Marketer2@example.com")
    assert response.status_code == 302
    assert User.objects.get(username="marketer2").email == "Marketer2@example.com"


def test_the_rule_can_leave_out_the_account_being_edited():
    owner = UserFactory(email="Owner@example.com")
    assert email_taken("owner@EXAMPLE.com")
    assert not email_taken("owner@example.com", excluding=owner)
    assert not email_taken("")  # accounts without an email (createsuperuser allows it) never clash


def test_staff_cannot_give_an_account_an_email_another_has_in_other_capitals(admin_client):
    UserFactory(username="first", email="first@example.com")
    second = UserFactory(username="second", email="second@example.com")
    response = admin_client.post(
        reverse("admin:auth_user_change", args=[second.pk]),
        {"username": "second", "email": "FIRST@example.com", "date_joined_0": "2026-01-01", "date_joined_1": "00:00"},
    )
    assert response.status_code == 200
    assert "Another account already has this email address" in response.content.decode()
    second.refresh_from_db()
    assert second.email == "second@example.com"
