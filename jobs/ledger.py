"""Credits: an append-only ledger and a balance kept in step with it.

Every change is one ``LedgerEntry`` row plus one guarded update of
``CreditAccount.balance`` in the same transaction, so the balance always
equals the sum of the user's entries and never goes below zero. Job entries
are unique per (job, kind): a step that runs twice finds its entry and does
nothing, so a job is never held, charged or released twice.

A job's life in the ledger: ``hold`` (−cost) when it is created, then either
``capture`` (0: the held credits become the charge) when it completes, or
``release`` (+cost) when it fails or is cancelled; staff may ``refund`` (+cost)
a finished job once (the charge back, or goodwill if it was never charged).

Every account starts with ``STARTING_CREDITS``, however the user was made
(sign-up, ``createsuperuser``, the admin, a script): there is no hook on user
creation (no signals), so the account is opened by whichever ledger function
first needs it (``balance_of``, ``hold``, ``grant`` ...), through ``_account``.
Opening is an insert guarded by the one-account-per-user constraint: of any
number of concurrent first uses, exactly one inserts the row and writes the
starting grant in the same transaction; the others wait for it (PostgreSQL's
unique index, SQLite's write lock) and find the row. So the grant is given
exactly once, and the balance equals the ledger's sum from the first row on.
"""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Sum

from jobs.models import CreditAccount, Job, LedgerEntry


class InsufficientCredits(Exception):
    """The user cannot afford this; nothing was spent."""

    def __init__(self, balance: int, cost: int) -> None:
        self.balance = balance
        self.cost = cost
        self.message = (
            f"Not enough credits: this costs {cost} credit{'s' if cost != 1 else ''} "
            f"and your balance is {balance}. Ask for more credits or choose a cheaper provider."
        )
        super().__init__(self.message)


class _AlreadyRecorded(Exception):
    pass


class LedgerError(ValueError):
    """A ledger operation that makes no sense (a refund of an uncharged job...)."""


STARTING_REASON = "Starting credits"


def balance_of(user) -> int:
    """The user's spendable credits; opens their account on first use."""
    balance = CreditAccount.objects.filter(user=user).values_list("balance", flat=True).first()
    return _account(user).balance if balance is None else balance


def open_account(user, *, starting: int | None = None) -> CreditAccount:
    """The user's account, opened now if it is new (with ``starting`` credits,
    ``STARTING_CREDITS`` by default); an existing account is returned unchanged."""
    return _account(user, starting=starting)


def _account(user, *, starting: int | None = None) -> CreditAccount:
    """The user's account; a new one is created with its starting grant, once.

    The row and its grant are written in one transaction: if the caller's
    transaction rolls back (a refused hold), both go, and the next use opens
    the account afresh. ``get_or_create`` inserts in a savepoint and, when a
    concurrent first use inserted first, reads that row instead, so only the
    inserting call writes the grant.
    """
    starting = settings.STARTING_CREDITS if starting is None else starting
    with transaction.atomic():
        account, created = CreditAccount.objects.get_or_create(user=user, defaults={"balance": max(starting, 0)})
        if created and starting > 0:
            LedgerEntry.objects.create(
                user=user, kind=LedgerEntry.GRANT, amount=starting, balance_after=starting, reason=STARTING_REASON
            )
    return account


def grant(*, user, amount: int, reason: str, staff=None) -> LedgerEntry:
    if amount <= 0:
        raise LedgerError("A grant must be a positive number of credits.")
    if not reason.strip():
        raise LedgerError("A grant needs a reason.")
    with transaction.atomic():
        return _append(user, LedgerEntry.GRANT, amount, reason=reason, staff=staff)


def adjust(*, user, amount: int, reason: str, staff=None) -> LedgerEntry:
    """A signed correction by staff; it cannot take the balance below zero."""
    if amount == 0:
        raise LedgerError("An adjustment must change the balance.")
    if not reason.strip():
        raise LedgerError("An adjustment needs a reason.")
    with transaction.atomic():
        return _append(user, LedgerEntry.ADJUSTMENT, amount, reason=reason, staff=staff)


def hold(job: Job, cost: int) -> LedgerEntry | None:
    """Reserve the job's cost; raises InsufficientCredits, spending nothing."""
    if cost <= 0:
        return None
    existing = LedgerEntry.objects.filter(job=job, kind=LedgerEntry.HOLD).first()
    if existing:
        return existing
    return _append_once(job, LedgerEntry.HOLD, -cost, reason=f"{job.provider} job")


