"""Dashboard pages for webhooks: the endpoints (with a secret shown once), each
endpoint's deliveries and attempts, the job-callback secret. Thin views over
``jobs.webhooks.endpoints``."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from jobs.models import CallbackDelivery, Job, WebhookEndpoint
from jobs.webhooks import endpoints, outbox

DELIVERIES_PAGE_SIZE = 20


class EndpointForm(forms.Form):
    url = forms.CharField(
        label="URL", max_length=2048, help_text="A public http(s) address that answers 2xx to a POST."
    )
    events = forms.MultipleChoiceField(
        choices=WebhookEndpoint.EVENT_CHOICES,
        initial=list(outbox.DEFAULT_EVENTS),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one event."},
    )
    description = forms.CharField(max_length=255, required=False, help_text="Helps you tell endpoints apart.")

    def clean_url(self) -> str:
        try:
            return endpoints.check_webhook_url(self.cleaned_data["url"], "URL")
        except endpoints.EndpointInputError as exc:
            raise forms.ValidationError(exc.message) from exc


def _own_endpoint(request: HttpRequest, endpoint_id) -> WebhookEndpoint:
    try:
        return WebhookEndpoint.objects.get(pk=endpoint_id, owner=request.user)
    except WebhookEndpoint.DoesNotExist:
        raise Http404("No such webhook endpoint.") from None


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"  # a page may show a secret
    return response


@login_required
@require_http_methods(["GET", "POST"])
def webhooks(request: HttpRequest) -> HttpResponse:
    form = EndpointForm(request.POST or None)
    context: dict = {"form": form}
    status = 200
    if request.method == "POST":
        if form.is_valid():
            endpoint, secret = endpoints.create_endpoint(
                owner=request.user,
                url=form.cleaned_data["url"],
                events=form.cleaned_data["events"],
                description=form.cleaned_data["description"],
                public_base_url=endpoints.base_url_for(request),
            )
            # Shown in this answer only.
            context.update(new_endpoint=endpoint, new_secret=secret, form=EndpointForm())
            status = 201
        else:
            status = 400
    context["endpoints"] = WebhookEndpoint.objects.filter(owner=request.user).order_by("created_at", "id")
    context["job_callback_secret"] = endpoints.job_callback_secret(request.user)
    return _no_store(render(request, "webhooks/list.html", context, status=status))


@login_required
@require_http_methods(["GET", "POST"])
def webhook_detail(request: HttpRequest, endpoint_id) -> HttpResponse:
    endpoint = _own_endpoint(request, endpoint_id)
    initial = {"url": endpoint.url, "events": endpoint.events, "description": endpoint.description}
    form = EndpointForm(request.POST or None, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            endpoints.update_endpoint(endpoint, **form.cleaned_data)
            messages.success(request, "The endpoint was saved.")
            return redirect("webhook-detail", endpoint.pk)
        status = 400
    rows = endpoint.deliveries.select_related("job").prefetch_related("attempt_log").order_by("-created_at", "-id")
    page = Paginator(rows, DELIVERIES_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"endpoint": endpoint, "form": form, "page": page, "new_secret": None}
    return _no_store(render(request, "webhooks/detail.html", context, status=status))


@login_required
@require_POST
def webhook_rotate(request: HttpRequest, endpoint_id) -> HttpResponse:
    endpoint = _own_endpoint(request, endpoint_id)
    secret = endpoints.rotate_secret(endpoint)
    rows = endpoint.deliveries.prefetch_related("attempt_log").order_by("-created_at", "-id")
    page = Paginator(rows, DELIVERIES_PAGE_SIZE).get_page(1)
    initial = {"url": endpoint.url, "events": endpoint.events, "description": endpoint.description}
    context = {"endpoint": endpoint, "form": EndpointForm(initial=initial), "page": page, "new_secret": secret}
    return _no_store(render(request, "webhooks/detail.html", context))


@login_required
@require_POST
def webhook_enable(request: HttpRequest, endpoint_id) -> HttpResponse:
    endpoint = _own_endpoint(request, endpoint_id)
    endpoints.enable_endpoint(endpoint)
    messages.success(request, "The endpoint is enabled again; deliveries that waited for it are being sent.")
    return redirect("webhook-detail", endpoint.pk)


@login_required
@require_POST
def webhook_delete(request: HttpRequest, endpoint_id) -> HttpResponse:
    endpoint = _own_endpoint(request, endpoint_id)
    endpoints.delete_endpoint(endpoint)
    messages.success(request, f"The endpoint {endpoint.url} was deleted; nothing more is sent to it.")
    return redirect("webhooks")


@login_required
@require_POST
def webhook_redeliver(request: HttpRequest, delivery_id: int) -> HttpResponse:
    """Send one delivery again, from an endpoint's page or a job's."""
    found = (
        CallbackDelivery.objects.filter(pk=delivery_id, job__owner=request.user)
        .select_related("endpoint", "job")
        .first()
    )
    if found is None:
        raise Http404("No such delivery.")
    if found.endpoint_id and not found.endpoint.is_enabled:
        messages.error(request, "This endpoint is disabled; enable it to send to it again.")
    else:
        endpoints.redeliver(found, by=request.user)
        messages.success(request, f"The {found.event_type or 'callback'} delivery to {found.url} is being sent again.")
    back = request.POST.get("next", "")
    if back == "job":
        return redirect("job-detail", found.job_id)
    if found.endpoint_id:
        return redirect("webhook-detail", found.endpoint_id)
    return redirect("job-detail", found.job_id)


@login_required
@require_POST
def job_callback_secret_rotate(request: HttpRequest) -> HttpResponse:
    endpoints.rotate_secret(endpoints.job_callback_secret(request.user))
    messages.success(
        request, "Your job-callback secret was rotated; the previous one keeps signing beside it for 24 hours."
    )
    return redirect("webhooks")


def job_deliveries(job: Job):
    """The Webhooks section of a job's page."""
    return job.deliveries.select_related("endpoint").prefetch_related("attempt_log").order_by("created_at", "id")
