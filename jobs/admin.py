"""The support admin: find a job, see what happened, and act through the domain.

Everything that changes a job or a balance goes through ``jobs.actions`` and
``jobs.ledger``; the admin never edits those rows itself. Jobs, uploads, the
ledger and credit accounts are read-only pages; what support can do is the
actions (retry, cancel, refund, grant or adjust credits), and every refusal
comes back as a message. A job's page offers only the actions its domain
rule says would be tried (``actions.can_cancel``, ``can_retry``, ``can_refund``).

Images and videos are shown through staff links (``jobs.staff_files``): signed,
expiring, and refused to anyone who is not staff; no ``/media/`` URL exists.

The big tables (jobs, uploads, ledger) never count themselves in full: see
``CappedCountPaginator``. Searches resolve their terms to exact or range
lookups on indexed columns instead of the admin's ``iexact``/``icontains``,
which cast the column and so cannot use an index.
"""

from __future__ import annotations

import json
import re
import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import F, Q
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import smart_split, unescape_string_literal

from jobs import actions, ledger
from jobs.accounts import email_taken
from jobs.creation import JobInputError
from jobs.models import (
    CallbackAttempt,
    CallbackDelivery,
    CreditAccount,
    Job,
    JobEvent,
    LedgerEntry,
    QueueRequest,
    Upload,
    WebhookEndpoint,
)
from jobs.queue_position import queue_position
from jobs.staff_files import staff_file_url
from jobs.webhooks import outbox
from providers.registry import PROVIDERS, provider_class, provider_settings

User = get_user_model()

# An action runs in the request: more rows than this are refused, not half-done.
ACTION_LIMIT = 100
# A search term that names users matches at most this many of them.
USER_MATCH_LIMIT = 200
THUMB = "max-width:{}px;max-height:{}px;border:1px solid #ccc"


# --- Paginator and search ----------------------------------------------------------


class CappedCountPaginator(Paginator):
    """A paginator that never counts a whole big table.

    Unfiltered on PostgreSQL, the count is the planner's estimate
    (``pg_class.reltuples``), which costs nothing. Otherwise at most ``cap``
    rows are counted (``SELECT COUNT(*) FROM (... LIMIT cap)``): a list of
    100,000 jobs says 10,000 and offers 100 pages, and search or filters
    narrow it down from there.
    """

    cap = 10_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        connection = connections[queryset.db]
        if connection.vendor == "postgresql" and not queryset.query.where:
            estimate = _estimated_rows(connection, queryset.model._meta.db_table)
            if estimate > self.cap:
                return estimate
        return queryset.order_by()[: self.cap].count()


