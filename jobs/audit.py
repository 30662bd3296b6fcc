"""Checks that the credits add up; used by ``manage.py checkledger``."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, OuterRef, Q, Subquery, Sum

from jobs.models import CreditAccount, Job, LedgerEntry


def discrepancies() -> Iterator[str]:
    """Every way the ledger disagrees with balances and jobs, one line each."""
    sums = (
        LedgerEntry.objects.filter(user=OuterRef("user")).values("user").annotate(total=Sum("amount")).values("total")
    )
    for account in CreditAccount.objects.annotate(total=Subquery(sums)).select_related("user").iterator():
        total = account.total or 0
        if account.balance != total:
            yield f"user {account.user} (id {account.user_id}): balance {account.balance} but ledger sums to {total}"
        if account.balance < 0:
            yield f"user {account.user} (id {account.user_id}): negative balance {account.balance}"

    held = Job.objects.annotate(
        holds=Count("ledger", filter=Q(ledger__kind=LedgerEntry.HOLD)),
        captures=Count("ledger", filter=Q(ledger__kind=LedgerEntry.CAPTURE)),
        releases=Count("ledger", filter=Q(ledger__kind=LedgerEntry.RELEASE)),
    ).filter(holds__gt=0)
    for job in held.only("id", "status").iterator():
        settled = job.captures + job.releases
        if job.status in (Job.COMPLETED, Job.EXPIRED) and (job.captures != 1 or job.releases):
            yield f"job {job.pk} is {job.status} but has {job.captures} capture(s) and {job.releases} release(s)"
        elif job.status in (Job.FAILED, Job.CANCELLED) and (job.releases != 1 or job.captures):
            yield f"job {job.pk} is {job.status} but has {job.releases} release(s) and {job.captures} capture(s)"
        elif job.status not in Job.FINAL_STATES and settled:
            yield f"job {job.pk} is still {job.status} but its credits were already settled"
