"""One look, at start-up, at the services the settings name.

Settings check that each configured backend can load (no server is needed to
import them); ``serve`` then checks once that the servers answer, so a typo in
a host name stops it with the variable's name instead of failing every request.
"""

from __future__ import annotations

from django.conf import settings
from django.core import checks
from django.core.cache import cache
from django.core.files.storage import default_storage


def unreachable_services() -> list[str]:
    """A sentence per configured service that does not answer, naming its variable."""
    problems = []
    try:
        cache.get("i2v:start-up-check")
    except Exception as exc:  # each client raises its own errors
        problems.append(f"The cache at CACHE_URL does not answer: {exc}")
    if getattr(settings, "Q_BROKER_URL", ""):
        from jobs.tasks import shared_broker

        try:
            shared_broker().ping()
        except Exception as exc:
            problems.append(f"The task broker at Q_BROKER_URL does not answer: {exc}")
    if getattr(settings, "AWS_STORAGE_BUCKET_NAME", ""):
        try:
            default_storage.connection.meta.client.head_bucket(Bucket=settings.AWS_STORAGE_BUCKET_NAME)
        except Exception as exc:
            problems.append(
                f"The bucket AWS_STORAGE_BUCKET_NAME={settings.AWS_STORAGE_BUCKET_NAME!r} cannot be reached "
                f"(AWS_S3_ENDPOINT_URL={settings.AWS_S3_ENDPOINT_URL!r}): {exc}"
            )
    return problems


def services_answer(app_configs=None, **kwargs) -> list[checks.Error]:
    """``manage.py check --deploy``: the same look, for a machine that runs
    gunicorn, qcluster or runsweeper on its own rather than ``serve``."""
    return [checks.Error(problem, id="i2v.E001") for problem in unreachable_services()]
