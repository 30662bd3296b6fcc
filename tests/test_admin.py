"""The support admin: find a job, read what happened, act through the domain functions."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import pytest
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from jobs import actions, ledger, pipeline
from jobs.admin import CappedCountPaginator
from jobs.models import Job, LedgerEntry
from tests.factories import UserFactory, make_job, make_upload
from tests.fakes.fixtures import stability_server_fixture  # noqa: F401

pytestmark = pytest.mark.django_db

JOBS = reverse("admin:jobs_job_changelist")
USERS = reverse("admin:auth_user_changelist")
LEDGER = reverse("admin:jobs_ledgerentry_changelist")


@pytest.fixture
def staff(client):
    user = UserFactory(is_staff=True, is_superuser=True, username="support")
    client.force_login(user)
    return user


def job_page(job) -> str:
    return reverse("admin:jobs_job_change", args=[job.pk])


def run_action(client, url, action, objects, **fields):
    """Pick an action in a changelist, as the dropdown does."""
    data = {"action": action, ACTION_CHECKBOX_NAME: [str(o.pk) for o in objects], "index": 0, **fields}
    return client.post(url, data)


def confirm_action(client, url, action, objects, **fields):
    """Submit an action's intermediate page."""
    data = {"action": action, ACTION_CHECKBOX_NAME: [str(o.pk) for o in objects], "post": "yes", **fields}
    return client.post(url, data)


def file_link(page: str, kind: str, obj) -> str:
    """The staff link a page gives for one of ``obj``'s files (``jobs.staff_files``)."""
    match = re.search(rf'"(/staff/files/{kind}/{obj.pk}\?token=[^"]+)"', page)
    assert match, f"no {kind} link for {obj.pk} on the page"
    return html.unescape(match.group(1))


def served(client, url: str) -> bytes:
    response = client.get(url)
    assert response.status_code == 200, url
    return b"".join(response.streaming_content)


class _Table(HTMLParser):
    def __init__(self, table_id: str):
        super().__init__()
        self.table_id, self.inside, self.rows, self.cell = table_id, False, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def table_rows(page: str, table_id: str) -> list[list[str]]:
    """The cells of a table on a page, row by row, as a person reads them."""
    parser = _Table(table_id)
    parser.feed(page)
    return parser.rows


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def failed_stability_job(stability_server, user, **params) -> Job:
    stability_server.script.content_moderation = True
    job = make_job(user, provider="stability", **params)
    pipeline.advance(job.pk)
    job.refresh_from_db()
    assert job.status == Job.FAILED
    return job


def many_jobs(owner, upload, n: int) -> None:
    Job.objects.bulk_create(
        Job(
            owner=owner,
            upload=upload,
            provider="local",
            width=upload.width,
            height=upload.height,
            cfg_scale=1.8,
            motion_bucket_id=127,
            request_id=f"bulk-{i}",
        )
        for i in range(n)
    )


# --- The support scenario ----------------------------------------------------------


def test_support_finds_a_failed_job_by_request_id_reads_why_and_refunds_it_with_a_reason(
    client, staff, stability_server
):
    user = UserFactory(credits=100, username="alice")
    job = failed_stability_job(stability_server, user, request_id="req-42")
    other = make_job(user, request_id="req-43")

    listing = client.get(JOBS, {"q": "req-42"}).content.decode()
    assert str(job.pk)[:8] in listing
    assert str(other.pk)[:8] not in listing

    page = client.get(job_page(job)).content.decode()
    assert job.error_message and job.error_message in page
    assert job.error_code in page
    assert "Job created" in page  # the timeline
    normalized = job.upload.normalized
    assert served(client, file_link(page, "staff-normalized", job.upload)) == normalized.open("rb").read()

    asked = run_action(client, JOBS, "refund_jobs", [job])
    assert asked.status_code == 200
    assert "Goodwill: this job was never charged" in asked.content.decode()
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.REFUND).exists()

    done = confirm_action(client, JOBS, "refund_jobs", [job], reason="Moderation was wrong; sorry")
    assert done.status_code == 302
    assert any("refunded 20 credit(s) to alice" in m for m in texts(done))

    entry = LedgerEntry.objects.get(user=user, kind=LedgerEntry.REFUND)
    assert (entry.job_id, entry.amount, entry.reason, entry.staff) == (
        job.pk,
        20,
        "Moderation was wrong; sorry",
        staff,
    )
    assert ledger.balance_of(user) == 100 - 1 + 20  # the local job still holds one credit

    ledger_page = client.get(LEDGER, {"user__id__exact": user.pk}).content.decode()
    assert "Moderation was wrong; sorry" in ledger_page
    assert "support" in ledger_page
    assert "Refunded 20 credit(s) as goodwill" in client.get(job_page(job)).content.decode()


