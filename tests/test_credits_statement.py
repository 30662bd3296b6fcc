"""The credits page: one line per video with what it cost and how it ended
(charged, not charged, still held); grants, adjustments and refunds each keep
their own line; the lines add up to the balance."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from jobs import actions, ledger, pipeline
from tests.factories import UserFactory, make_job, make_upload

pytestmark = pytest.mark.django_db


def ledger_rows(client) -> list[tuple[str, str, str]]:
    """(outcome label, detail text, credits) of each row on the page, top first."""
    html = client.get(reverse("credits")).content.decode()
    body = html.split('id="ledger"', 1)[1].split("</tbody>", 1)[0]
    rows = []
    for row in re.findall(r"<tr class=.*?</tr>", body, re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        text = re.sub(r"<[^>]+>", "", cells[1]).strip()
        label, _, detail = text.partition(" · ")
        rows.append((label, " ".join(detail.split()), re.sub(r"<[^>]+>", "", cells[2]).strip()))
    return rows


def test_each_video_is_one_line_saying_what_it_cost(client, settings):
    settings.LOCAL_FRAMES = 8
    user = UserFactory(credits=10)
    upload = make_upload(user, width=320, height=180)
    charged = make_job(user, upload=upload)
    pipeline.advance(charged.pk)
    failed = make_job(user, upload=upload)
    pipeline.fail(failed, "render_failed", "x")
    cancelled = make_job(user, upload=upload)
    actions.cancel_job(cancelled)
    make_job(user, upload=upload)  # still queued: its credit is held
    client.force_login(user)

    rows = ledger_rows(client)
    assert [(label, credits) for label, _, credits in rows] == [
        ("Held", "-1"),
        ("Not charged", "0"),
        ("Not charged", "0"),
        ("Charged", "-1"),
        ("Added", "+10"),
    ]
    held, was_cancelled, was_failed, completed, grant = (detail for _, detail, _ in rows)
    assert "still being made" in held and "1 credit held" in held and "charged only if it completes" in held
    assert "was cancelled" in was_cancelled and "given back" in was_cancelled
    assert "failed" in was_failed and "given back" in was_failed
    assert "completed" in completed and "held" not in completed
    assert grant.startswith("Starting credits")
    # Nothing else is listed, and the lines add up to the balance.
    assert sum(int(credits) for _, _, credits in rows) == ledger.balance_of(user) == 8


def test_a_refund_is_its_own_line_and_the_job_says_it_was_refunded(client, settings):
    settings.LOCAL_FRAMES = 8
    user = UserFactory(credits=5)
    job = make_job(user, upload=make_upload(user, width=320, height=180))
    pipeline.advance(job.pk)
    actions.refund_job(job, staff=UserFactory(is_staff=True), reason="The sky flickered")
    ledger.adjust(user=user, amount=-2, reason="Duplicate bonus removed")
    client.force_login(user)

    rows = ledger_rows(client)
    assert [(label, credits) for label, _, credits in rows] == [
        ("Adjusted", "-2"),
        ("Refunded", "+1"),
        ("Charged", "-1"),
        ("Added", "+5"),
    ]
    assert rows[0][1].startswith("Duplicate bonus removed")
    assert rows[1][1].startswith("The sky flickered")
    assert "refunded later" in rows[2][1]
    assert sum(int(credits) for _, _, credits in rows) == ledger.balance_of(user) == 3


def test_the_statement_costs_the_same_queries_for_a_page_of_many_jobs(client, django_assert_max_num_queries):
    user = UserFactory(credits=100)
    upload = make_upload(user, width=320, height=180)
    for _ in range(15):
        pipeline.fail(make_job(user, upload=upload), "render_failed", "x")
    client.force_login(user)
    with django_assert_max_num_queries(12):
        assert client.get(reverse("credits")).status_code == 200
