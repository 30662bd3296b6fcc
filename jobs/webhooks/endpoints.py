"""Webhook endpoints and job callbacks: what users register, checked once here.

Every surface (the API, the dashboard, the queue API later) calls these
functions, so a URL is judged one way everywhere: http(s), at most 2048
characters, and every address public (``providers.safe_fetch.check_url``, with
``SAFE_FETCH_ALLOW`` for tests and local demos). The address is checked again
at every attempt (a DNS answer may change), this check only spares a user a
registration that could never work.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs.models import CallbackDelivery, CallbackTarget, Job, JobCallbackSecret, WebhookEndpoint
from jobs.webhooks import formats, outbox, signing
from providers.safe_fetch import FetchRefused, check_url

URL_MAX = 2048
DESCRIPTION_MAX = 255


class EndpointInputError(ValueError):
    """Input a person can fix; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def check_webhook_url(url: str, field: str = "url") -> str:
    url = (url or "").strip()
    if not url:
        raise EndpointInputError(field, f"{field} is empty: give the http(s) URL that should receive the webhooks.")
    if len(url) > URL_MAX:
        raise EndpointInputError(field, f"{field} is longer than {URL_MAX} characters.")
    try:
        check_url(url, field=field, timeout=5.0)
    except FetchRefused as exc:
        raise EndpointInputError(field, exc.message) from exc
    return url


def check_events(events: Iterable[str] | None) -> list[str]:
    if events is None:
        return list(outbox.DEFAULT_EVENTS)
    chosen = list(dict.fromkeys(events))
    unknown = [event for event in chosen if event not in outbox.ALL_EVENTS]
    if unknown:
        raise EndpointInputError(
            "events", f"Unknown event {unknown[0]!r}; choose among {', '.join(outbox.ALL_EVENTS)}."
        )
    if not chosen:
        raise EndpointInputError("events", "Choose at least one event.")
    return [event for event in outbox.ALL_EVENTS if event in chosen]


def base_url_for(request) -> str:
    """Where links in deliveries start: PUBLIC_BASE_URL, or the host of this request."""
    return settings.PUBLIC_BASE_URL or request.build_absolute_uri("/").rstrip("/")


def create_endpoint(
    *, owner, url: str, events: Iterable[str] | None = None, description: str = "", public_base_url: str
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret (to show once)."""
    endpoint = WebhookEndpoint.objects.create(
        owner=owner,
        url=check_webhook_url(url),
        events=check_events(events),
        description=(description or "").strip()[:DESCRIPTION_MAX],
        public_base_url=public_base_url,
        secret=signing.new_secret(),
    )
    return endpoint, endpoint.secret


def update_endpoint(
    endpoint: WebhookEndpoint,
    *,
    url: str | None = None,
    events: Iterable[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> WebhookEndpoint:
    if url is not None:
        endpoint.url = check_webhook_url(url)
    if events is not None:
        endpoint.events = check_events(events)
    if description is not None:
        endpoint.description = description.strip()[:DESCRIPTION_MAX]
    if enabled is True:
        endpoint.disabled_at, endpoint.disabled_reason = None, ""
    elif enabled is False and endpoint.disabled_at is None:
        endpoint.disabled_at, endpoint.disabled_reason = timezone.now(), "Disabled by its owner."
    endpoint.save()
    return endpoint


def enable_endpoint(endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Enable again (after a 410, say); the deliveries that waited go out now."""
    update_endpoint(endpoint, enabled=True)
    waiting = list(
        CallbackDelivery.objects.filter(endpoint=endpoint, status=CallbackDelivery.PENDING).values_list("pk", flat=True)
    )
    with transaction.atomic():
        outbox.enqueue(waiting)
    return endpoint


def rotate_secret(holder) -> str:
    """A new secret for an endpoint or a job-callback secret; the old one keeps
    signing beside it for 24 hours. Returns the new secret (to show once)."""
    with transaction.atomic():
        fresh = signing.rotate(holder)
        holder.save(update_fields=["secret", "previous_secret", "previous_secret_until"])
    return fresh


def delete_endpoint(endpoint: WebhookEndpoint) -> None:
    """Gone with its deliveries and their attempts; nothing more is sent to it."""
    endpoint.delete()


def job_callback_secret(user) -> JobCallbackSecret:
    return formats.job_callback_secret(user)


def attach_job_callback(job: Job, url: str, *, public_base_url: str = "", check: bool = True) -> CallbackTarget:
    """Tell ``url`` when ``job`` ends (job.completed, job.failed, job.cancelled as
    Standard Webhooks, signed with the owner's job-callback secret).

    Call it in the job's creating transaction (``create_job…(on_created=…)``);
    a job has at most one callback target. Raises ``EndpointInputError`` for a
    URL we would not post to (``check=False`` when the caller has just checked
    it, to refuse it before doing any work). Links in the body start at
    ``public_base_url`` (default ``PUBLIC_BASE_URL``).
    """
    if check:
        url = check_webhook_url(url, "callback_url")
    formats.job_callback_secret(job.owner)  # exists before anything is signed with it
    return CallbackTarget.objects.create(
        job=job,
        owner=job.owner,
        format=CallbackTarget.FORMAT_STANDARD,
        request_id=str(job.pk),
        url=url,
        public_base_url=public_base_url or settings.PUBLIC_BASE_URL,
    )


def redeliver(delivery: CallbackDelivery, *, by) -> CallbackDelivery:
    return outbox.send_again(delivery.job, by=by, delivery=delivery)
