"""Handing due deliveries to the workers without letting one receiver hold them.

A receiver that hangs costs every attempt the whole ``WEBHOOK_TIMEOUT``. If
each attempt were a queue task, a thousand deliveries to it would take every
worker for hours while jobs wait. So deliveries are grouped by receiver
(``CallbackDelivery.receiver``: a registered endpoint, or the host of a bare
URL) and:

* one receiver has at most one task in flight, carrying up to
  ``WEBHOOK_ENDPOINT_CONCURRENCY`` attempts made side by side in threads: a
  hanging receiver holds one worker for one timeout, then the next batch;
* at most ``WEBHOOK_MAX_TASKS`` delivery tasks are in flight at all (by default
  one less than the workers), so some worker is always free for jobs;
* a receiver whose task is in flight is skipped, and the next receiver in
  line gets the free slot, so a slow receiver does not delay the others.

"In flight" is read from the rows: the dispatcher stamps each row it hands
over with a lease (``lease_until``, the same value for a batch, passed to the
task as its token); the worker's claim replaces it with the attempt's own
lease, and recording the attempt clears it. A lost queue message or a killed
worker leaves a lease that runs out, and the row is due again, with the same
``webhook-id``. Dispatchers (the sweeper, a commit hook, a batch that has
just ended) take turns through a short lock in the shared cache, so two of
them cannot both see a receiver idle and each start a batch at it; one that
finds the lock taken does nothing (the sweeper comes round again within
``SWEEP_INTERVAL``). Should the cache fail, they go ahead unlocked: a row is
still never handed over twice (the stamp is a compare-and-set), only the
caps may be exceeded for a moment.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Min, Q
from django.utils import timezone

from jobs.models import CallbackDelivery
from jobs.webhooks import delivery

log = logging.getLogger(__name__)

LOCK_KEY = "i2v:webhooks:dispatch"
# A dispatcher that died holding the lock holds it no longer than this.
LOCK_SECONDS = 10


@contextmanager
def _turn():
    """True when this dispatcher has the turn (or the cache cannot say)."""
    try:
        mine = cache.add(LOCK_KEY, 1, timeout=LOCK_SECONDS)
    except Exception:
        log.warning("webhook dispatch: the cache is unavailable; dispatching without the lock", exc_info=True)
        yield True
        return
    try:
        yield mine
    finally:
        if mine:
            cache.delete(LOCK_KEY)


def _dispatch_lease() -> timedelta:
    # Time for the task to reach a worker, plus the attempt itself.
    return timedelta(seconds=settings.JOB_DISPATCH_GRACE + delivery.lease_seconds() + 30)


def busy_receivers(now) -> set[str]:
    return set(
        CallbackDelivery.objects.filter(status=CallbackDelivery.PENDING, lease_until__gt=now)
        .order_by()
        .values_list("receiver", flat=True)
        .distinct()
    )


def dispatch(now=None) -> int:
    """Hand due deliveries over, within the caps; returns how many were handed over
    (0 too when another dispatcher has the turn)."""
    with _turn() as mine:
        return _dispatch(now) if mine else 0


def _dispatch(now=None) -> int:
    from jobs.tasks import enqueue_deliveries

    now = now or timezone.now()
    busy = busy_receivers(now)
    slots = settings.WEBHOOK_MAX_TASKS - len(busy)
    if slots <= 0:
        return 0
    receivers = list(
        delivery.due(now)
        .exclude(receiver__in=busy)
        .values("receiver")
        .annotate(first=Min("next_attempt_at"))
        .order_by("first")
        .values_list("receiver", flat=True)[:slots]
    )
    handed = 0
    for index, receiver in enumerate(receivers):
        # A token per batch, so the worker's claim can tell its rows from another batch's.
        token = now + _dispatch_lease() + timedelta(microseconds=index)
        ids = list(
            delivery.due(now)
            .filter(receiver=receiver)
            .order_by("next_attempt_at", "id")
            .values_list("pk", flat=True)[: settings.WEBHOOK_ENDPOINT_CONCURRENCY]
        )
        CallbackDelivery.objects.filter(pk__in=ids, status=CallbackDelivery.PENDING).filter(
            Q(lease_until__isnull=True) | Q(lease_until__lt=now)
        ).update(lease_until=token)
        mine = list(CallbackDelivery.objects.filter(pk__in=ids, lease_until=token).values_list("pk", flat=True))
        if mine:
            enqueue_deliveries(mine, token)
            handed += len(mine)
    return handed


def kick(delivery_ids: list) -> int:
    """Make these deliveries due now and dispatch at once (after the commit that
    wrote them): the first attempt need not wait for the next sweep."""
    now = timezone.now()
    CallbackDelivery.objects.filter(
        pk__in=delivery_ids, status=CallbackDelivery.PENDING, lease_until__isnull=True, next_attempt_at__gt=now
    ).update(next_attempt_at=now)
    return dispatch(now)