# --- Finding jobs ------------------------------------------------------------------


@pytest.mark.parametrize("how", ["id", "short id", "provider job id", "username", "email"])
def test_searching_by_id_provider_job_id_username_or_email_finds_the_job(client, staff, how):
    owner = UserFactory(username="bob-the-customer", email="Bob@Example.com")
    job = make_job(owner)
    Job.objects.filter(pk=job.pk).update(provider_job_id="gen-7f3a")
    stranger = make_job(UserFactory(username="carol"))
    term = {
        "id": str(job.pk),
        "short id": str(job.pk)[:8],
        "provider job id": "gen-7f3a",
        "username": "bob-the",
        "email": "bob@example.com",
    }[how]

    listing = client.get(JOBS, {"q": term}).content.decode()

    assert str(job.pk)[:8] in listing
    assert str(stranger.pk)[:8] not in listing


def test_a_search_that_matches_nothing_lists_nothing(client, staff):
    job = make_job()
    listing = client.get(JOBS, {"q": "no-such-thing"})
    assert listing.status_code == 200
    assert str(job.pk)[:8] not in listing.content.decode()


def test_jobs_filter_by_status_provider_and_date(client, staff):
    job = make_job()
    for query in ({"status__exact": "queued"}, {"provider": "local"}, {"created_at__gte": "2000-01-01 00:00:00+00:00"}):
        assert str(job.pk)[:8] in client.get(JOBS, query).content.decode()
    assert str(job.pk)[:8] not in client.get(JOBS, {"status__exact": "failed"}).content.decode()


# --- Actions -----------------------------------------------------------------------


def test_retry_starts_a_new_job_and_says_so(client, staff, stability_server):
    user = UserFactory(credits=100)
    job = failed_stability_job(stability_server, user)
    stability_server.script.content_moderation = False

    response = run_action(client, JOBS, "retry_jobs", [job])

    assert response.status_code == 302
    new = Job.objects.exclude(pk=job.pk).get()
    assert new.upload_id == job.upload_id and new.provider == "stability"
    assert any("retried as job" in m and str(new.pk)[:8] in m for m in texts(response))
    assert f"by {staff}" in job.events.last().message


def test_retry_of_a_queued_job_is_refused_with_a_message(client, staff):
    job = make_job()
    response = run_action(client, JOBS, "retry_jobs", [job])
    assert response.status_code == 302
    assert texts(response) == [f"Job {str(job.pk)[:8]}: Only a failed or cancelled job can be retried."]
    assert Job.objects.count() == 1


def test_cancel_cancels_a_queued_job_and_gives_its_credits_back(client, staff):
    user = UserFactory(credits=5)
    job = make_job(user)

    response = run_action(client, JOBS, "cancel_jobs", [job])

    job.refresh_from_db()
    assert job.status == Job.CANCELLED
    assert ledger.balance_of(user) == 5
    assert any("cancelled" in m for m in texts(response))
    assert f"Cancelled by {staff}" in job.events.last().message


def test_cancel_of_a_completed_job_shows_the_refusal_not_an_error(client, staff):
    job = make_job()
    pipeline.advance(job.pk)

    response = run_action(client, JOBS, "cancel_jobs", [job])

    assert response.status_code == 302
    assert texts(response) == [f"Job {str(job.pk)[:8]}: This job is already completed; there is nothing to cancel."]
    followed = client.get(response["Location"])
    assert "there is nothing to cancel" in followed.content.decode()


