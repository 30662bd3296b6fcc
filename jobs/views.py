"""The pages: make a video, watch it, the history of videos, and their files.

Views stay thin: they parse with a form, call the domain (``jobs.creation``,
``jobs.actions``) and render. Account pages (sign-up, credits, API keys) are
in ``jobs.views_account``.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import prefetch_related_objects
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from jobs import actions
from jobs.creation import JobInputError, create_job, create_job_from_image, create_job_on_upload
from jobs.extra_images import ExtraImage
from jobs.forms import CreateJobForm, HistoryFilterForm, provider_labels, provider_options
from jobs.intake import FRAMINGS, nearest_framing
from jobs.ledger import InsufficientCredits, balance_of
from jobs.models import Job, Upload
from jobs.queue_position import queue_position
from jobs.serving import serve_file
from jobs.views_webhooks import job_deliveries
from providers.registry import cost_of, provider_class, provider_settings

HISTORY_PAGE_SIZE = 12


def _get_job_for_user(request: HttpRequest, job_id) -> Job:
    # Another user's job is a 404, never a 403: its existence is not told.
    try:
        return Job.objects.select_related("upload").get(pk=job_id, owner=request.user)
    except (Job.DoesNotExist, ValueError, ValidationError) as exc:
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
    "i2v": "/api/v1/i2v",
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
                "message": "Welcome to the I2V API: POST /api/v1/i2v turns an image into a video",
                "name": "i2v",
                "description": "Turns a still image into a short video.",
                "version": "1.0.0",
                "endpoints": API_ENDPOINTS,
                "authentication": "Authorization: Bearer <API key> (or x-api-key: <API key> on /api/v1/i2v)",
            }
        )
    return home(request)


# --- Create -------------------------------------------------------------------------------


def _render_create(
    request: HttpRequest,
    form: CreateJobForm,
    *,
    status: int = 200,
    image_error: str = "",
    reuse: Job | None = None,
    reuse_tail: Job | None = None,
):
    options = provider_options()
    chosen = form["provider"].value()
    selected = next((o for o in options if o.name == chosen), options[0])
    context = {
        "selected": selected,
        # Which common sliders the chosen provider takes (the page script keeps this in step).
        "selected_takes": dict.fromkeys(selected.takes, True),
        "selected_cost_label": selected.cost_label_for(form["model"].value()),
        "form": form,
        "image_error": image_error,
        "providers": options,
        "providers_json": [o.as_json() for o in options],
        "framings": [(name, w, h) for name, (w, h) in FRAMINGS.items()],
        "max_upload_bytes": settings.MAX_UPLOAD_BYTES,
        "max_upload_mb": f"{settings.MAX_UPLOAD_BYTES / (1024 * 1024):g}",
        "recent": Job.objects.for_user(request.user).only("id", "status", "created_at", "poster", "provider")[:4],
        "reuse": reuse,
        "reuse_tail": reuse_tail,
    }
    return render(request, "jobs/create.html", context, status=status)


def _framing_of(width: int, height: int) -> str:
    return next((name for name, size in FRAMINGS.items() if size == (width, height)), "auto")


PHOTO_GONE = "The photo of that video is no longer available; choose the photo again."


def _photo_stored(upload: Upload) -> bool:
    return all(f and f.storage.exists(f.name) for f in (upload.original, upload.normalized))


def _reusable_photo(request: HttpRequest, job_id, image: str = "upload") -> Job | None:
    """The user's own job whose photo (``image="tail_upload"``: end frame) a new
    video may use again, if its files are still stored; anyone else's job, a
    job without one, or an image gone, is None."""
    if not job_id:
        return None
    try:
        job = Job.objects.select_related(image).get(pk=job_id, owner=request.user)
    except (Job.DoesNotExist, ValueError, ValidationError):
        return None
    return job if _image_stored(job, image) else None


def _image_stored(job: Job, image: str) -> bool:
    upload = getattr(job, image)
    return upload is not None and _photo_stored(upload)


def _original_of(upload: Upload) -> bytes:
    with upload.original.open("rb") as handle:
        return handle.read()


def prefill(job: Job, form_fields, *, photo: bool) -> dict:
    """The create form's initial values from ``job``: its settings, the seed it
    actually used, each of its ``extra_params`` the form has a field for, and
    (``photo``) its photo to use again."""
    seed = job.seed_used or job.seed
    initial = {
        "provider": job.provider,
        "model": job.model,
        "framing": _framing_of(job.width, job.height),
        "motion_bucket_id": job.motion_bucket_id,
        "cfg_scale": job.cfg_scale,
        "seed_mode": "fixed" if seed else "random",
        "seed": seed or None,
        "prompt": job.prompt,
        "negative_prompt": job.negative_prompt,
    }
    if photo:
        initial["photo_from"] = job.pk
    extra = {name: value for name, value in (job.extra_params or {}).items() if name in form_fields}
    return {**extra, **initial}


def _photo_for(reuse: Job, framing: str | None) -> dict:
    """How to give the reused photo to ``create_job``: the same upload when the
    framing is unchanged, else its original framed anew (a new upload);
    ``framing`` None is automatic."""
    upload: Upload = reuse.upload
    wanted = FRAMINGS[framing] if framing else nearest_framing(upload.source_width, upload.source_height)
    if wanted == (upload.width, upload.height):
        return {"upload": upload}
    return {"source": _original_of(upload), "filename": upload.original_name, "framing": framing}


def _create_form_from(request: HttpRequest, job_id) -> HttpResponse:
    """ "Run again with changes": the form filled in from one of the user's jobs."""
    job = _get_job_for_user(request, job_id)  # someone else's job is a 404
    reuse = job if _photo_stored(job.upload) else None
    form = CreateJobForm(initial=prefill(job, CreateJobForm.base_fields, photo=reuse is not None))
    reuse_tail = job if _image_stored(job, "tail_upload") else None
    return _render_create(request, form, reuse=reuse, reuse_tail=reuse_tail, image_error="" if reuse else PHOTO_GONE)