def _estimated_rows(connection, table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cursor.fetchone()
    # -1 means never analysed; either way the capped count is used instead.
    return int(row[0]) if row and row[0] and row[0] > 0 else 0


class ReadOnly:
    """Viewable, never added, edited or deleted here (rows change through the domain)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class BigTableAdmin(admin.ModelAdmin):
    """Lists that stay fast on big tables: no full counts, no facet counts."""

    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER


def search_terms(search_term: str) -> list[str]:
    """The admin's splitting of a search, quotes allowed around a term."""
    terms = []
    for bit in smart_split(search_term):
        if bit[:1] in ('"', "'") and bit[0] == bit[-1]:
            bit = unescape_string_literal(bit)
        if bit.strip():
            terms.append(bit.strip())
    return terms


HEX = re.compile(r"^[0-9a-f]{8,32}$")


def id_lookup(field: str, term: str) -> Q | None:
    """A full UUID, or a hex prefix (the short ids the lists show) as an index range."""
    digits = term.lower().replace("-", "")
    if not HEX.match(digits):
        return None
    if len(digits) == 32:
        return Q(**{field: uuid.UUID(digits)})
    return Q(**{f"{field}__gte": uuid.UUID(digits.ljust(32, "0")), f"{field}__lte": uuid.UUID(digits.ljust(32, "f"))})


def user_lookup(field: str, term: str) -> Q | None:
    """Users whose username contains the term or whose email is it, as an id list.

    The ids are looked up first so the big table is filtered by its indexed
    foreign key, not joined to users and scanned.
    """
    ids = list(
        User.objects.filter(Q(username__icontains=term) | Q(email__iexact=term)).values_list("pk", flat=True)[
            :USER_MATCH_LIMIT
        ]
    )
    return Q(**{f"{field}__in": ids}) if ids else None


def any_of(*lookups: Q | None) -> Q:
    """OR of the lookups that apply; matching nothing when none does."""
    found = [q for q in lookups if q is not None]
    if not found:
        return Q(pk__in=[])
    combined = found[0]
    for q in found[1:]:
        combined |= q
    return combined


# --- Small helpers -----------------------------------------------------------------


def short(pk) -> str:
    return str(pk)[:8]


def admin_link(obj_or_pk, viewname: str, text: str):
    pk = getattr(obj_or_pk, "pk", obj_or_pk)
    return format_html('<a href="{}">{}</a>', reverse(viewname, args=[pk]), text)


def thumbnail(url: str, size: int = 96, *, missing: str = "—", lazy: bool = False):
    """An image behind a staff link (``jobs.staff_files``); a click opens it full size.

    Lists load theirs lazily; a page's few images load at once.
    """
    if not url:
        return missing
    return format_html(
        '<a href="{0}" target="_blank"><img src="{0}" alt="" loading="{1}" style="{2}"></a>',
        url,
        "lazy" if lazy else "eager",
        THUMB.format(size, size),
    )


def local_handle_summary(handle: str) -> str:
    """What the local provider's handle means, without the server paths it holds.

    The handle is the render's instructions as JSON (``providers.local``); the
    parameters are already on the page, so only a reading is shown.
    """
    try:
        data = json.loads(handle)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return "Rendered on this server (its render instructions could not be read)."
    parts = []
    if data.get("w") and data.get("h"):
        parts.append(f"{data['w']}×{data['h']}")
    for key, name in (("seed", "seed"), ("cfg", "cfg_scale"), ("motion", "motion")):
        if data.get(key) is not None:
            parts.append(f"{name} {data[key]}")
    return "Rendered on this server" + (f" ({', '.join(parts)})." if parts else ".")


def original_with_facts(upload: Upload, size: int):
    """The image as the user sent it, with what it was."""
    facts = f"{upload.original_name or 'unnamed'}, {upload.format}, {upload.source_width}×{upload.source_height}, "
    facts += f"{upload.size_bytes / 1024:.0f} KB"
    return format_html("{}<div>{}</div>", thumbnail(staff_file_url(upload, "staff-original"), size), facts)


def no_result(job: Job, what: str) -> str:
    """Why a job shows no poster or video."""
    if job.status == Job.EXPIRED:
        return f"— (the {what} was deleted after the retention period)"
    if job.is_final:
        return f"— (no {what}: the job is {job.get_status_display().lower()})"
    return f"— (no {what} yet)"


def refusal(exc: Exception) -> str:
    """What an expected failure of an action says, for a message."""
    return getattr(exc, "message", None) or str(exc)


# Expected failures of an action: shown to staff as a warning, never a 500.
REFUSALS = (actions.ActionRefused, ledger.LedgerError, ledger.InsufficientCredits, JobInputError)


# --- Filters -----------------------------------------------------------------------


class ProviderFilter(admin.SimpleListFilter):
    """Providers from the registry: no DISTINCT over the jobs table."""

    title = "provider"
    parameter_name = "provider"

    def lookups(self, request, model_admin):
        return [(name, provider_class(name).label or name) for name in PROVIDERS]

    def queryset(self, request, queryset):
        return queryset.filter(provider=self.value()) if self.value() else queryset


class ByStaffFilter(admin.SimpleListFilter):
    title = "made by"
    parameter_name = "by_staff"

    def lookups(self, request, model_admin):
        return [("yes", "Staff"), ("no", "The system")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(staff__isnull=False)
        if self.value() == "no":
            return queryset.filter(staff__isnull=True)
        return queryset


# --- Forms for the intermediate pages ----------------------------------------------


class RefundForm(forms.Form):
    reason = forms.CharField(
        max_length=255,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Recorded in the ledger and on the job's timeline.",
    )


class CreditForm(forms.Form):
    amount = forms.IntegerField(
        min_value=-1_000_000,
        max_value=1_000_000,
        help_text="Credits to add; a negative number takes credits away (never below zero).",
    )
    reason = forms.CharField(
        max_length=255,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Recorded in the ledger with your name.",
    )

    def clean_amount(self):
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("Enter a number of credits other than zero.")
        return amount


# --- Jobs --------------------------------------------------------------------------


class JobEventInline(ReadOnly, admin.TabularInline):
    """The timeline as a plain table: time, from → to, message.

    Django's tabular inline repeats each row's ``str()`` above it; these rows
    are read, never edited, so the templates draw a table with one header.
    """

    model = JobEvent
    verbose_name = "timeline event"
    verbose_name_plural = "timeline"
    template = "admin/jobs/job/timeline_inline.html"
    extra = 0
    can_delete = False
    fields = readonly_fields = ("at", "from_status", "to_status", "message")


class JobLedgerInline(ReadOnly, admin.TabularInline):
    model = LedgerEntry
    fk_name = "job"
    verbose_name_plural = "ledger entries"
    template = "admin/jobs/job/ledger_inline.html"
    extra = 0
    can_delete = False
    fields = readonly_fields = ("at", "kind", "amount", "balance_after", "reason", "staff")

    def get_queryset(self, request):
        # Oldest first, to read alongside the timeline.
        return super().get_queryset(request).select_related("staff").order_by("at", "id")


class CallbackDeliveryInline(ReadOnly, admin.TabularInline):
    """The job's callbacks and every attempt at each, read-only (``jobs.webhooks``)."""

    model = CallbackDelivery
    verbose_name_plural = "callbacks"
    template = "admin/jobs/job/callbacks_inline.html"
    extra = 0
    can_delete = False
    fields = readonly_fields = ("created_at", "url", "status", "attempts", "next_attempt_at", "body")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("attempt_log").order_by("created_at", "id")


@admin.register(Job)
class JobAdmin(ReadOnly, BigTableAdmin):
    list_display = (
        "short_id",
        "owner_name",
        "provider",
        "status_label",
        "progress_pct",
        "cost",
        "created",
        "error_code",
    )
    list_display_links = ("short_id",)
    list_filter = ("status", ProviderFilter, "created_at")
    # For the search box; get_search_results turns them into indexed lookups.
    search_fields = ("=id", "=request_id", "=provider_job_id", "owner__username", "=owner__email")
    search_help_text = "Job id (or its first 8 characters), request id, provider job id, username or email."
    list_select_related = ("owner",)
    raw_id_fields = ("owner", "upload")
    inlines = [JobEventInline, JobLedgerInline, CallbackDeliveryInline]
    actions = ["retry_jobs", "cancel_jobs", "refund_jobs"]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "owner",
                    "status",
                    "progress_pct",
                    "status_message",
                    "place_in_queue",
                    "request_id",
                    "queue_api",
                )
            },
        ),
        (
            "What the user gave and got",
            {
                "fields": (
                    "original_preview",
                    "image_preview",
                    "end_frame_preview",
                    "masks_summary",
                    "poster_preview",
                    "video_player",
                    "upload",
                )
            },
        ),
        (
            "Parameters",
            {
                "fields": (
                    "provider",
                    "model",
                    "seed",
                    "seed_used",
                    "cfg_scale",
                    "motion_bucket_id",
                    "size",
                    "prompt",
                    "prompt_source",
                    "prompt_job_id",
                    "negative_prompt",
                    "provider_settings",
                    "cost",
                )
            },
        ),
        ("Error", {"fields": ("error_code", "error_message", "error_detail_text")}),
        (
            "Provider",
            {"fields": ("provider_job", "finish_reason", "provider_credits", "provider_response_json", "video_facts")},
        ),
        (
            "Times and scheduling",
            {
                "classes": ("collapse",),
                "fields": (
                    "created_at",
                    "submitted_at",
                    "finished_at",
                    "updated_at",
                    "expires_at",
                    "next_poll_at",
                    "lease_until",
                    "last_polled_at",
                    "attempts",
                    "polls",
                ),
            },
        ),
    )
    readonly_fields = tuple(name for _, options in fieldsets for name in options["fields"])

    # Support reads jobs and acts on them only through the actions: no hand edits.
    def has_operate_permission(self, request):
        return request.user.has_perm("jobs.change_job")

    def has_credit_permission(self, request):
        return request.user.has_perm("jobs.add_ledgerentry")

    def get_search_results(self, request, queryset, search_term):
        for term in search_terms(search_term):
            queryset = queryset.filter(
                any_of(
                    id_lookup("pk", term),
                    Q(request_id=term),
                    Q(provider_job_id=term),
                    user_lookup("owner_id", term),
                )
            )
        return queryset, False

    # Columns

    @admin.display(description="job")
    def short_id(self, obj):
        return short(obj.pk)

    @admin.display(description="owner")
    def owner_name(self, obj):
        return obj.owner.username

    @admin.display(description="status")
    def status_label(self, obj):
        return obj.get_status_display()

    @admin.display(description="progress")
    def progress_pct(self, obj):
        return f"{obj.progress:.0%}"

    @admin.display(description="provider's own settings")
    def provider_settings(self, obj):
        rows = provider_settings(obj)
        if not rows:
            return "—"
        return format_html_join(mark_safe("<br>"), "{}: {}", rows)

    @admin.display(description="queue API model id")
    def queue_api(self, obj):
        # Which /queue/{modelId} the job came in through, and how its result is given.
        asked = QueueRequest.objects.filter(job=obj).first()
        return "—" if asked is None else f"{asked.model_id} ({asked.get_output_display()})"

    @admin.display(description="position in queue")
    def place_in_queue(self, obj):
        # The same number the job page and the API give.
        position = queue_position(obj)
        return "—" if position is None else position

    @admin.display(description="created", ordering="created_at")
    def created(self, obj):
        return obj.created_at

    # Page fields

    @admin.display(description="upload (original)")
    def original_preview(self, obj):
        return original_with_facts(obj.upload, 320)

    @admin.display(description="image (normalised)")
    def image_preview(self, obj):
        return thumbnail(staff_file_url(obj.upload, "staff-normalized"), 320)

    @admin.display(description="end frame")
    def end_frame_preview(self, obj):
        if not obj.tail_upload_id:
            return "— (none)"
        return thumbnail(staff_file_url(obj.tail_upload, "staff-normalized"), 320)

    @admin.display(description="motion masks")
    def masks_summary(self, obj):
        masks = list(obj.masks.select_related("upload"))
        if not masks:
            return "— (none)"
        rows = format_html_join(
            "",
            "<li>{} {}: {}</li>",
            (
                (
                    thumbnail(staff_file_url(mask.upload, "staff-normalized"), 96),
                    str(mask),
                    "stays still"
                    if mask.is_static
                    else " → ".join(f"({x}, {y})" for x, y in mask.trajectory) + f" ({len(mask.trajectory)} points)",
                )
                for mask in masks
            ),
        )
        return format_html('<ul style="margin:0;padding-left:1em">{}</ul>', rows)

    @admin.display(description="provider credits used")
    def provider_credits(self, obj):
        # What the provider billed our account for this job (Kling: AI/ML API's meta.usage.credits_used).
        used = (obj.provider_response or {}).get("credits_used")
        return "—" if used is None else f"{used:,}"

    @admin.display(description="poster")
    def poster_preview(self, obj):
        return thumbnail(staff_file_url(obj, "staff-poster"), 320, missing=no_result(obj, "poster"))

    @admin.display(description="video")
    def video_player(self, obj):
        url = staff_file_url(obj, "staff-video")
        if not url:
            return no_result(obj, "video")
        return format_html(
            '<video id="job-video" src="{0}" poster="{1}" controls preload="metadata" playsinline'
            ' style="max-width:480px;max-height:480px;display:block"></video>'
            '<a href="{0}" target="_blank">Open the video</a>',
            url,
            staff_file_url(obj, "staff-poster"),
        )

    @admin.display(description="provider job")
    def provider_job(self, obj):
        if not obj.provider_job_id:
            return "— (not handed to the provider)"
        if obj.provider == "local":
            return local_handle_summary(obj.provider_job_id)
        return obj.provider_job_id

    @admin.display(description="size")
    def size(self, obj):
        return f"{obj.width}×{obj.height}"

    @admin.display(description="detail for staff")
    def error_detail_text(self, obj):
        return format_html('<pre style="white-space:pre-wrap">{}</pre>', obj.error_detail) if obj.error_detail else "—"

    @admin.display(description="provider response")
    def provider_response_json(self, obj):
        if not obj.provider_response:
            return "—"
        text = json.dumps(obj.provider_response, indent=2, sort_keys=True, default=str)
        return format_html('<pre style="white-space:pre-wrap">{}</pre>', text)

    @admin.display(description="video facts")
    def video_facts(self, obj):
        if obj.video_frames is None:
            return "—"
        return f"{obj.video_frames} frames, {obj.video_duration or 0:.2f} s, {obj.video_bytes or 0} bytes"

    # Actions: each job goes through jobs.actions; a refusal is a warning.

    def _each(self, request, jobs, act, done) -> None:
        for job in jobs:
            try:
                result = act(job)
            except REFUSALS as exc:
                self.message_user(request, f"Job {short(job.pk)}: {refusal(exc)}", messages.WARNING)
            else:
                self.message_user(request, done(job, result), messages.SUCCESS)

    def _too_many(self, request, queryset) -> bool:
        if queryset[: ACTION_LIMIT + 1].count() > ACTION_LIMIT:
            self.message_user(request, f"Select at most {ACTION_LIMIT} jobs for an action.", messages.WARNING)
            return True
        return False

    def _retry(self, request, jobs) -> None:
        def done(job, new):
            return format_html(
                "Job {} retried as job {}.", short(job.pk), admin_link(new, "admin:jobs_job_change", short(new.pk))
            )

        self._each(request, jobs, lambda job: actions.retry_job(job, by=request.user), done)

    def _cancel(self, request, jobs) -> None:
        def done(job, _):
            return f"Job {short(job.pk)} cancelled; its held credits are back with {job.owner}."

        self._each(request, jobs, lambda job: actions.cancel_job(job, by=request.user), done)

    def _refund(self, request, jobs, reason: str) -> None:
        def done(job, entry):
            return f"Job {short(job.pk)}: refunded {entry.amount} credit(s) to {job.owner}."

        self._each(request, jobs, lambda job: actions.refund_job(job, staff=request.user, reason=reason), done)

    @admin.action(description="Retry selected jobs (as new jobs)", permissions=["operate"])
    def retry_jobs(self, request, queryset):
        if not self._too_many(request, queryset):
            self._retry(request, queryset)

    @admin.action(description="Cancel selected jobs", permissions=["operate"])
    def cancel_jobs(self, request, queryset):
        if not self._too_many(request, queryset):
            self._cancel(request, queryset)

    @admin.action(description="Refund selected jobs…", permissions=["credit"])
    def refund_jobs(self, request, queryset):
        """Asks for a reason on an intermediate page; nothing happens before it is given."""
        if self._too_many(request, queryset):
            return None
        form = RefundForm(request.POST if "post" in request.POST else None)
        if form.is_valid():
            self._refund(request, queryset, form.cleaned_data["reason"])
            return None
        return self._refund_page(request, list(queryset), form, from_changelist=True)

    def _refund_page(self, request, jobs, form, *, from_changelist: bool):
        context = {
            **self.admin_site.each_context(request),
            "title": "Refund jobs",
            "opts": self.opts,
            "form": form,
            "rows": [{"job": job, "charged": ledger.was_charged(job)} for job in jobs],
            "from_changelist": from_changelist,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/jobs/job/refund_confirmation.html", context)

    # The same actions as buttons on the job's page.

    def get_urls(self):
        def wrap(view):
            return self.admin_site.admin_view(view)

        return [
            path("<path:object_id>/retry/", wrap(self.retry_view), name="jobs_job_retry"),
            path("<path:object_id>/cancel/", wrap(self.cancel_view), name="jobs_job_cancel"),
            path("<path:object_id>/refund/", wrap(self.refund_view), name="jobs_job_refund"),
            path("<path:object_id>/callback/", wrap(self.callback_view), name="jobs_job_callback"),
            *super().get_urls(),
        ]

    def _job_for(self, request, object_id, permission) -> Job:
        job = self.get_object(request, unquote(object_id))
        if job is None:
            raise Http404(f"No job {object_id}.")
        if not (self.has_view_permission(request, job) and permission(request)):
            raise PermissionDenied
        return job

    def _back_to(self, job):
        return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[job.pk]))

    def retry_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        job = self._job_for(request, object_id, self.has_operate_permission)
        self._retry(request, [job])
        return self._back_to(job)

    def cancel_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        job = self._job_for(request, object_id, self.has_operate_permission)
        self._cancel(request, [job])
        return self._back_to(job)

    def refund_view(self, request, object_id):
        job = self._job_for(request, object_id, self.has_credit_permission)
        form = RefundForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            self._refund(request, [job], form.cleaned_data["reason"])
            return self._back_to(job)
        return self._refund_page(request, [job], form, from_changelist=False)

    def callback_view(self, request, object_id):
        """Send the job's callback again (the same body), or bring a pending retry forward."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        job = self._job_for(request, object_id, self.has_operate_permission)
        try:
            delivery = outbox.send_again(job, by=request.user)
        except LookupError as exc:
            self.message_user(request, f"Job {short(job.pk)}: {exc}", messages.WARNING)
        else:
            self.message_user(request, f"Job {short(job.pk)}: callback to {delivery.url} queued.", messages.SUCCESS)
        return self._back_to(job)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_operate": self.has_operate_permission(request),
            "can_refund": self.has_credit_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["can_cancel"] = obj is not None and actions.can_cancel(obj)
        context["can_retry"] = obj is not None and actions.can_retry(obj)
        context["can_refund_job"] = obj is not None and actions.can_refund(obj)
        context["can_send_callback"] = obj is not None and obj.deliveries.exists()
        return super().render_change_form(request, context, add, change, form_url, obj)


# --- Uploads -----------------------------------------------------------------------


@admin.register(Upload)
class UploadAdmin(ReadOnly, BigTableAdmin):
    list_display = ("preview", "short_id", "owner_name", "original_name", "format", "size", "size_bytes", "created")
    list_display_links = ("preview", "short_id")
    list_filter = ("created_at",)
    search_fields = ("=id", "=sha256", "owner__username")
    search_help_text = "Upload id (or its first 8 characters), sha256 or username."
    list_select_related = ("owner",)
    raw_id_fields = ("owner",)
    fields = readonly_fields = (
        "id",
        "owner",
        "large_preview",
        "original_link",
        "original_name",
        "format",
        "size_bytes",
        "sha256",
        "source_size",
        "size",
        "created_at",
        "recent_jobs",
    )

    def get_search_results(self, request, queryset, search_term):
        for term in search_terms(search_term):
            sha = Q(sha256=term.lower()) if re.fullmatch(r"[0-9a-fA-F]{64}", term) else None
            queryset = queryset.filter(any_of(id_lookup("pk", term), sha, user_lookup("owner_id", term)))
        return queryset, False

    @admin.display(description="image")
    def preview(self, obj):
        return thumbnail(staff_file_url(obj, "staff-normalized"), 64, lazy=True)

    @admin.display(description="image (normalised)")
    def large_preview(self, obj):
        return thumbnail(staff_file_url(obj, "staff-normalized"), 480)

    @admin.display(description="original")
    def original_link(self, obj):
        return original_with_facts(obj, 480)

    @admin.display(description="upload")
    def short_id(self, obj):
        return short(obj.pk)

    @admin.display(description="owner")
    def owner_name(self, obj):
        return obj.owner.username

    @admin.display(description="frame")
    def size(self, obj):
        return f"{obj.width}×{obj.height}"

    @admin.display(description="source")
    def source_size(self, obj):
        return f"{obj.source_width}×{obj.source_height}"

    @admin.display(description="created", ordering="created_at")
    def created(self, obj):
        return obj.created_at

    @admin.display(description="jobs (latest 20)")
    def recent_jobs(self, obj):
        jobs = obj.jobs.order_by("-created_at")[:20]
        if not jobs:
            return "—"
        return format_html_join(
            ", ",
            '<a href="{}">{}</a> ({})',
            ((reverse("admin:jobs_job_change", args=[job.pk]), short(job.pk), job.status) for job in jobs),
        )


# --- Credits -----------------------------------------------------------------------


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnly, BigTableAdmin):
    """The ledger, read-only: rows are only ever appended by ``jobs.ledger``."""

    list_display = ("at", "user", "job_link", "kind", "amount", "balance_after", "reason", "staff")
    list_filter = ("kind", ByStaffFilter, "at")
    search_fields = ("user__username", "=job__id")
    search_help_text = "Username, or job id (or its first 8 characters)."
    list_select_related = ("user", "staff")
    raw_id_fields = ("user", "job", "staff")
    fields = readonly_fields = ("at", "user", "job", "kind", "amount", "balance_after", "reason", "staff")

    def get_search_results(self, request, queryset, search_term):
        for term in search_terms(search_term):
            queryset = queryset.filter(any_of(id_lookup("job_id", term), user_lookup("user_id", term)))
        return queryset, False

    @admin.display(description="job")
    def job_link(self, obj):
        return admin_link(obj.job_id, "admin:jobs_job_change", short(obj.job_id)) if obj.job_id else "—"


@admin.register(CreditAccount)
class CreditAccountAdmin(ReadOnly, admin.ModelAdmin):
    """Balances, read-only: they change through the user admin's credit action."""

    list_display = ("user", "balance", "updated_at")
    search_fields = ("user__username", "=user__email")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    fields = readonly_fields = ("user", "balance", "updated_at", "ledger_link")

    @admin.display(description="ledger")
    def ledger_link(self, obj):
        return ledger_link(obj.user_id)