def test_refund_without_a_reason_does_nothing_and_asks_again(client, staff):
    user = UserFactory(credits=5)
    job = make_job(user)
    pipeline.advance(job.pk)

    response = confirm_action(client, JOBS, "refund_jobs", [job], reason="   ")

    assert response.status_code == 200
    page = response.content.decode()
    assert "This field is required." in page
    assert "Gives back the charge" in page
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.REFUND).exists()
    assert ledger.balance_of(user) == 4


def test_refunding_a_job_twice_is_refused_with_a_message(client, staff):
    job = make_job()
    pipeline.advance(job.pk)
    confirm_action(client, JOBS, "refund_jobs", [job], reason="Blank video")

    again = confirm_action(client, JOBS, "refund_jobs", [job], reason="Blank video")

    assert texts(again)[-1] == f"Job {str(job.pk)[:8]}: This job was already refunded."
    assert LedgerEntry.objects.filter(kind=LedgerEntry.REFUND).count() == 1


def test_the_job_page_buttons_cancel_retry_and_refund_through_the_same_functions(client, staff):
    user = UserFactory(credits=5)
    job = make_job(user)
    page = client.get(job_page(job)).content.decode()
    assert reverse("admin:jobs_job_cancel", args=[job.pk]) in page
    assert client.get(reverse("admin:jobs_job_cancel", args=[job.pk])).status_code == 405

    cancelled = client.post(reverse("admin:jobs_job_cancel", args=[job.pk]))
    assert cancelled.status_code == 302 and cancelled["Location"] == job_page(job)
    job.refresh_from_db()
    assert job.status == Job.CANCELLED

    retried = client.post(reverse("admin:jobs_job_retry", args=[job.pk]))
    assert any("retried as job" in m for m in texts(retried))

    refund_url = reverse("admin:jobs_job_refund", args=[job.pk])
    assert "Goodwill" in client.get(refund_url).content.decode()
    assert client.post(refund_url, {"reason": ""}).status_code == 200  # asked again
    refunded = client.post(refund_url, {"reason": "Sorry for the wait"})
    assert refunded.status_code == 302
    assert LedgerEntry.objects.get(job=job, kind=LedgerEntry.REFUND).reason == "Sorry for the wait"


def test_the_job_page_offers_no_cancel_once_the_provider_cannot_stop_the_job(client, staff):
    job = make_job()
    Job.objects.filter(pk=job.pk).update(status=Job.RUNNING, provider_job_id="render-1")  # local can't stop
    page = client.get(job_page(job)).content.decode()
    assert reverse("admin:jobs_job_cancel", args=[job.pk]) not in page


def test_staff_without_permissions_get_no_actions(client):
    client.force_login(UserFactory(is_staff=True))
    job = make_job()
    assert client.get(JOBS).status_code == 403
    assert client.post(reverse("admin:jobs_job_cancel", args=[job.pk])).status_code == 403
    job.refresh_from_db()
    assert job.status == Job.QUEUED


# --- Users and credits -------------------------------------------------------------


def test_the_user_list_shows_each_balance_without_a_query_per_user(client, staff):
    for credits in (7, 8, 9):
        UserFactory(credits=credits)
    with CaptureQueriesContext(connection) as few:
        assert client.get(USERS).status_code == 200
    for _ in range(5):
        UserFactory()
    with CaptureQueriesContext(connection) as more:
        page = client.get(USERS).content.decode()
    assert len(more) == len(few)
    assert 'class="field-balance">7<' in page


def test_the_user_page_shows_the_balance_and_links_to_the_ledger(client, staff):
    user = UserFactory(credits=12)
    page = client.get(reverse("admin:auth_user_change", args=[user.pk])).content.decode()
    assert "Credits" in page and ">12<" in page
    assert f"{LEDGER}?user__id__exact={user.pk}" in page
    assert client.get(reverse("admin:auth_user_add")).status_code == 200


