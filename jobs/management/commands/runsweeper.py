import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from jobs.sweeper import discard_orphan_uploads, expire_results, expire_unstarted, sweep


class Command(BaseCommand):
    help = "Hand due jobs to the worker queue and expire old results, in a loop."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Sweep once and exit.")

    def handle(self, *args, once: bool = False, **options):
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        last_expiry = 0.0
        while True:
            close_old_connections()
            dispatched = sweep()
            if time.monotonic() - last_expiry > 60:
                expire_results()
                expire_unstarted()
                discard_orphan_uploads()
                last_expiry = time.monotonic()
            if dispatched:
                self.stdout.write(f"dispatched {dispatched} job(s)")
            if once or stopping:
                return
            time.sleep(settings.SWEEP_INTERVAL)
