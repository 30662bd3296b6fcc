"""Credits: hold at creation, capture on success, release otherwise; never twice."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from jobs import actions, ledger, pipeline
from jobs.models import CreditAccount, Job, LedgerEntry
from jobs.sweeper import expire_unstarted
from tests.factories import UserFactory, make_job, make_upload, photo_bytes
from tests.fakes.fixtures import stability_server_fixture  # noqa: F401

pytestmark = pytest.mark.django_db


def kinds(job: Job) -> list[str]:
    return sorted(job.ledger.values_list("kind", flat=True))


def assert_consistent(user) -> None:
    assert ledger.balance_of(user) == ledger.ledger_sum(user) >= 0


def test_a_new_account_starts_with_the_starting_credits(settings):
    settings.STARTING_CREDITS = 40
    user = get_user_model().objects.create_user("fresh")
    assert ledger.open_account(user).balance == 40
    ledger.open_account(user)  # opening again grants nothing more
    assert ledger.balance_of(user) == 40
    assert user.ledger.get().reason == "Starting credits"


def test_a_local_job_holds_one_credit_and_charges_it_on_success():
    user = UserFactory(credits=10)
    job = make_job(user)
    assert ledger.balance_of(user) == 9 and job.cost == 1
    assert kinds(job) == ["hold"]

    pipeline.advance(job.pk)

    job.refresh_from_db()
    assert job.status == Job.COMPLETED
    assert kinds(job) == ["capture", "hold"]
    assert ledger.balance_of(user) == 9
    assert_consistent(user)


def test_a_successful_stability_job_costs_twenty_and_a_failed_one_nothing(stability_server):
    user = UserFactory(credits=100)
    done = make_job(user, provider="stability")
    pipeline.advance(done.pk)
    assert ledger.balance_of(user) == 80

    stability_server.script.content_moderation = True
    refused = make_job(user, provider="stability")
    assert ledger.balance_of(user) == 60  # held while it runs
    pipeline.advance(refused.pk)

    refused.refresh_from_db()
    assert refused.status == Job.FAILED
    assert kinds(refused) == ["hold", "release"]
    assert ledger.balance_of(user) == 80
    assert_consistent(user)


def test_costs_can_be_overridden_in_settings(settings):
    settings.PROVIDER_COSTS = {"local": "3"}
    user = UserFactory(credits=10)
    assert make_job(user).cost == 3
    assert ledger.balance_of(user) == 7


def test_a_job_the_user_cannot_afford_is_refused_before_anything_is_spent():
    user = UserFactory(credits=0)
    upload = make_upload(user)
    with pytest.raises(ledger.InsufficientCredits) as caught:
        make_job(user, upload=upload)
    assert (caught.value.balance, caught.value.cost) == (0, 1)
    assert "balance is 0" in caught.value.message
    assert Job.objects.count() == 0 and LedgerEntry.objects.filter(kind="hold").count() == 0


def test_the_page_says_not_enough_credits_next_to_the_provider(client):
    user = UserFactory(credits=0)
    client.force_login(user)
    response = client.post(
        reverse("home"),
        {
            "image": io.BytesIO(photo_bytes()),
            "framing": "auto",
            "provider": "local",
            "motion_bucket_id": 127,
            "cfg_scale": 1.8,
            "seed": 0,
        },
    )
    assert response.status_code == 402
    assert "Not enough credits" in response.content.decode()
    assert Job.objects.count() == 0


def test_a_crash_between_provider_success_and_capture_charges_exactly_once(monkeypatch):
    user = UserFactory(credits=5)
    job = make_job(user)
    real_capture = ledger.capture

    def crash_once(job):
        monkeypatch.setattr(ledger, "capture", real_capture)
        raise SystemExit("worker killed")  # what a dying process looks like to the transaction

    monkeypatch.setattr(ledger, "capture", crash_once)
    with pytest.raises(SystemExit):
        pipeline.advance(job.pk)
    job.refresh_from_db()
    assert job.status == Job.FINALIZING  # the completion was rolled back with the capture
    Job.objects.filter(pk=job.pk).update(lease_until=None)

    pipeline.advance(job.pk)

    job.refresh_from_db()
    assert job.status == Job.COMPLETED
    assert kinds(job) == ["capture", "hold"]
    assert ledger.balance_of(user) == 4
    assert_consistent(user)


def test_capture_and_release_run_twice_record_once():
    user = UserFactory(credits=5)
    job = make_job(user)
    ledger.release(job)
    ledger.release(job)
    ledger.capture(job)
    assert kinds(job) == ["hold", "release"]
    assert ledger.balance_of(user) == 5


def test_the_database_refuses_a_second_entry_of_one_kind_for_a_job():
    job = make_job(UserFactory())
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(user=job.owner, job=job, kind="hold", amount=-1, balance_after=0)


def test_the_database_refuses_a_negative_balance():
    user = UserFactory(credits=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditAccount.objects.filter(user=user).update(balance=-1)


def test_cancelling_a_queued_job_gives_the_credits_back():
    user = UserFactory(credits=5)
    job = make_job(user)
    actions.cancel_job(job, by=user)
    job.refresh_from_db()
    assert job.status == Job.CANCELLED
    assert kinds(job) == ["hold", "release"]
    assert ledger.balance_of(user) == 5
    with pytest.raises(actions.ActionRefused, match="already cancelled"):
        actions.cancel_job(job)


def test_a_job_with_a_provider_that_cannot_cancel_is_refused_with_a_reason(stability_server):
    stability_server.script.never_finish = True
    job = make_job(UserFactory(), provider="stability")
    pipeline.advance(job.pk)
    with pytest.raises(actions.ActionRefused, match="cannot stop it"):
        actions.cancel_job(job)


def test_retrying_a_failed_job_starts_a_new_one_with_the_same_parameters(stability_server):
    stability_server.script.content_moderation = True
    user = UserFactory(credits=100)
    failed = make_job(user, provider="stability", seed=11, cfg_scale=3, motion_bucket_id=99)
    pipeline.advance(failed.pk)
    stability_server.script.content_moderation = False

    retry = actions.retry_job(Job.objects.get(pk=failed.pk))

    assert retry.pk != failed.pk and retry.upload_id == failed.upload_id
    assert (retry.seed, retry.cfg_scale, retry.motion_bucket_id) == (11, 3, 99)
    assert ledger.balance_of(user) == 80


def test_a_refund_returns_the_charge_once_with_the_staff_members_reason():
    user, staff = UserFactory(credits=5), UserFactory(is_staff=True)
    job = make_job(user)
    pipeline.advance(job.pk)

    entry = actions.refund_job(Job.objects.get(pk=job.pk), staff=staff, reason="Video was blank")

    assert (entry.amount, entry.staff, entry.reason) == (1, staff, "Video was blank")
    assert ledger.balance_of(user) == 5
    with pytest.raises(actions.ActionRefused, match="already refunded"):
        actions.refund_job(job, staff=staff, reason="again")
    assert_consistent(user)


def test_grantcredits_adds_credits_with_a_reason():
    user = UserFactory(credits=0)
    out = io.StringIO()
    call_command("grantcredits", user.username, "25", "--reason", "Trial", stdout=out)
    assert ledger.balance_of(user) == 25
    assert "balance is now 25" in out.getvalue()
    assert user.ledger.get().reason == "Trial"
    with pytest.raises(CommandError, match="No user"):
        call_command("grantcredits", "nobody", "5", "--reason", "x")


def test_checkledger_passes_a_consistent_ledger_and_names_each_discrepancy():
    user = UserFactory(credits=10)
    job = make_job(user)
    pipeline.advance(job.pk)
    out = io.StringIO()
    call_command("checkledger", stdout=out)
    assert "consistent" in out.getvalue()

    CreditAccount.objects.filter(user=user).update(balance=50)
    LedgerEntry.objects.filter(job=job, kind="capture").delete()
    err = io.StringIO()
    with pytest.raises(CommandError, match="2 discrepancies"):
        call_command("checkledger", stderr=err)
    assert f"balance 50 but ledger sums to {ledger.ledger_sum(user)}" in err.getvalue()
    assert f"job {job.pk} is completed but has 0 capture(s)" in err.getvalue()


def test_support_can_refund_a_failed_job_as_goodwill_and_the_timeline_says_so(stability_server):
    stability_server.script.content_moderation = True
    user, staff = UserFactory(credits=100), UserFactory(is_staff=True)
    job = make_job(user, provider="stability")
    pipeline.advance(job.pk)
    assert ledger.balance_of(user) == 100  # failed: released, never charged

    actions.refund_job(Job.objects.get(pk=job.pk), staff=staff, reason="Sorry for the trouble")

    assert ledger.balance_of(user) == 120
    assert "as goodwill (the job was never charged)" in job.events.last().message
    assert_consistent(user)


def test_a_running_job_cannot_be_refunded(stability_server):
    stability_server.script.never_finish = True
    job = make_job(UserFactory(), provider="stability")
    pipeline.advance(job.pk)
    with pytest.raises(actions.ActionRefused, match="cancel it instead"):
        actions.refund_job(job, staff=UserFactory(is_staff=True), reason="x")


def test_a_job_no_worker_ever_started_is_failed_and_its_credits_come_back(settings):
    settings.MAX_CHECK_TIME = 60
    settings.JOB_DISPATCH_GRACE = 10
    user = UserFactory(credits=5)
    stale, fresh = make_job(user), make_job(user)
    Job.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(seconds=71))
    assert ledger.balance_of(user) == 3

    assert expire_unstarted() == 1

    stale.refresh_from_db()
    assert stale.status == Job.FAILED and stale.error_code == "never_started"
    assert "not been charged" in stale.error_message
    assert Job.objects.get(pk=fresh.pk).status == Job.QUEUED
    assert ledger.balance_of(user) == 4
    assert_consistent(user)