def _tail_again(job: Job) -> ExtraImage:
    """``job``'s end frame read again like a file just chosen, so it is fitted
    to the new photo's framing."""
    tail: Upload = job.tail_upload
    return ExtraImage(source=_original_of(tail), field="tail_image", filename=tail.original_name)


@login_required
@require_http_methods(["GET", "POST"])
def home(request: HttpRequest) -> HttpResponse:
    if request.method == "POST" and _body_too_large(request):
        # Refuse before Django reads the body: nothing is parsed or stored.
        limit = settings.MAX_UPLOAD_BYTES / (1024 * 1024)
        message = f"The file is too large; images must be {limit:g} MB or smaller."
        return _render_create(request, CreateJobForm(), status=413, image_error=message)
    if request.method != "POST":
        if request.GET.get("from"):
            return _create_form_from(request, request.GET["from"])
        return _render_create(request, CreateJobForm())
    form = CreateJobForm(request.POST, request.FILES or None)
    # A new file wins; without one, the photo of the user's earlier video is used again.
    reuse = None if request.FILES.get("image") else _reusable_photo(request, request.POST.get("photo_from"))
    if reuse:
        form.fields["image"].required = False
    # Likewise the end frame, for a provider that takes one.
    tail_from = None if request.FILES.get("tail_image") else request.POST.get("tail_from")
    reuse_tail = _reusable_photo(request, tail_from, "tail_upload")
    kept = {"reuse": reuse, "reuse_tail": reuse_tail}
    if not form.is_valid():
        if request.POST.get("photo_from") and not reuse and "image" in form.errors:
            form.errors["image"] = form.error_class([PHOTO_GONE])
        return _render_create(request, form, status=400, **kept)
    data = form.cleaned_data
    # Checked before the image is stored; ledger.hold in create_job stays the real guard.
    balance, cost = balance_of(request.user), cost_of(data["provider"], data["model"])
    if cost > balance:
        form.add_error("provider", InsufficientCredits(balance, cost).message)
        return _render_create(request, form, status=402, **kept)
    framing = None if data["framing"] == "auto" else data["framing"]
    if reuse:
        photo = _photo_for(reuse, framing)
    else:
        photo = {"source": data["image"], "filename": data["image"].name, "framing": framing}
    if data.get("tail_image"):
        # Only a provider that takes an end frame shows the field; create_job_* refuses it for the others.
        end = data["tail_image"]
        photo["tail"] = ExtraImage(source=end, field="tail_image", filename=end.name)
    elif reuse_tail and provider_class(data["provider"]).accepts_tail_image:
        photo["tail"] = _tail_again(reuse_tail)
    start = create_job_on_upload if "upload" in photo else create_job_from_image
    try:
        job = start(
            owner=request.user,
            **photo,
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
        return _render_create(request, form, status=400, **kept)
    except InsufficientCredits as exc:
        form.add_error("provider", exc.message)
        return _render_create(request, form, status=402, **kept)
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


def event_time(at) -> str:
    """A timeline time as the page shows it, on load and on every live update
    alike: one format, in the site's time zone (named under the timeline)."""
    return dateformat.format(timezone.localtime(at), "H:i:s")


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
        "seed_random": not job.seed,  # asked for a random seed: the page says the one used was picked
        "error_code": job.error_code,
        "error_message": job.error_message,
        "advice": failure_advice(job),
        "events": [
            {
                "at": e.at.isoformat(),
                "time": event_time(e.at),
                "from": e.from_status,
                "to": e.to_status,
                "message": e.message,
            }
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
        "provider_settings": provider_settings(job),
        "time_zone": timezone.get_current_timezone_name(),
        "no_cancel_note": _no_cancel_note(job),
        "deliveries": job_deliveries(job),
    }
    return render(request, "jobs/detail.html", context)


def _no_cancel_note(job: Job) -> str:
    """What the page says where a cancel button would be, for a provider that cannot stop a job."""
    try:
        cls = provider_class(job.provider)
    except LookupError:
        return ""
    if cls.supports_cancel:
        return ""
    return f"{cls.label or job.provider} cannot stop a job once it is sent: it will finish on its own."


@login_required
@require_GET
def job_tail_image(request: HttpRequest, job_id) -> HttpResponse:
    """The end frame of the job, as framed."""
    job = _get_job_for_user(request, job_id)
    if not job.tail_upload_id:
        raise Http404("This job has no end frame.")
    return serve_file(request, job.tail_upload.normalized.name, "image/png")


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
        **actions.same_images(job),
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