def ledger_link(user_id):
    url = reverse("admin:jobs_ledgerentry_changelist") + f"?user__id__exact={user_id}"
    return format_html('<a href="{}">Ledger entries</a>', url)


# --- Users with their balance ------------------------------------------------------

if admin.site.is_registered(User):
    admin.site.unregister(User)


class StaffUserChangeForm(UserChangeForm):
    """The admin's user form, holding staff to the sign-up rule: one account per
    email, capitals aside."""

    def clean_email(self) -> str:
        email = self.cleaned_data.get("email", "")
        if email_taken(email, excluding=self.instance):
            raise forms.ValidationError("Another account already has this email address (capitals make no difference).")
        return email


@admin.register(User)
class UserWithCreditsAdmin(UserAdmin):
    form = StaffUserChangeForm
    list_display = (*UserAdmin.list_display, "balance")
    actions = ["grant_or_adjust_credits"]
    readonly_fields = (*UserAdmin.readonly_fields, "balance", "ledger")

    def get_queryset(self, request):
        # One LEFT JOIN instead of a query per row.
        return super().get_queryset(request).annotate(credit_balance=F("credits__balance"))

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        return (*fieldsets, ("Credits", {"fields": ("balance", "ledger")}))

    def has_credit_permission(self, request):
        return request.user.has_perm("jobs.add_ledgerentry")

    @admin.display(description="balance", ordering="credit_balance")
    def balance(self, obj):
        value = getattr(obj, "credit_balance", None)
        return "—" if value is None else value

    @admin.display(description="ledger")
    def ledger(self, obj):
        return ledger_link(obj.pk)

    @admin.action(description="Grant or adjust credits…", permissions=["credit"])
    def grant_or_adjust_credits(self, request, queryset):
        if queryset[: ACTION_LIMIT + 1].count() > ACTION_LIMIT:
            self.message_user(request, f"Select at most {ACTION_LIMIT} users at once.", messages.WARNING)
            return None
        form = CreditForm(request.POST if "post" in request.POST else None)
        if form.is_valid():
            amount, reason = form.cleaned_data["amount"], form.cleaned_data["reason"]
            for user in queryset:
                self._move_credits(request, user, amount, reason)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Grant or adjust credits",
            "opts": self.opts,
            "form": form,
            "users": list(queryset),
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/jobs/credit_confirmation.html", context)

    def _move_credits(self, request, user, amount: int, reason: str) -> None:
        move = ledger.grant if amount > 0 else ledger.adjust
        try:
            entry = move(user=user, amount=amount, reason=reason, staff=request.user)
        except ledger.InsufficientCredits as exc:
            self.message_user(
                request,
                f"{user}: taking {-amount} credit(s) would leave the balance below zero "
                f"(it is {exc.balance}); nothing changed.",
                messages.WARNING,
            )
        except ledger.LedgerError as exc:
            self.message_user(request, f"{user}: {exc}", messages.WARNING)
        else:
            done = "granted" if amount > 0 else "taken away"
            self.message_user(
                request, f"{user}: {abs(amount)} credit(s) {done}; the balance is now {entry.balance_after}."
            )


