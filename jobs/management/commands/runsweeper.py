"""``manage.py runsweeper``: hands due jobs to the queue, in a loop that
outlives database outages (it waits, says so once, and carries on)."""

from __future__ import annotations

import logging
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections, connection

from jobs.provider_hooks.look import prune_receipts
from jobs.sweeper import (
    HandedOver,
    discard_orphan_uploads,
    expire_results,
    expire_unstarted,
    pause_before_next_sweep,
    redispatch_lost,
    sweep,
)

log = logging.getLogger("jobs.sweeper")

# Pauses after a failed sweep; the last one repeats until the database is back.
OUTAGE_BACKOFF = (0.5, 1.0, 2.0, 4.0, 5.0)


class Command(BaseCommand):
    help = "Hand due jobs to the worker queue and expire old results, in a loop."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Sweep once and exit.")

    def handle(self, *args, once: bool = False, **options):
        stopping = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        signal.signal(signal.SIGINT, lambda *_: stopping.set())
        handed = HandedOver()
        last_expiry = 0.0
        failures = 0
        while True:
            close_old_connections()
            try:
                dispatched = sweep(handed=handed) + redispatch_lost(handed=handed)
                if time.monotonic() - last_expiry > 60:
                    expire_results()
                    expire_unstarted()
                    discard_orphan_uploads()
                    prune_receipts()
                    last_expiry = time.monotonic()
            except Exception as exc:
                if once:
                    raise
                pause = OUTAGE_BACKOFF[min(failures, len(OUTAGE_BACKOFF) - 1)]
                failures += 1
                if failures == 1:
                    kind = "cannot use the database" if isinstance(exc, DatabaseError) else "a sweep failed"
                    log.error("sweeper: %s (%s); retrying every few seconds", kind, exc, exc_info=True)
                connection.close()  # a broken connection is not reused
                stopping.wait(pause)
                if stopping.is_set():
                    return
                continue
            if failures:
                log.warning("sweeper: working again after %d failed sweep(s)", failures)
                failures = 0
            if dispatched:
                self.stdout.write(f"dispatched {dispatched} job(s)")
            if once or stopping.is_set():
                return
            try:
                pause = pause_before_next_sweep()
            except DatabaseError:
                pause = settings.SWEEP_INTERVAL  # the next sweep reports the outage
            stopping.wait(pause)