def test_granting_credits_with_a_reason_changes_the_balance_and_records_the_staff_member(client, staff):
    user = UserFactory(credits=10)

    asked = run_action(client, USERS, "grant_or_adjust_credits", [user])
    assert asked.status_code == 200 and "Grant or adjust credits" in asked.content.decode()

    done = confirm_action(client, USERS, "grant_or_adjust_credits", [user], amount="25", reason="Trial extension")

    assert done.status_code == 302
    assert ledger.balance_of(user) == 35
    entry = user.ledger.get(kind=LedgerEntry.GRANT, staff__isnull=False)
    assert (entry.amount, entry.reason, entry.staff) == (25, "Trial extension", staff)
    assert texts(done) == [f"{user}: 25 credit(s) granted; the balance is now 35."]


def test_a_negative_amount_is_an_adjustment_recorded_with_the_staff_member(client, staff):
    user = UserFactory(credits=10)
    confirm_action(client, USERS, "grant_or_adjust_credits", [user], amount="-4", reason="Duplicate grant")
    entry = user.ledger.get(kind=LedgerEntry.ADJUSTMENT)
    assert (entry.amount, entry.staff) == (-4, staff)
    assert ledger.balance_of(user) == 6


def test_an_adjustment_below_zero_shows_a_message_and_changes_nothing(client, staff):
    user = UserFactory(credits=3)

    response = confirm_action(client, USERS, "grant_or_adjust_credits", [user], amount="-5", reason="Chargeback")

    assert response.status_code == 302
    assert texts(response) == [
        f"{user}: taking 5 credit(s) would leave the balance below zero (it is 3); nothing changed."
    ]
    assert ledger.balance_of(user) == 3
    assert not user.ledger.filter(kind=LedgerEntry.ADJUSTMENT).exists()


def test_credits_without_a_reason_or_with_zero_are_asked_again(client, staff):
    user = UserFactory(credits=3)
    for amount, reason in (("5", ""), ("0", "why not")):
        response = confirm_action(client, USERS, "grant_or_adjust_credits", [user], amount=amount, reason=reason)
        assert response.status_code == 200
    assert ledger.balance_of(user) == 3 and user.ledger.count() == 1


# --- The ledger is read-only -------------------------------------------------------


