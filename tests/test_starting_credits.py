"""Every new account starts with STARTING_CREDITS, however it was made: sign-up,
``createsuperuser``, the admin's "Add user", or a script. The account is opened
(with its grant) by the first ledger call that needs it, exactly once, also
when many first calls race (PostgreSQL)."""

from __future__ import annotations

from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from jobs import audit, ledger
from jobs.apikeys import create_api_key
from jobs.creation import create_job
from jobs.models import CreditAccount, LedgerEntry
from tests.api_helpers import image_file
from tests.factories import UserFactory, make_upload

User = get_user_model()


@pytest.fixture(autouse=True)
def _starting(settings):
    settings.STARTING_CREDITS = 30


def starting_grants(user) -> list[int]:
    return list(LedgerEntry.objects.filter(user=user, kind=LedgerEntry.GRANT).values_list("amount", flat=True))


def api_job_by(user) -> int:
    """Status of a first API call that costs credits, made with a new key."""
    _, key = create_api_key(user=user, name="first day")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = client.post("/api/v1/jobs", {"image": image_file(), "provider": "local"}, format="multipart")
    return response.status_code


def assert_consistent(user, balance: int) -> None:
    assert ledger.balance_of(user) == balance == ledger.ledger_sum(user)
    assert starting_grants(user) == [30]
    assert list(audit.discrepancies()) == []
    call_command("checkledger")  # raises CommandError on any discrepancy


@pytest.mark.django_db
def test_an_account_made_by_createsuperuser_can_call_the_api_with_its_starting_credits(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long pass phrase 9")
    call_command("createsuperuser", interactive=False, username="boss", email="boss@example.com", verbosity=0)
    boss = User.objects.get(username="boss")
    assert not CreditAccount.objects.filter(user=boss).exists()  # nothing happens at creation itself

    assert api_job_by(boss) == 201
    assert_consistent(boss, 30 - 1)


@pytest.mark.django_db
def test_an_account_made_by_a_script_sees_its_starting_credits_on_its_first_page(client):
    user = User.objects.create_user("scripted", "scripted@example.com", "a long pass phrase 9")
    client.force_login(user)
    page = client.get(reverse("credits")).content.decode()
    assert 'id="credit-balance" data-balance="30">30<' in page
    assert "Starting credits" in page
    assert_consistent(user, 30)


@pytest.mark.django_db
def test_an_account_made_by_a_script_can_start_a_job_at_once():
    user = User.objects.create_user("scripted", "scripted@example.com", "a long pass phrase 9")
    job = create_job(owner=user, upload=make_upload(user, width=320, height=180), provider="local", enqueue=False)
    assert job.cost == 1
    assert_consistent(user, 29)


@pytest.mark.django_db
def test_an_account_added_in_the_admin_starts_with_the_starting_credits(client):
    admin = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin)
    response = client.post(
        "/admin/auth/user/add/",
        {"username": "newhire", "password1": "a long pass phrase 9", "password2": "a long pass phrase 9"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    newhire = User.objects.get(username="newhire")
    client.force_login(newhire)
    assert client.get(reverse("home")).context["credit_balance"] == 30
    assert_consistent(newhire, 30)


@pytest.mark.django_db
def test_sign_up_gives_the_starting_credits_once(client):
    client.post(
        reverse("signup"),
        {
            "username": "maria",
            "email": "maria@example.com",
            "password1": "a long pass phrase 9",
            "password2": "a long pass phrase 9",
        },
    )
    maria = User.objects.get(username="maria")
    client.get(reverse("credits"))
    ledger.open_account(maria)  # opening again gives nothing more
    assert_consistent(maria, 30)


@pytest.mark.django_db
def test_a_staff_grant_to_a_new_account_comes_on_top_of_the_starting_credits():
    user = User.objects.create_user("scripted")
    entry = ledger.grant(user=user, amount=5, reason="Welcome bonus")
    assert entry.balance_after == 35
    assert sorted(starting_grants(user)) == [5, 30]
    assert ledger.balance_of(user) == 35 == ledger.ledger_sum(user)


@pytest.mark.django_db
def test_a_refused_first_job_leaves_the_starting_grant_to_the_next_use(settings):
    settings.STARTING_CREDITS = 0
    user = User.objects.create_user("poor")
    with pytest.raises(ledger.InsufficientCredits):
        create_job(owner=user, upload=make_upload(user, width=320, height=180), provider="local", enqueue=False)
    assert ledger.balance_of(user) == 0 == ledger.ledger_sum(user)
    assert starting_grants(user) == []


@pytest.mark.django_db(transaction=True)
def test_fifty_first_uses_at_once_open_the_account_once():
    """Half the threads read the balance, half start a job: each may be the
    first use. Exactly one starting grant is written and the balance is its
    ledger's sum. Meaningful on PostgreSQL (row locks and the unique index);
    on SQLite the write lock serialises the same code."""
    from tests.test_credit_concurrency import outcome, run_together

    threads = 50
    user = User.objects.create_user("rushed")
    first = make_upload(user, width=320, height=180)
    fields = {f.attname: getattr(first, f.attname) for f in first._meta.concrete_fields if not f.primary_key}
    uploads = [first] + [type(first).objects.create(**fields) for _ in range(threads - 1)]

    def first_use(index: int):
        if index % 2:
            return ledger.balance_of(user)
        return create_job(owner=user, upload=uploads[index], provider="local", enqueue=False)

    results = run_together(threads, first_use)
    outcomes = Counter(outcome(r) for r in results)
    assert outcomes == {"ok": threads}, [v for s, v in results if s == "error"][:3]
    assert starting_grants(user) == [30]
    assert CreditAccount.objects.filter(user=user).count() == 1
    holds = LedgerEntry.objects.filter(user=user, kind=LedgerEntry.HOLD).count()
    assert holds == threads // 2
    assert ledger.balance_of(user) == 30 - holds == ledger.ledger_sum(user)
    assert list(audit.discrepancies()) == []
    print(f"vendor {connection.vendor}: {holds} holds, one starting grant")


@pytest.mark.django_db
def test_an_accounts_first_api_call_to_its_ledger_shows_the_starting_grant():
    user = User.objects.create_user("scripted", "scripted@example.com", "a long pass phrase 9")
    _, key = create_api_key(user=user, name="first call")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    rows = client.get("/api/v1/credits/ledger").json()["results"]
    assert [(row["kind"], row["amount"], row["reason"]) for row in rows] == [("grant", 30, ledger.STARTING_REASON)]