# --- Webhooks ------------------------------------------------------------------------


class CallbackAttemptInline(ReadOnly, admin.TabularInline):
    """Every try at a delivery, as it went."""

    model = CallbackAttempt
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "at",
        "succeeded",
        "status_code",
        "duration_ms",
        "error",
        "response_body",
        "next_attempt_at",
    )


@admin.register(CallbackDelivery)
class CallbackDeliveryAdmin(ReadOnly, BigTableAdmin):
    """Every delivery (webhook endpoints, jobs' callback URLs, the I2V callback),
    its attempts, and "send again"."""

    list_display = ("id", "event", "url", "status", "attempts", "next_attempt_at", "created_at", "job_link")
    list_filter = ("status", "format", "event_type")
    search_fields = ("=msg_id", "=job__id", "url")
    search_help_text = "webhook-id (msg_…), job id or the receiver's URL."
    list_select_related = ("job", "endpoint")
    raw_id_fields = ("job", "endpoint")
    inlines = [CallbackAttemptInline]
    actions = ["send_again"]
    fields = readonly_fields = (
        "job",
        "endpoint",
        "format",
        "event_type",
        "msg_id",
        "url",
        "status",
        "attempts",
        "next_attempt_at",
        "lease_until",
        "last_error",
        "created_at",
        "delivered_at",
        "requested_by",
        "body",
    )

    def lookup_allowed(self, lookup, value, request=None):
        # The links from an endpoint's page and a job's page.
        return lookup in ("endpoint__id__exact", "job__id__exact") or super().lookup_allowed(lookup, value, request)

    @admin.display(description="event", ordering="event_type")
    def event(self, delivery: CallbackDelivery) -> str:
        return delivery.event_type or f"{delivery.format} callback"

    @admin.display(description="job")
    def job_link(self, delivery: CallbackDelivery):
        return admin_link(delivery.job_id, "admin:jobs_job_change", short(delivery.job_id))

    def has_operate_permission(self, request) -> bool:
        return request.user.has_perm("jobs.change_job")

    @admin.action(description="Send the selected deliveries again", permissions=["operate"])
    def send_again(self, request, queryset):
        for found in queryset.select_related("job"):
            again = outbox.send_again(found.job, by=request.user, delivery=found)
            self.message_user(request, f"Delivery {found.pk}: to {again.url} queued again.", messages.SUCCESS)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/send-again/",
                self.admin_site.admin_view(self.send_again_view),
                name="jobs_callbackdelivery_send_again",
            ),
            *super().get_urls(),
        ]

    def send_again_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        found = self.get_object(request, unquote(object_id))
        if found is None:
            raise Http404(f"No delivery {object_id}.")
        if not self.has_operate_permission(request):
            raise PermissionDenied
        self.send_again(request, CallbackDelivery.objects.filter(pk=found.pk))
        return HttpResponseRedirect(reverse("admin:jobs_callbackdelivery_change", args=[found.pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "send_again_url": reverse("admin:jobs_callbackdelivery_send_again", args=[object_id]),
            "can_operate": self.has_operate_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnly, admin.ModelAdmin):
    """Users' endpoints: where they point, whether they are enabled, what was sent. Secrets are not shown."""

    list_display = ("url", "owner", "events_list", "enabled", "disabled_reason", "created_at")
    list_filter = (("disabled_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("url", "owner__username", "=owner__email")
    list_select_related = ("owner",)
    raw_id_fields = ("owner",)
    actions = ["enable_endpoints"]
    fields = readonly_fields = (
        "id",
        "owner",
        "url",
        "events",
        "description",
        "public_base_url",
        "disabled_at",
        "disabled_reason",
        "previous_secret_until",
        "created_at",
        "recent_deliveries",
    )

    @admin.display(description="deliveries")
    def recent_deliveries(self, endpoint: WebhookEndpoint):
        """The latest twenty, each linking to its attempts; all of them in the deliveries list."""
        rows = endpoint.deliveries.order_by("-created_at", "-id")[:20]
        lines = format_html_join(
            "",
            '<li><a href="{}">{} {}</a> — {} after {} attempt(s){}</li>',
            (
                (
                    reverse("admin:jobs_callbackdelivery_change", args=[row.pk]),
                    row.event_type,
                    row.msg_id,
                    row.get_status_display(),
                    row.attempts,
                    f"; {row.last_error}" if row.last_error else "",
                )
                for row in rows
            ),
        )
        everything = reverse("admin:jobs_callbackdelivery_changelist") + f"?endpoint__id__exact={endpoint.pk}"
        return format_html('<ul id="endpoint-deliveries">{}</ul><a href="{}">All deliveries</a>', lines, everything)

    @admin.display(description="events")
    def events_list(self, endpoint: WebhookEndpoint) -> str:
        return ", ".join(endpoint.events)

    @admin.display(description="enabled", boolean=True)
    def enabled(self, endpoint: WebhookEndpoint) -> bool:
        return endpoint.is_enabled

    def has_operate_permission(self, request) -> bool:
        return request.user.has_perm("jobs.change_job")

    @admin.action(description="Enable the selected endpoints (send what waited)", permissions=["operate"])
    def enable_endpoints(self, request, queryset):
        from jobs.webhooks.endpoints import enable_endpoint

        for endpoint in queryset:
            enable_endpoint(endpoint)
        self.message_user(request, f"{queryset.count()} endpoint(s) enabled.", messages.SUCCESS)
