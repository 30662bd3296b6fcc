"""Accounts: sign up with starting credits, log in and out, change the
password; the credits page; API keys shown once, renamed and revoked."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from jobs import ledger, pipeline
from jobs.apikeys import authenticate_key
from jobs.models import ApiKey, LedgerEntry
from jobs.views_account import chart_bars, spending_by_day
from tests.factories import UserFactory, make_job, make_upload

pytestmark = pytest.mark.django_db
User = get_user_model()
SIGNUP = {"username": "maria", "email": "maria@example.com", "password1": "a long pass phrase 9", "password2": ""}


def signup(client, **fields):
    data = {**SIGNUP, "password2": SIGNUP["password1"], **fields}
    return client.post(reverse("signup"), data)


def test_sign_up_gives_the_starting_credits_and_logs_in(client, settings):
    settings.STARTING_CREDITS = 30
    response = signup(client)
    assert response.status_code == 302 and response["Location"] == reverse("home")
    user = User.objects.get(username="maria")
    assert user.email == "maria@example.com"
    assert ledger.balance_of(user) == 30
    page = client.get(reverse("home")).content.decode()
    assert "Welcome, maria" in page and "30 credits to start with" in page
    assert 'id="credit-balance" data-balance="30">30<' in page


def test_sign_up_refusals_are_next_to_their_fields(client):
    UserFactory(username="taken")
    response = signup(client, username="TAKEN", email="nope", password2="different")
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="id_username-error"' in html and 'id="id_email-error"' in html and 'id="id_password2-error"' in html
    assert User.objects.count() == 1


def test_the_login_page_leads_to_sign_up_and_a_logged_in_user_skips_both(client):
    assert reverse("signup") in client.get(reverse("login")).content.decode()
    client.force_login(UserFactory())
    assert client.get(reverse("login"))["Location"] == reverse("home")
    assert client.get(reverse("signup"))["Location"] == reverse("home")


def test_log_out_is_a_post_and_ends_the_session(client):
    client.force_login(UserFactory())
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert client.get(reverse("history")).status_code == 302


def test_change_password(client):
    user = UserFactory()
    client.force_login(user)
    assert client.get(reverse("password-change")).status_code == 200
    response = client.post(
        reverse("password-change"),
        {
            "old_password": "correct horse battery",
            "new_password1": "a new long phrase 7",
            "new_password2": "a new long phrase 7",
        },
        follow=True,
    )
    assert "Your password was changed" in response.content.decode()
    user.refresh_from_db()
    assert user.check_password("a new long phrase 7")


def test_a_wrong_old_password_is_refused_next_to_it(client):
    client.force_login(UserFactory())
    response = client.post(
        reverse("password-change"),
        {"old_password": "wrong", "new_password1": "a new long phrase 7", "new_password2": "a new long phrase 7"},
    )
    assert 'id="id_old_password-error"' in response.content.decode()


@pytest.mark.parametrize("name", ["history", "credits", "keys", "password-change", "home"])
def test_the_pages_ask_a_visitor_to_log_in(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302 and reverse("login") in response["Location"]


# --- credits ------------------------------------------------------------------------------


def test_the_credits_page_lists_the_ledger_and_the_spending(client):
    user = UserFactory(credits=10)
    job = make_job(user)
    pipeline.advance(job.pk)
    client.force_login(user)
    html = client.get(reverse("credits")).content.decode()
    for words in ("Added", "Starting credits", "Charged", reverse("job-detail", args=[job.pk])):
        assert words in html
    assert 'id="spending-chart"' in html and "1 credit in 30 days" in html
    assert html.count('class="bar empty-bar"') == 29


def test_the_ledger_is_paginated(client):
    user = UserFactory(credits=100)
    for i in range(25):
        ledger.grant(user=user, amount=1, reason=f"gift {i}")
    client.force_login(user)
    html = client.get(reverse("credits")).content.decode()
    assert "Page 1 of 2" in html and "gift 24" in html and "gift 0" not in html


def test_spending_counts_charged_jobs_per_day_only():
    user = UserFactory(credits=100)
    upload = make_upload(user)
    charged, released, _held = (make_job(user, upload=upload) for _ in range(3))
    pipeline.advance(charged.pk)
    pipeline.fail(released, "render_failed", "x")
    today = date(2030, 1, 31)
    LedgerEntry.objects.filter(job=charged, kind=LedgerEntry.CAPTURE).update(at=datetime(2030, 1, 30, 12, tzinfo=UTC))
    series = spending_by_day(user, today=today)
    assert len(series) == 30 and series[-1]["day"] == today and series[0]["day"] == today - timedelta(days=29)
    assert [d["spent"] for d in series if d["spent"]] == [1]
    assert series[-2] == {"day": date(2030, 1, 30), "spent": 1}


def test_chart_bars_scale_to_the_highest_day():
    series = [{"day": date(2030, 1, d), "spent": s} for d, s in ((1, 0), (2, 4), (3, 2))]
    chart = chart_bars(series, width=300, height=100)
    assert chart["peak"] == 4 and chart["total"] == 6
    heights = [b["h"] for b in chart["bars"]]
    assert heights[1] == 96 and heights[2] == 48 and 0 < heights[0] < 2


# --- API keys -------------------------------------------------------------------------------


def test_a_new_key_is_shown_once_and_works(client):
    user = UserFactory()
    client.force_login(user)
    response = client.post(reverse("keys"), {"name": "CMS plugin"})
    assert response.status_code == 201 and response["Cache-Control"] == "no-store"
    full = response.context["new_secret"]
    assert full in response.content.decode() and "shown only this once" in response.content.decode()
    assert authenticate_key(full).user == user
    again = client.get(reverse("keys")).content.decode()
    assert full not in again and "CMS plugin" in again


def test_a_key_needs_a_name(client):
    client.force_login(UserFactory())
    response = client.post(reverse("keys"), {"name": "  "})
    assert response.status_code == 400 and 'id="name-error"' in response.content.decode()
    assert ApiKey.objects.count() == 0


def test_rename_and_revoke_a_key(client):
    user = UserFactory()
    client.force_login(user)
    client.post(reverse("keys"), {"name": "old"})
    key = ApiKey.objects.get()
    response = client.post(reverse("key-rename", args=[key.pk]), {"name": "Zapier"}, follow=True)
    assert "is now called “Zapier”" in response.content.decode()
    response = client.post(reverse("key-revoke", args=[key.pk]), follow=True)
    assert "was revoked" in response.content.decode()
    key.refresh_from_db()
    assert key.name == "Zapier" and not key.is_active
    assert "Revoked" in client.get(reverse("keys")).content.decode()


def test_a_revoked_key_keeps_its_name(client):
    user = UserFactory()
    client.force_login(user)
    client.post(reverse("keys"), {"name": "Zapier"})
    key = ApiKey.objects.get()
    client.post(reverse("key-revoke", args=[key.pk]))
    response = client.post(reverse("key-rename", args=[key.pk]), {"name": "something else"}, follow=True)
    assert "was revoked; it keeps the name it had" in response.content.decode()
    key.refresh_from_db()
    assert key.name == "Zapier"


def test_another_users_key_is_not_found(client):
    other = UserFactory()
    client.force_login(other)
    client.post(reverse("keys"), {"name": "theirs"})
    key = ApiKey.objects.get()
    client.force_login(UserFactory())
    assert client.post(reverse("key-revoke", args=[key.pk])).status_code == 404
    assert client.post(reverse("key-rename", args=[key.pk]), {"name": "mine"}).status_code == 404
    assert str(key.prefix) not in client.get(reverse("keys")).content.decode()
    key.refresh_from_db()
    assert key.is_active and key.name == "theirs"