def capture(job: Job) -> LedgerEntry | None:
    """Charge the held credits of a completed job (once)."""
    with transaction.atomic():
        _lock_account(job)
        held = _held(job)
        if held is None or _settled(job):
            return None
        return _append_once(job, LedgerEntry.CAPTURE, 0, reason=f"Charged {held} for a completed video")


def release(job: Job, reason: str = "") -> LedgerEntry | None:
    """Give back the held credits of a job that did not complete (once)."""
    with transaction.atomic():
        _lock_account(job)
        held = _held(job)
        if held is None or _settled(job):
            return None
        return _append_once(job, LedgerEntry.RELEASE, held, reason=reason or f"Job {job.status}: not charged")


def _lock_account(job: Job) -> None:
    # A capture and a release are different kinds, so the unique constraint
    # cannot stop one of each; taking the account row's write lock first makes
    # "is it settled yet?" and the write one step (a no-op UPDATE locks the row
    # on PostgreSQL; on SQLite the IMMEDIATE transaction already holds the lock).
    CreditAccount.objects.filter(user_id=job.owner_id).update(balance=F("balance"))


def refund(job: Job, *, reason: str, staff=None) -> LedgerEntry:
    """Give the job's cost back to its owner, by staff decision, once.

    For a completed job this returns the charge. A failed or cancelled job was
    never charged (its hold was released), so a refund there is a goodwill
    credit; ``was_charged`` tells the admin which, so it can say so.
    """
    if not reason.strip():
        raise LedgerError("A refund needs a reason.")
    with transaction.atomic():
        _lock_account(job)
        held = _held(job)
        if held is None:
            raise LedgerError("This job held no credits, so there is nothing to refund.")
        if not _settled(job):
            raise LedgerError("This job has not finished; cancel it instead, which releases its credits.")
        if LedgerEntry.objects.filter(job=job, kind=LedgerEntry.REFUND).exists():
            raise LedgerError("This job was already refunded.")
        return _append_once(job, LedgerEntry.REFUND, held, reason=reason, staff=staff)


def was_charged(job: Job) -> bool:
    return LedgerEntry.objects.filter(job=job, kind=LedgerEntry.CAPTURE).exists()


def ledger_sum(user) -> int:
    return LedgerEntry.objects.filter(user=user).aggregate(total=Sum("amount"))["total"] or 0


def _held(job: Job) -> int | None:
    amount = LedgerEntry.objects.filter(job=job, kind=LedgerEntry.HOLD).values_list("amount", flat=True).first()
    return None if amount is None else -amount


def _settled(job: Job) -> bool:
    return LedgerEntry.objects.filter(job=job, kind__in=[LedgerEntry.CAPTURE, LedgerEntry.RELEASE]).exists()


def _append_once(job: Job, kind: str, amount: int, *, reason: str, staff=None) -> LedgerEntry:
    """``_append`` for a job's entry; a concurrent duplicate returns the first."""
    try:
        return _append(job.owner, kind, amount, job=job, reason=reason, staff=staff)
    except _AlreadyRecorded:
        return LedgerEntry.objects.get(job=job, kind=kind)


def _append(user, kind: str, amount: int, *, job: Job | None = None, reason: str = "", staff=None) -> LedgerEntry:
    """Move the balance by ``amount`` (guarded) and write the row, atomically."""
    with transaction.atomic():
        _account(user)  # a user's first movement opens their account (with its starting grant)
        accounts = CreditAccount.objects.filter(user=user)
        if amount < 0:
            # The guard is the whole check: no read-then-write, so concurrent
            # holds can never overdraw.
            moved = accounts.filter(balance__gte=-amount).update(balance=F("balance") + amount)
            if not moved:
                raise InsufficientCredits(balance_of(user), -amount)
        else:
            moved = accounts.update(balance=F("balance") + amount)
            if not moved:
                raise LedgerError(f"{user} has no credit account.")
        balance_after = accounts.values_list("balance", flat=True).get()
        try:
            with transaction.atomic():
                return LedgerEntry.objects.create(
                    user=user,
                    job=job,
                    kind=kind,
                    amount=amount,
                    balance_after=balance_after,
                    reason=reason[:255],
                    staff=staff,
                )
        except IntegrityError:
            # Another run of the same step wrote this (job, kind) first: undo
            # our balance move by leaving this transaction with an error.
            raise _AlreadyRecorded() from None
