"""Account pages: sign up, change password, credits (ledger and spending),
and API keys. Thin views over ``jobs.ledger`` and ``jobs.apikeys``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from jobs import ledger
from jobs.apikeys import KEY_PREFIX, create_api_key, rename_api_key, revoke_api_key
from jobs.demo import demo_login_available
from jobs.forms import provider_labels
from jobs.forms_account import ApiKeyNameForm, SignUpForm
from jobs.models import ApiKey, Job, LedgerEntry

LEDGER_PAGE_SIZE = 20
CHART_DAYS = 30


# --- Sign up and password -------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            user = form.save()
            account = ledger.open_account(user)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(
            request,
            f"Welcome, {user.get_username()}! You have {account.balance} credits to start with. "
            "Choose a photo below to make your first video.",
        )
        return redirect("home")
    return render(request, "account/signup.html", {"form": form}, status=400 if form.errors else 200)


class LoginView(auth_views.LoginView):
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        # "make run printed a demo login" is said only where it is true.
        return {**super().get_context_data(**kwargs), "demo_login": demo_login_available()}


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "account/password_change.html"
    success_url = reverse_lazy("home")

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password was changed.")
        return response


# --- Credits --------------------------------------------------------------------------------


def spending_by_day(user, *, days: int = CHART_DAYS, today: date | None = None) -> list[dict]:
    """Credits charged per day for the last ``days`` days, oldest first.

    A job's credits are charged when it completes (its ``capture`` entry);
    held credits of unfinished jobs and released ones are not spending.
    """
    today = today or timezone.localdate()
    start = today - timedelta(days=days - 1)
    since = timezone.make_aware(datetime.combine(start, time.min))
    rows = (
        LedgerEntry.objects.filter(user=user, kind=LedgerEntry.CAPTURE, at__gte=since)
        .annotate(day=TruncDate("at"))
        .values("day")
        .annotate(spent=Sum("job__cost"))
    )
    spent = {row["day"]: row["spent"] or 0 for row in rows}
    return [{"day": start + timedelta(days=i), "spent": spent.get(start + timedelta(days=i), 0)} for i in range(days)]


def chart_bars(series: list[dict], *, width: int = 600, height: int = 160) -> dict:
    """Geometry of an SVG bar chart for ``series``; the page draws it as is."""
    peak = max((d["spent"] for d in series), default=0)
    slot = width / max(len(series), 1)
    bars = []
    for i, d in enumerate(series):
        h = round(d["spent"] / peak * (height - 4), 1) if peak else 0
        h = max(h, 1.5)  # a stub, so an empty day is still visible as a day
        bars.append({**d, "x": round(i * slot + slot * 0.15, 1), "w": round(slot * 0.7, 1), "y": height - h, "h": h})
    return {
        "bars": bars,
        "width": width,
        "height": height,
        "peak": peak,
        "total": sum(d["spent"] for d in series),
    }


@dataclass
class StatementLine:
    """One line of the credits page: a job (what it cost, and how it ended), or
    a grant, adjustment or refund as it was booked."""

    at: datetime
    label: str  # the outcome in a customer's words: "Charged", "Not charged", "Held", "Added" ...
    outcome: str  # a CSS-friendly key: charged, released, held, grant, adjustment, refund
    detail: str
    change: int  # what it did to the balance, all told
    job_id: object = None


OTHER_LINES = {
    LedgerEntry.GRANT: ("Added", "grant"),
    LedgerEntry.ADJUSTMENT: ("Adjusted", "adjustment"),
    LedgerEntry.REFUND: ("Refunded", "refund"),
}


def _job_line(
    hold: LedgerEntry, settlement: LedgerEntry | None, labels: dict[str, str], refunded: bool
) -> StatementLine:
    job, cost = hold.job, -hold.amount
    video = f"Video with {labels.get(job.provider, job.provider)}"
    credits = f"{cost} credit{'s' if cost != 1 else ''}"
    if settlement is None:
        # Only here is the hold worth telling: the credits are set aside, not yet spent.
        return StatementLine(
            hold.at,
            "Held",
            "held",
            f"{video}, still being made: {credits} held, charged only if it completes",
            hold.amount,
            job.pk,
        )
    if settlement.kind == LedgerEntry.CAPTURE:
        note = "; refunded later" if refunded else ""
        return StatementLine(hold.at, "Charged", "charged", f"{video}, completed{note}", hold.amount, job.pk)
    ended = {Job.FAILED: "failed", Job.CANCELLED: "was cancelled"}.get(job.status, "did not complete")
    return StatementLine(
        hold.at,
        "Not charged",
        "released",
        f"{video} {ended}: the {credits} held {'was' if cost == 1 else 'were'} given back",
        0,
        job.pk,
    )


def statement_lines(entries: list[LedgerEntry]) -> list[StatementLine]:
    """The page's lines for ``entries`` (a page of a user's ledger without its
    captures and releases): each job's hold becomes the job's one line, joined
    with how it was settled; other entries keep a line each."""
    holds = [e for e in entries if e.kind == LedgerEntry.HOLD]
    settlements = {
        e.job_id: e
        for e in LedgerEntry.objects.filter(
            job_id__in=[h.job_id for h in holds], kind__in=[LedgerEntry.CAPTURE, LedgerEntry.RELEASE]
        )
    }
    refunded = set(
        LedgerEntry.objects.filter(job_id__in=[h.job_id for h in holds], kind=LedgerEntry.REFUND).values_list(
            "job_id", flat=True
        )
    )
    labels = provider_labels()
    lines = []
    for entry in entries:
        if entry.kind == LedgerEntry.HOLD:
            lines.append(_job_line(entry, settlements.get(entry.job_id), labels, entry.job_id in refunded))
            continue
        label, outcome = OTHER_LINES.get(entry.kind, (entry.get_kind_display(), entry.kind))
        lines.append(StatementLine(entry.at, label, outcome, entry.reason, entry.amount, entry.job_id))
    return lines


@login_required
@require_GET
def credits(request: HttpRequest) -> HttpResponse:
    ledger.balance_of(request.user)  # a first visit opens the account, so its starting grant is listed
    entries = (
        LedgerEntry.objects.filter(user=request.user)
        .exclude(kind__in=[LedgerEntry.CAPTURE, LedgerEntry.RELEASE])  # shown on their job's line
        .select_related("job")
        .only("at", "kind", "amount", "reason", "job_id", "job__provider", "job__status")
        .order_by("-at", "-id")
    )
    page = Paginator(entries, LEDGER_PAGE_SIZE).get_page(request.GET.get("page"))
    page.object_list = statement_lines(list(page.object_list))
    series = spending_by_day(request.user)
    context = {
        "page": page,
        "chart": chart_bars(series),
        "spent_days": [d for d in series if d["spent"]],
        "first_day": series[0]["day"],
        "last_day": series[-1]["day"],
    }
    return render(request, "account/credits.html", context)


# --- API keys -------------------------------------------------------------------------------


def _own_key(request: HttpRequest, key_id: int) -> ApiKey:
    key = ApiKey.objects.filter(pk=key_id, user=request.user).first()
    if key is None:
        raise Http404("No such key.")
    return key


@login_required
@require_http_methods(["GET", "POST"])
def api_keys(request: HttpRequest) -> HttpResponse:
    form = ApiKeyNameForm(request.POST or None)
    context = {"form": form, "key_prefix": KEY_PREFIX}
    status = 200
    if request.method == "POST":
        if form.is_valid():
            key, full = create_api_key(user=request.user, name=form.cleaned_data["name"])
            # Shown in this answer only: the full key is stored nowhere, not even the session.
            context.update(new_key=key, new_secret=full, form=ApiKeyNameForm())
            status = 201
        else:
            status = 400
    context["keys"] = ApiKey.objects.filter(user=request.user).order_by("revoked_at", "-created_at")
    response = render(request, "account/keys.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def api_key_rename(request: HttpRequest, key_id: int) -> HttpResponse:
    key = _own_key(request, key_id)
    form = ApiKeyNameForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors["name"]))
    elif rename_api_key(key, form.cleaned_data["name"]):
        messages.success(request, f"The key {KEY_PREFIX}{key.prefix}… is now called “{key.name}”.")
    else:
        messages.error(request, f"The key {KEY_PREFIX}{key.prefix}… was revoked; it keeps the name it had.")
    return redirect("keys")


@login_required
@require_POST
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    key = _own_key(request, key_id)
    if key.is_active:
        revoke_api_key(key)
        messages.success(
            request, f"The key “{key.name or key.prefix}” was revoked; programs using it can no longer get in."
        )
    else:
        messages.info(request, "That key was already revoked.")
    return redirect("keys")
