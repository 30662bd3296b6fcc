"""The pages: make a video, watch it, the history of videos, and their files.

Views stay thin: they parse with a form, call the domain (``jobs.creation``,
``jobs.actions``) and render. Account pages (sign-up, credits, API keys) are
in ``jobs.views_account``.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import prefetch_related_objects
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from jobs import actions
from jobs.creation import JobInputError, create_job, create_job_from_image
from jobs.forms import CreateJobForm, HistoryFilterForm, provider_labels, provider_options
from jobs.intake import FRAMINGS
from jobs.ledger import InsufficientCredits, balance_of
from jobs.models import Job
from jobs.serving import serve_file
from providers.registry import cost_of

HISTORY_PAGE_SIZE = 12


def _get_job_for_user(request: HttpRequest, job_id) -> Job:
    # Another user's job is a 404, never a 403: its existence is not told.
    try:
        return Job.objects.select_related("upload").get(pk=job_id, owner=request.user)
    except (Job.DoesNotExist, ValueError) as exc:
        raise Http404("No such job.") from exc


def _body_too_large(request: HttpRequest) -> bool:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False
    return length > settings.MAX_UPLOAD_BYTES + 256 * 1024  # room for the other fields


def _next_url(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return target
    return default


API_ENDPOINTS = {
    "jobs": "/api/v1/jobs",
    "job": "/api/v1/jobs/{id}",
    "cancel": "/api/v1/jobs/{id}/cancel",
    "retry": "/api/v1/jobs/{id}/retry",
    "providers": "/api/v1/providers",
    "credits": "/api/v1/credits",
    "ledger": "/api/v1/credits/ledger",
    "keys": "/api/v1/keys",
    "stability_compatible": "/api/img2video",
    "schema": "/api/schema/",
    "docs": "/docs",
    "redoc": "/redoc",
}


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def root(request: HttpRequest) -> HttpResponse:
    """``GET /``: the dashboard for browsers, API information for JSON clients
    (as the original I2V API's root endpoint gave)."""
    if request.method == "GET" and _wants_json(request):
        return JsonResponse(
            {
                "name": "i2v",
                "description": "Turns a still image into a short video.",
                "version": "1.0.0",
                "endpoints": API_ENDPOINTS,
                "authentication": "Authorization: Bearer <API key>",
            }
        )
    return home(request)


# --- Create -------------------------------------------------------------------------------


def _render_create(request: HttpRequest, form: CreateJobForm, *, status: int = 200, image_error: str = ""):
    options = provider_options()
    chosen = form["provider"].value()
    context = {
        "selected": next((o for o in options if o.name == chosen), options[0]),
        "form": form,
        "image_error": image_error,
        "providers": options,
        "providers_json": [o.as_json() for o in options],
        "framings": [(name, w, h) for name, (w, h) in FRAMINGS.items()],
        "max_upload_bytes": settings.MAX_UPLOAD_BYTES,
        "max_upload_mb": f"{settings.MAX_UPLOAD_BYTES / (1024 * 1024):g}",
        "recent": Job.objects.for_user(request.user).only("id", "status", "created_at", "poster", "provider")[:4],
    }
    return render(request, "jobs/create.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def home(request: HttpRequest) -> HttpResponse:
    if request.method == "POST" and _body_too_large(request):
        # Refuse before Django reads the body: nothing is parsed or stored.
        limit = settings.MAX_UPLOAD_BYTES / (1024 * 1024)
        message = f"The file is too large; images must be {limit:g} MB or smaller."
        return _render_create(request, CreateJobForm(), status=413, image_error=message)
    form = CreateJobForm(request.POST or None, request.FILES or None)
    if request.method != "POST":
        return _render_create(request, form)
    if not form.is_valid():
        return _render_create(request, form, status=400)
    data = form.cleaned_data
    # Checked before the image is stored; ledger.hold in create_job stays the real guard.
    balance, cost = balance_of(request.user), cost_of(data["provider"])
    if cost > balance:
        form.add_error("provider", InsufficientCredits(balance, cost).message)
        return _render_create(request, form, status=402)
    try:
        job = create_job_from_image(
            owner=request.user,
            source=data["image"],
            filename=data["image"].name,
            framing=None if data["framing"] == "auto" else data["framing"],
            provider=data["provider"],
            model=data["model"],
            seed=data["seed"],
            cfg_scale=data["cfg_scale"],
            motion_bucket_id=data["motion_bucket_id"],
            extra_params=data["extra_params"],
            prompt=data["prompt"],
            negative_prompt=data["negative_prompt"],
        )
    except JobInputError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return _render_create(request, form, status=400)
    except InsufficientCredits as exc:
        form.add_error("provider", exc.message)
        return _render_create(request, form, status=402)
    return redirect("job-detail", job_id=job.pk)


# --- History ------------------------------------------------------------------------------


@login_required
@require_GET
def history(request: HttpRequest) -> HttpResponse:
    """The user's videos, newest first, filtered; a fixed number of queries per page."""
    filters = HistoryFilterForm(request.GET)
    jobs = filters.filter(Job.objects.for_user(request.user)).select_related("upload")
    jobs = jobs.only(
        "id", "status", "provider", "provider_job_id", "created_at", "poster", "progress", "upload__original_name"
    )
    page = Paginator(jobs, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    labels = provider_labels()
    page.object_list = list(page.object_list)
    for job in page.object_list:
        job.provider_label = labels.get(job.provider, job.provider)
        job.cancellable = actions.can_cancel(job)
    return render(request, "jobs/history.html", {"page": page, "filters": filters})


# --- One job ------------------------------------------------------------------------------

# What a person can do about a failure, by ``error_code``; their credits were
# always released when a job failed (``pipeline.fail``).
RETRY_LATER = "This is usually temporary. Press “Try again”; if it keeps failing, try again later."
ADVICE = {
    "content_moderation": "The provider would not animate this photo. Try a different photo.",
    "content_filtered": "The provider would not animate this photo. Try a different photo.",
    "invalid_request": "The provider could not use this photo with these settings. Try another photo or settings.",
    "bad_parameters": "These settings could not be used. Make a new video with different settings.",
    "image_unreadable": "The prepared photo could not be read. Upload the photo again.",
    "provider_auth": "The provider is not set up correctly on our side. Choose another provider, or tell support.",
    "provider_credits": "The provider account has run out on our side. Choose another provider, or tell support.",
    "provider_forbidden": "The provider refused our account. Choose another provider, or tell support.",
}


def failure_advice(job: Job) -> str:
    if job.status == Job.FAILED:
        advice = ADVICE.get(job.error_code, RETRY_LATER)
        return f"You were not charged for it. {advice}"
    if job.status == Job.CANCELLED:
        return "You were not charged for it. Press “Try again” to make it after all."
    if job.status == Job.EXPIRED:
        hours = settings.RESULT_RETENTION_HOURS
        return f"Videos are kept for {hours} hours. Press “Run again” to make it again from the same photo."
    return ""


def queue_position(job: Job) -> int | None:
    """Where the job waits: the provider's queue once it has it, ours before."""
    if job.queue_position is not None or job.status != Job.QUEUED:
        return job.queue_position
    return Job.objects.filter(status=Job.QUEUED, created_at__lt=job.created_at).count() + 1


def job_status_payload(job: Job) -> dict:
    payload = {
        "id": str(job.pk),
        "status": job.status,
        "status_label": job.get_status_display(),
        "final": job.is_final,
        "cancellable": actions.can_cancel(job),
        "progress": round(job.progress, 3),
        "queue_position": queue_position(job),
        "status_message": job.status_message,
        "seed_used": job.seed_used,
        "error_code": job.error_code,
        "error_message": job.error_message,
        "advice": failure_advice(job),
        "events": [
            {"at": e.at.isoformat(), "from": e.from_status, "to": e.to_status, "message": e.message}
            for e in job.events.all()
        ],
    }
    if job.status == Job.COMPLETED:
        payload["video_url"] = reverse("job-video", args=[job.pk])
        payload["poster_url"] = reverse("job-poster", args=[job.pk])
        payload["download_url"] = reverse("job-video", args=[job.pk]) + "?download=1"
        payload["frames"] = job.video_frames
        payload["duration"] = job.video_duration
    return payload


@login_required
@require_GET
def job_detail(request: HttpRequest, job_id) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    prefetch_related_objects([job], "events")  # the timeline, read by the page and its payload
    framing = next((name for name, size in FRAMINGS.items() if size == (job.width, job.height)), "")
    context = {
        "job": job,
        "status": job_status_payload(job),
        "framing": framing,
        "provider_label": provider_labels().get(job.provider, job.provider),
    }
    return render(request, "jobs/detail.html", context)


@login_required
@require_GET
def job_status(request: HttpRequest, job_id) -> JsonResponse:
    # The hot path of a watching page: one job row and its events, no more.
    payload = job_status_payload(_get_job_for_user(request, job_id))
    if payload["final"]:
        payload["balance"] = balance_of(request.user)  # a failed job gave its credits back
    return JsonResponse(payload)


@login_required
@require_GET
def job_video(request: HttpRequest, job_id) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    if job.status != Job.COMPLETED or not job.video:
        raise Http404("This job has no video (yet, or any more).")
    name = f"i2v-{job.pk}.mp4" if request.GET.get("download") else ""
    return serve_file(request, job.video.name, "video/mp4", download_name=name)


@login_required
@require_GET
def job_poster(request: HttpRequest, job_id) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    if not job.poster:
        raise Http404("This job has no poster.")
    return serve_file(request, job.poster.name, "image/jpeg")


@login_required
@require_GET
def job_image(request: HttpRequest, job_id) -> HttpResponse:
    """The framed photo the job animates, shown while the video is made."""
    job = _get_job_for_user(request, job_id)
    return serve_file(request, job.upload.normalized.name, "image/png")


@login_required
@require_POST
def job_cancel(request: HttpRequest, job_id) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    try:
        actions.cancel_job(job, by=request.user)
    except actions.ActionRefused as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "The job was cancelled; its credits were given back.")
    return redirect(_next_url(request, reverse("job-detail", args=[job.pk])))


def rerun(job: Job, *, new_seed: bool, by) -> Job:
    """A new job from the same photo and settings; the seed kept or drawn anew.

    A failed or cancelled job with its own seed is retried through
    ``actions.retry_job`` (its timeline says so); a finished one is made again
    with ``create_job``, keeping the seed it actually used.
    """
    if not job.is_final:
        raise actions.ActionRefused("This job has not finished yet; wait for it, or cancel it first.")
    if job.status in (Job.FAILED, Job.CANCELLED) and not new_seed:
        return actions.retry_job(job, by=by)
    return create_job(
        owner=job.owner,
        upload=job.upload,
        provider=job.provider,
        model=job.model,
        seed=0 if new_seed else (job.seed_used or job.seed),
        cfg_scale=job.cfg_scale,
        motion_bucket_id=job.motion_bucket_id,
        extra_params=job.extra_params,
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
    )


@login_required
@require_POST
def job_rerun(request: HttpRequest, job_id) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    try:
        new = rerun(job, new_seed=request.POST.get("seed") == "new", by=request.user)
    except (actions.ActionRefused, JobInputError, InsufficientCredits) as exc:
        messages.error(request, exc.message)
        return redirect("job-detail", job_id=job.pk)
    return redirect("job-detail", job_id=new.pk)
