"""``manage.py animate IMAGE --out video.mp4``: the pipeline from a terminal."""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from jobs import ledger, media, pipeline
from jobs.creation import JobInputError, create_job_from_image
from jobs.models import Job
from providers.registry import declared_parameters

CLI_USER = "cli"


def _advance_and_close(job_id) -> None:
    try:
        pipeline.advance(job_id)
    finally:
        connection.close()  # the thread's own connection; left open it outlives the command


@contextlib.contextmanager
def _warnings_only() -> Iterator[None]:
    """While the progress bar is drawn, log only what it does not already say.

    The pipeline's INFO lines (each transition) would break the bar into
    pieces; warnings and errors still show.
    """
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


class Command(BaseCommand):
    help = "Turn IMAGE into a short MP4 through the job pipeline, showing progress."

    def add_arguments(self, parser):
        parser.add_argument("image", type=Path)
        parser.add_argument("--out", type=Path, default=Path("video.mp4"))
        parser.add_argument("--seed", type=int, default=0, help="0 picks a random seed (printed at the end).")
        parser.add_argument("--cfg-scale", type=float, default=None, help="0-10: how closely to keep the framing.")
        parser.add_argument("--motion", type=int, default=None, help="1-255: how much the camera moves.")
        parser.add_argument("--provider", default=None, help=f"Default: {settings.DEFAULT_PROVIDER}.")
        parser.add_argument("--framing", default=None, help="landscape, portrait or square (default: nearest).")
        parser.add_argument("--user", default=CLI_USER, help="Owner of the job (created if missing).")
        # The providers' own parameters (--duration, --fps...), from their declarations;
        # one whose name an option above already has (Pika's motion: --motion is
        # motion_bucket_id here) is --provider-<name>.
        taken = {option for action in parser._actions for option in action.option_strings}
        for name, declared in declared_parameters().items():
            first = declared[0][1]
            spans = "; ".join(f"{provider}: {param.span}, default {param.default}" for provider, param in declared)
            option = f"--{name.replace('_', '-')}"
            parser.add_argument(
                option if option not in taken else f"--provider-{name.replace('_', '-')}",
                dest=f"param_{name}",  # never the dest of an option above
                type={"int": int, "float": float}.get(first.kind, str),
                default=None,
                help=f"{first.meaning} ({spans})",
            )

    def handle(self, *args, **opts):
        image: Path = opts["image"]
        if not image.is_file():
            raise CommandError(f"No such image file: {image}")
        owner, created = get_user_model().objects.get_or_create(username=opts["user"])
        if created:
            ledger.open_account(owner)
        try:
            with image.open("rb") as handle:
                job = create_job_from_image(
                    owner=owner,
                    source=handle,
                    filename=image.name,
                    framing=opts["framing"],
                    provider=opts["provider"],
                    seed=opts["seed"],
                    cfg_scale=opts["cfg_scale"],
                    motion_bucket_id=opts["motion"],
                    extra_params={
                        name: opts[f"param_{name}"]
                        for name in declared_parameters()
                        if opts[f"param_{name}"] is not None
                    },
                    enqueue=False,
                )
        except JobInputError as exc:
            raise CommandError(f"{exc.field}: {exc.message}") from None
        except ledger.InsufficientCredits as exc:
            raise CommandError(f"{exc.message} (grant some with: manage.py grantcredits {owner.username} N)") from None
        self.stderr.write(f"Job {job.pk} on {job.provider}, {job.width}x{job.height}")
        with _warnings_only():
            job = self._drive(job)
        if job.status != Job.COMPLETED:
            raise CommandError(f"Job {job.status}: {job.error_message or job.status_message}")
        out: Path = opts["out"]
        out.parent.mkdir(parents=True, exist_ok=True)
        with job.video.open("rb") as source, out.open("wb") as target:
            shutil.copyfileobj(source, target)
        info = media.probe_video(out)
        self.stdout.write(
            f"Video: {out.resolve()}\n"
            f"  {info.width}x{info.height} {info.codec}, {info.frames} frames, {info.duration:.2f} s, "
            f"{out.stat().st_size / 1024:.0f} KiB, seed {job.seed_used}"
        )

    def _drive(self, job: Job) -> Job:
        """Run the steps in a thread while this one draws the progress bar."""
        # The pipeline fails a job at MAX_CHECK_TIME; this only guards against
        # a job nobody can claim (another process holding its lease, say).
        deadline = time.monotonic() + settings.MAX_CHECK_TIME + settings.JOB_LEASE_SECONDS + 60
        while True:
            if time.monotonic() > deadline:
                raise CommandError(f"Gave up waiting for job {job.pk}; it is {job.status}.")
            worker = threading.Thread(target=_advance_and_close, args=(job.pk,), daemon=True)
            worker.start()
            while worker.is_alive():
                self._draw(Job.objects.get(pk=job.pk))
                worker.join(0.2)
            job = Job.objects.get(pk=job.pk)
            self._draw(job)
            if job.is_final:
                self.stderr.write("")
                return job
            wait = (job.next_poll_at - timezone.now()).total_seconds() if job.next_poll_at else 0.5
            time.sleep(min(max(wait, 0.0), 5.0))

    def _draw(self, job: Job) -> None:
        width = 30
        filled = round(job.progress * width)
        bar = "#" * filled + "-" * (width - filled)
        line = f"\r[{bar}] {job.progress * 100:3.0f}% {job.status}: {job.status_message}"[:100]
        self.stderr.write(line.ljust(100), ending="")
        self.stderr.flush()
