"""Creating uploads and jobs: every check a person could fail, with a message."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import BinaryIO

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from jobs import ledger, links
from jobs.extra_images import ExtraImage, MaskSpec, check_extra_images, check_points
from jobs.input_errors import JobInputError
from jobs.intake import ImageRejected, NormalizedImage, normalize_image
from jobs.models import Job, JobEvent, JobMask, Upload
from jobs.tasks import enqueue_advance
from providers.params import CFG_SCALE, MOTION_BUCKET_ID, ParamError, by_name, format_number, specific
from providers.registry import UnknownProvider, cost_of, provider_class


def create_upload(
    *, owner, source: bytes | BinaryIO, filename: str = "", framing: str | None = None, source_url: str = ""
) -> Upload:
    """Check and normalise an image, and store both versions."""
    try:
        image: NormalizedImage = normalize_image(source, framing=framing)
    except ImageRejected as exc:
        field = "framing" if exc.code == "bad_framing" else "image"
        raise JobInputError(field, exc.message, exc.code) from exc
    if hasattr(source, "seek"):
        source.seek(0)
        original = source.read(image.size_bytes)
    else:
        original = bytes(source)
    ext = "jpg" if image.format == "JPEG" else "png"
    upload = Upload(
        owner=owner,
        original_name=(filename or "")[:255],
        source_url=source_url,
        format=image.format,
        size_bytes=image.size_bytes,
        sha256=image.sha256,
        source_width=image.source_width,
        source_height=image.source_height,
        width=image.width,
        height=image.height,
    )
    upload.original.save(f"{image.sha256[:16]}.{ext}", ContentFile(original), save=False)
    upload.normalized.save(
        f"{image.sha256[:16]}-{image.width}x{image.height}.png", ContentFile(image.png_bytes), save=False
    )
    upload.save()
    return upload


def format_bound(value: float) -> str:
    return format_number(value)


def parse_number(field: str, value, low: float, high: float, *, integer: bool, label: str | None = None):
    """A number from a form or query string, checked against its range, with
    a message that names the field and the range."""
    label = label or field.replace("_", " ")
    kind = "a whole number" if integer else "a number"
    span = f"from {format_bound(low)} to {format_bound(high)}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise JobInputError(field, f"{label} must be {kind} {span}; got {value!r}.") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise JobInputError(field, f"{label} must be {span}; got {value}.", "out_of_range")
    if integer:
        if number != int(number):
            raise JobInputError(field, f"{label} must be {kind} {span}; got {value}.")
        return int(number)
    return number


def validate_parameters(
    *,
    provider: str,
    seed=None,
    cfg_scale=None,
    motion_bucket_id=None,
    model: str | None = None,
    extra_params: Mapping | None = None,
) -> dict:
    """Check parameters against the provider's declaration (``Provider.parameters``),
    filling defaults. The common ones come back under their own names, the
    provider's own under ``extra_params``; a value for a parameter the provider
    does not take is refused, naming the ones it does."""
    try:
        cls = provider_class(provider)
    except UnknownProvider as exc:
        raise JobInputError("provider", str(exc), "unknown_provider") from None
    if not cls.is_enabled():
        raise JobInputError("provider", f"The {cls.label or provider} provider is not configured here.", "disabled")
    if model in (None, ""):
        model = cls.models[0]
    elif model not in cls.models:
        raise JobInputError("model", f"Unknown model {model!r} for {provider}; choose one of {', '.join(cls.models)}.")
    declared = by_name(cls.parameters)
    given = {name: value for name, value in (extra_params or {}).items() if value not in (None, "")}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise JobInputError(
            unknown[0],
            f"{unknown[0]} is not a parameter of the {provider} provider; it takes {', '.join(declared)}.",
            "unknown_parameter",
        )
    common = {"seed": seed, "cfg_scale": cfg_scale, "motion_bucket_id": motion_bucket_id}
    values = {}
    for param in cls.parameters:
        try:
            values[param.name] = param.parse(common[param.name] if param.name in common else given.get(param.name))
        except ParamError as exc:
            raise JobInputError(exc.name, exc.message, exc.code) from None
    try:
        cls.check_values(values)  # the provider's rules between parameters (Pipelet: duration by height)
    except ParamError as exc:
        raise JobInputError(exc.name, exc.message, exc.code) from None
    return {
        "provider": provider,
        "model": model,
        "seed": values.get("seed", 0),
        "cfg_scale": values.get("cfg_scale", CFG_SCALE.default),
        "motion_bucket_id": values.get("motion_bucket_id", MOTION_BUCKET_ID.default),
        "extra_params": {param.name: values[param.name] for param in specific(cls.parameters)},
    }


def plan_prompt(provider: str, prompt: str | None, source: str = "") -> tuple[str, str]:
    """The prompt a job starts with and where it came from (``Job.prompt_source``).

    A provider that needs a prompt and was given none gets one written by CLIP
    later (a Replicate token is set: nothing yet), else ``DEFAULT_PROMPT``; with
    neither the job is refused here, saying what to set.
    """
    prompt = (prompt or "").strip()
    if prompt:
        return prompt, source or Job.PROMPT_USER
    cls = provider_class(provider)
    if not cls.needs_prompt or settings.REPLICATE_API_TOKEN:
        return "", ""
    if settings.DEFAULT_PROMPT:
        return settings.DEFAULT_PROMPT, Job.PROMPT_DEFAULT
    raise JobInputError(
        "prompt",
        f"{cls.label or provider} needs a prompt: give one, or ask the operator to set REPLICATE_API_TOKEN "
        "(a prompt is then written from your photo) or DEFAULT_PROMPT.",
        "prompt_required",
    )


def create_job(
    *,
    owner,
    upload: Upload,
    provider: str | None = None,
    model: str | None = None,
    seed=None,
    cfg_scale=None,
    motion_bucket_id=None,
    extra_params: Mapping | None = None,
    prompt: str = "",
    prompt_source: str = "",
    negative_prompt: str = "",
    request_id: str = "",
    enqueue: bool = True,
    tail_upload: Upload | None = None,
    masks: Sequence[tuple[Upload, tuple[tuple[int, int], ...]]] = (),
) -> Job:
    """Create a queued job for an upload, hold its cost, and hand it to the
    worker on commit.

    ``tail_upload`` is the end frame, ``masks`` the motion masks as
    ``(upload, trajectory)``: the static mask first with an empty trajectory
    when there is one (``static_mask=True`` of ``create_job_from_image`` says
    so; here a first mask without a trajectory is the static one), then the
    dynamic masks. Each must have the upload's size; the provider must take them.

    Raises ``JobInputError`` for bad parameters and
    ``ledger.InsufficientCredits`` when the owner cannot pay; either way
    nothing is created or spent.

    ``extra_params`` are values of the provider's own parameters by name
    (the local provider's ``duration`` and ``fps``, say).

    ``enqueue=False`` leaves driving the job to the caller (the terminal
    command runs the pipeline in its own process).
    """
    params = validate_parameters(
        provider=provider or settings.DEFAULT_PROVIDER,
        model=model,
        seed=seed,
        cfg_scale=cfg_scale,
        motion_bucket_id=motion_bucket_id,
        extra_params=extra_params,
    )
    if provider_class(params["provider"]).needs_image_url and not links.provider_image_url(upload):
        label = provider_class(params["provider"]).label or params["provider"]
        raise JobInputError(
            "provider",
            f"{label} fetches the image by URL, and this server has no public address: give the image as "
            "image_url, or ask the operator to set PUBLIC_BASE_URL.",
            "needs_public_url",
        )
    static = [trajectory for _, trajectory in masks[:1] if not trajectory]
    dynamic = [trajectory for _, trajectory in masks[len(static) :]]
    check_extra_images(
        params["provider"], tail=tail_upload is not None, static_mask=bool(static), dynamic_masks=dynamic
    )
    check_points(dynamic, upload.width, upload.height)
    for other, field in [(tail_upload, "tail_image"), *((mask, "masks") for mask, _ in masks)]:
        if other is not None and (other.width, other.height) != (upload.width, upload.height):
            raise JobInputError(
                field,
                f"{field} is {other.width}x{other.height}; it must be fitted to the photo's {upload.width}x"
                f"{upload.height}.",
            )
    prompt, prompt_source = plan_prompt(params["provider"], prompt, prompt_source)
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.create(
            owner=owner,
            upload=upload,
            tail_upload=tail_upload,
            width=upload.width,
            height=upload.height,
            prompt=prompt,
            prompt_source=prompt_source,
            negative_prompt=negative_prompt or "",
            request_id=request_id or "",
            status=Job.QUEUED,
            status_message="Waiting for a worker",
            created_at=now,
            # If the queue loses the task, the sweeper hands it over again.
            next_poll_at=now + timedelta(seconds=settings.JOB_DISPATCH_GRACE),
            cost=cost_of(params["provider"], params["model"]),
            **params,
        )
        JobMask.objects.bulk_create(
            JobMask(job=job, upload=mask, position=position + (0 if static else 1), trajectory=[list(p) for p in path])
            for position, (mask, path) in enumerate(masks)
        )
        ledger.hold(job, job.cost)
        JobEvent.objects.create(
            job=job, at=now, from_status="", to_status=Job.QUEUED, message=f"Job created; {job.cost} credit(s) held"
        )
        if enqueue:
            enqueue_advance(job.pk)
    return job


def check_job_affordable(
    *,
    owner,
    provider: str | None = None,
    model: str | None = None,
    seed=None,
    cfg_scale=None,
    motion_bucket_id=None,
    extra_params: Mapping | None = None,
    prompt: str | None = None,
) -> None:
    """The checks a job can fail before its image is read: the provider, the
    parameters, the prompt (when ``prompt`` is given) and the owner's balance. Decoding a large image takes a second
    and a few hundred MB; a request that would be refused anyway should not pay it.

    Raises ``JobInputError`` or ``ledger.InsufficientCredits``. The balance is
    checked again, guarded, when the cost is held.
    """
    params = validate_parameters(
        provider=provider or settings.DEFAULT_PROVIDER,
        model=model,
        seed=seed,
        cfg_scale=cfg_scale,
        motion_bucket_id=motion_bucket_id,
        extra_params=extra_params,
    )
    if prompt is not None:
        plan_prompt(params["provider"], prompt)
    cost = cost_of(params["provider"], params["model"])
    balance = ledger.balance_of(owner)
    if balance < cost:
        raise ledger.InsufficientCredits(balance, cost)


def create_job_from_image(
    *,
    owner,
    source: bytes | BinaryIO,
    filename: str = "",
    framing: str | None = None,
    source_url: str = "",
    on_created: Callable[[Job], None] | None = None,
    tail: ExtraImage | None = None,
    static_mask: ExtraImage | None = None,
    dynamic_masks: Sequence[MaskSpec] = (),
    **job_fields,
) -> Job:
    """Store an image and start a job on it, as ``create_upload`` then ``create_job``.

    Everything that can be checked without the image is checked first. When the
    job is refused (bad parameters, not enough credits) the image just stored is
    deleted again, so a refusal leaves nothing behind. ``on_created(job)`` runs
    inside the transaction that creates the job: whatever it writes commits with
    the job, and if it raises, the job is not made.

    ``tail`` (the end frame) and the masks are checked like the photo and fitted
    to its framing (``jobs.extra_images``); a refusal deletes them too.
    """
    check_job_affordable(
        owner=owner,
        prompt=job_fields.get("prompt") or "",
        **{
            name: job_fields.get(name)
            for name in ("provider", "model", "seed", "cfg_scale", "motion_bucket_id", "extra_params")
        },
    )
    paths = [mask.trajectory for mask in dynamic_masks]
    check_extra_images(
        job_fields.get("provider") or settings.DEFAULT_PROVIDER,
        tail=tail is not None,
        static_mask=static_mask is not None,
        dynamic_masks=paths,
    )
    upload = create_upload(owner=owner, source=source, filename=filename, framing=framing, source_url=source_url)
    made = [upload]
    try:
        check_points(paths, upload.width, upload.height)
        fitted = f"{upload.width}x{upload.height}"

        def store(image: ExtraImage) -> Upload:
            made.append(_create_extra_upload(owner, image, fitted))
            return made[-1]

        tail_upload = store(tail) if tail is not None else None
        masks = [(store(static_mask), ())] if static_mask is not None else []
        masks += [(store(mask.image), tuple((int(x), int(y)) for x, y in mask.trajectory)) for mask in dynamic_masks]
        with transaction.atomic():
            job = create_job(owner=owner, upload=upload, tail_upload=tail_upload, masks=masks, **job_fields)
            if on_created is not None:
                on_created(job)
        return job
    except BaseException:
        for stored in made:
            discard_upload(stored)
        raise


def create_job_on_upload(*, owner, upload: Upload, tail: ExtraImage | None = None, **job_fields) -> Job:
    """``create_job`` on an upload already stored (a photo used again), with an
    end frame read now, fitted to the upload's framing and deleted again when
    the job is refused."""
    if tail is None:
        return create_job(owner=owner, upload=upload, **job_fields)
    check_extra_images(job_fields.get("provider") or settings.DEFAULT_PROVIDER, tail=True)
    tail_upload = _create_extra_upload(owner, tail, f"{upload.width}x{upload.height}")
    try:
        return create_job(owner=owner, upload=upload, tail_upload=tail_upload, **job_fields)
    except BaseException:
        discard_upload(tail_upload)
        raise


def _create_extra_upload(owner, image: ExtraImage, framing: str) -> Upload:
    """An end frame or mask stored like a photo, fitted to ``framing``; a
    refusal names the field it came in."""
    try:
        return create_upload(
            owner=owner, source=image.source, filename=image.filename, framing=framing, source_url=image.source_url
        )
    except JobInputError as exc:
        raise JobInputError(image.field, f"{image.field}: {exc.message}", exc.code) from None


def discard_upload(upload: Upload) -> bool:
    """Delete an upload and its files, unless a job uses it (as its photo, end
    frame or a mask); True when deleted."""
    deleted, _ = Upload.objects.unused().filter(pk=upload.pk).delete()
    if not deleted:
        return False
    # The files go only once the row is gone: a file without a row is harmless, a row without its file is not.
    for field in (upload.original, upload.normalized):
        if field:
            field.storage.delete(field.name)
    return True