def test_the_ledger_admin_refuses_add_change_and_delete(client, staff):
    user = UserFactory(credits=10)
    entry = user.ledger.get()
    change = reverse("admin:jobs_ledgerentry_change", args=[entry.pk])

    assert client.get(reverse("admin:jobs_ledgerentry_add")).status_code == 403
    assert client.get(change).status_code == 200  # a view page
    assert client.post(change, {"amount": 1000, "balance_after": 1000, "kind": "grant"}).status_code == 403
    assert client.post(reverse("admin:jobs_ledgerentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    entry.refresh_from_db()
    assert (entry.amount, ledger.balance_of(user)) == (10, 10)

    model_admin = admin.site._registry[LedgerEntry]
    request = client.get(LEDGER).wsgi_request
    assert "delete_selected" not in model_admin.get_actions(request)


def test_credit_accounts_are_read_only_too(client, staff):
    user = UserFactory(credits=10)
    change = reverse("admin:jobs_creditaccount_change", args=[user.credits.pk])
    assert client.get(change).status_code == 200
    assert client.post(change, {"balance": 999}).status_code == 403
    assert ledger.balance_of(user) == 10


def test_the_ledger_is_searchable_by_username_and_job_id(client, staff):
    alice = UserFactory(username="alice")
    UserFactory(username="bob")
    job = make_job(alice)

    by_job = client.get(LEDGER, {"q": str(job.pk)}).content.decode()
    assert "local job" in by_job  # the hold's reason
    assert "Starting credits" not in by_job

    by_name = client.get(LEDGER, {"q": "bob"}).content.decode()
    assert ">bob<" in by_name and ">alice<" not in by_name

    holds = client.get(LEDGER, {"kind__exact": "hold"}).content.decode()
    assert "local job" in holds and "Starting credits" not in holds


# --- Big tables stay fast ----------------------------------------------------------


def test_the_jobs_list_runs_the_same_queries_for_10_or_60_jobs_and_never_counts_the_table(
    client, staff, django_assert_max_num_queries
):
    owner = UserFactory()
    upload = make_upload(owner)
    many_jobs(owner, upload, 10)
    with CaptureQueriesContext(connection) as ten:
        assert client.get(JOBS).status_code == 200
    many_jobs(owner, upload, 50)
    with django_assert_max_num_queries(len(ten)), CaptureQueriesContext(connection) as sixty:
        page = client.get(JOBS).content.decode()

    assert page.count('class="action-select"') == 60
    assert len(sixty) == len(ten)
    counts = [q["sql"] for q in sixty if "COUNT(" in q["sql"].upper()]
    assert counts, "the paginator counts, within a limit"
    for sql in counts:
        assert "LIMIT" in sql.upper(), f"an unbounded count: {sql}"


def test_the_paginator_counts_at_most_its_cap(monkeypatch):
    owner = UserFactory()
    many_jobs(owner, make_upload(owner), 12)
    monkeypatch.setattr(CappedCountPaginator, "cap", 5)
    paginator = CappedCountPaginator(Job.objects.all(), 2)
    assert paginator.count == 5 and paginator.num_pages == 3
    assert CappedCountPaginator(Job.objects.filter(request_id="bulk-1"), 2).count == 1


# --- Pages with pictures -----------------------------------------------------------


def test_the_upload_list_and_page_show_the_normalized_image(client, staff):
    owner = UserFactory(username="dora")
    upload = make_upload(owner)
    job = make_job(owner, upload=upload)

    listing = client.get(reverse("admin:jobs_upload_changelist"), {"q": "dora"})
    assert listing.status_code == 200
    normalized = upload.normalized.open("rb").read()
    assert served(client, file_link(listing.content.decode(), "staff-normalized", upload)) == normalized
    for term in (str(upload.pk), upload.sha256):
        found = client.get(reverse("admin:jobs_upload_changelist"), {"q": term}).content.decode()
        assert file_link(found, "staff-normalized", upload)

    response = client.get(reverse("admin:jobs_upload_change", args=[upload.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert served(client, file_link(page, "staff-normalized", upload)) == normalized
    assert served(client, file_link(page, "staff-original", upload)) == upload.original.open("rb").read()
    assert "photo.jpg, JPEG, 1200×700" in page
    assert str(job.pk)[:8] in page


def test_a_completed_job_page_shows_image_poster_parameters_and_ledger(client, staff):
    job = make_job(seed=42, cfg_scale=2.5, motion_bucket_id=90, prompt="a slow pan")
    pipeline.advance(job.pk)
    job.refresh_from_db()
    assert job.poster

    response = client.get(job_page(job))

    assert response.status_code == 200
    page = response.content.decode()
    assert served(client, file_link(page, "staff-normalized", job.upload)) == job.upload.normalized.open("rb").read()
    assert served(client, file_link(page, "staff-original", job.upload)) == job.upload.original.open("rb").read()
    assert served(client, file_link(page, "staff-poster", job)) == job.poster.open("rb").read()
    assert served(client, file_link(page, "staff-video", job)) == job.video.open("rb").read()
    assert "/media/" not in page
    for shown in ("42", "2.5", "90", "a slow pan", f"{job.width}×{job.height}", "Ledger entries", "Capture"):
        assert shown in page
    assert 'name="_save"' not in page  # nothing to hand-edit


# --- Reading a job's page ----------------------------------------------------------


def test_the_timeline_reads_as_one_header_and_a_row_per_event(client, staff):
    job = make_job(request_id="tl-1")
    pipeline.advance(job.pk)
    job.refresh_from_db()
    pipeline.note(job, "Looked at by support")
    events = list(job.events.all())

    page = client.get(job_page(job)).content.decode()

    rows = table_rows(page, "job-timeline")
    assert rows[0] == ["Time", "From → to", "Message"]
    assert len(rows) == 1 + len(events)
    assert rows[1] == [f"{timezone.localtime(events[0].at):%Y-%m-%d %H:%M:%S}", "— → queued", events[0].message]
    assert rows[2][1:] == ["queued → preparing", events[1].message]
    assert rows[-2][1] == "finalizing → completed"
    assert rows[-1][1:] == ["completed (note)", "Looked at by support"]
    for event in events:  # no raw line repeated above the rows
        assert html.escape(str(event)) not in page and str(event) not in page


def test_the_ledger_on_a_job_page_reads_oldest_first_with_one_header(client, staff):
    job = make_job()
    pipeline.advance(job.pk)
    rows = table_rows(client.get(job_page(job)).content.decode(), "job-ledger")
    assert rows[0] == ["Time", "Kind", "Amount", "Balance after", "Reason", "Staff"]
    assert [row[1:3] for row in rows[1:]] == [["Hold", "-1"], ["Capture", "0"]]
    for entry in LedgerEntry.objects.filter(job=job):
        assert str(entry) not in client.get(job_page(job)).content.decode()


def test_a_local_job_reads_as_rendered_on_this_server_without_server_paths(client, staff, settings):
    job = make_job(seed=42, cfg_scale=2.5, motion_bucket_id=90)
    pipeline.advance(job.pk)
    job.refresh_from_db()
    assert str(settings.WORK_DIR) in job.provider_job_id  # what the handle holds

    page = client.get(job_page(job)).content.decode()

    assert "Rendered on this server (1024×576, seed 42, cfg_scale 2.5, motion 90)." in page
    assert str(settings.WORK_DIR) not in page
    assert html.escape(job.provider_job_id) not in page


def test_an_unreadable_local_handle_still_reads_as_rendered_here(client, staff):
    job = make_job()
    Job.objects.filter(pk=job.pk).update(status=Job.FAILED, provider_job_id="{not json /srv/work/x")
    page = client.get(job_page(job)).content.decode()
    assert "Rendered on this server (its render instructions could not be read)." in page
    assert "/srv/work/x" not in page


def test_a_remote_providers_job_id_is_shown_as_it_is(client, staff):
    job = make_job()
    Job.objects.filter(pk=job.pk).update(
        provider="stability", status=Job.RUNNING, provider_job_id="a6dc6c6e20acda010fe14d71"
    )
    page = client.get(job_page(job)).content.decode()
    assert "a6dc6c6e20acda010fe14d71" in page
    assert "Rendered on this server" not in page


@pytest.mark.parametrize("status", [code for code, _ in Job.STATUS_CHOICES])
def test_the_job_page_offers_retry_exactly_when_a_retry_would_be_tried(client, staff, status):
    job = make_job()
    Job.objects.filter(pk=job.pk).update(status=status)
    job.refresh_from_db()
    retry_url = reverse("admin:jobs_job_retry", args=[job.pk])

    offered = retry_url in client.get(job_page(job)).content.decode()

    assert offered == (status in (Job.FAILED, Job.CANCELLED)) == actions.can_retry(job)
    response = client.post(retry_url)
    if offered:
        assert any("retried as job" in m for m in texts(response))
    else:
        assert texts(response) == [f"Job {str(job.pk)[:8]}: Only a failed or cancelled job can be retried."]
        assert Job.objects.count() == 1


def _job_in(state: str, staff) -> Job:
    if state == "never held credits":  # a row made without the ledger (an import, an old job)
        upload = make_upload(UserFactory())
        many_jobs(upload.owner, upload, 1)
        Job.objects.update(status=Job.COMPLETED)
        return Job.objects.get()
    job = make_job()
    if state == "failed":
        pipeline.fail(job, "render_failed", "The video could not be rendered on this machine.")
    elif state in ("completed", "refunded"):
        pipeline.advance(job.pk)
    if state == "refunded":
        actions.refund_job(job, staff=staff, reason="Blank video")
    job.refresh_from_db()
    return job


@pytest.mark.parametrize(
    "state, offered",
    [("queued", False), ("failed", True), ("completed", True), ("refunded", False), ("never held credits", False)],
)
def test_the_job_page_offers_refund_exactly_when_a_refund_would_be_made(client, staff, state, offered):
    job = _job_in(state, staff)
    refund_url = reverse("admin:jobs_job_refund", args=[job.pk])

    assert (refund_url in client.get(job_page(job)).content.decode()) == offered == actions.can_refund(job)
    before = LedgerEntry.objects.filter(kind=LedgerEntry.REFUND).count()
    client.post(refund_url, {"reason": "Checking the rule"})
    assert LedgerEntry.objects.filter(kind=LedgerEntry.REFUND).count() == before + offered
