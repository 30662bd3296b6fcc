"""``manage.py runworker``: a django-q2 cluster that is replaced when it stalls.

Use it wherever you would run ``qcluster`` (``serve`` does). See
``jobs/supervisor.py`` for what it watches.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from jobs.cluster_watch import BEATS_ENV, prepare_cluster_process
from jobs.supervisor import ClusterSupervisor


class Command(BaseCommand):
    help = "Run the django-q2 worker cluster under a supervisor that replaces it when it stalls or dies."

    def add_arguments(self, parser):
        parser.add_argument(
            "--cluster-process",
            action="store_true",
            help="Internal: be the cluster itself (the supervisor starts this).",
        )

    def handle(self, *args, cluster_process: bool = False, **options):
        if cluster_process:
            prepare_cluster_process(os.environ.get(BEATS_ENV))
            call_command("qcluster")
            return
        supervisor = ClusterSupervisor(
            stall_seconds=settings.WORKER_STALL_SECONDS,
            stop_grace=settings.WORKER_STOP_GRACE,
            beats_folder=settings.VAR_DIR / "run" / f"cluster-{os.getpid()}",
        )
        supervisor.run()
