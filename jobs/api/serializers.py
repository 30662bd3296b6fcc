"""Input and output shapes of the native API, one pair per operation."""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Mapping

from django.urls import reverse
from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs import links
from jobs.actions import can_cancel
from jobs.api.parameters import PROVIDER_PARAMETERS, ParameterOutput, ProviderParameterFields
from jobs.creation import format_bound
from jobs.intake import FRAMINGS
from jobs.models import ApiKey, CallbackAttempt, CallbackDelivery, Job, JobEvent, LedgerEntry, WebhookEndpoint
from jobs.queue_position import queue_position
from providers.registry import PROVIDERS, provider_class

# DRF refuses a NUL in any text field ("Null characters are not allowed"); PostgreSQL could not store one.
# "+", not "*": drf-spectacular writes a blank-allowed field as oneOf(this, maxLength 0), and
# "" must match only one of the two.
NO_NUL = r"^[^\x00]+$"


def signed_result_url(request, job: Job, kind: str, until=None) -> str:
    """An unguessable link that works without credentials until it expires
    (``RESULT_LINK_SECONDS`` from now, or ``until``)."""
    path = reverse("api-job-file", args=[job.pk, kind])
    url = f"{path}?token={links.sign(job.pk, kind, until=until)}"
    return request.build_absolute_uri(url) if request is not None else url


class StrictCharField(serializers.CharField):
    """A string that must arrive as a string: 0 or true in JSON is refused,
    not quietly turned into "0". Its length is counted as sent, before
    surrounding whitespace is trimmed, so the schema's ``maxLength`` is the rule."""

    def run_validation(self, data=serializers.empty):
        if isinstance(data, str) and self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().run_validation(data)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharFieldSchema(OpenApiSerializerFieldExtension):
    """Tells the schema the rule DRF adds to every text field: no NUL character."""

    target_class = StrictCharField
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["pattern"] = NO_NUL
        return schema


# A request body that refuses keys it does not declare. A misspelt field
# (``motoin``) used to be dropped, and the job made and charged with the
# default in its place; now it is a 400 naming it. What is known is the
# serializer's own declared fields, so a field added to a serializer is
# accepted with no other change. (A comment, not a docstring: drf-spectacular
# would show a base class's docstring as the description of every subclass
# without one of its own.)
class StrictInput(serializers.Serializer):
    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = unknown_fields(self, data)
            if unknown:
                raise serializers.ValidationError(unknown)
        return super().to_internal_value(data)


def unknown_fields(serializer: serializers.Serializer, data: Mapping) -> dict[str, list[str]]:
    """Each key of ``data`` that ``serializer`` does not declare, with what to send instead."""
    known = [name for name, field in serializer.fields.items() if not field.read_only]
    problems = {}
    for name in data:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]}?" if close else ""
            problems[name] = [f"Unknown field.{hint} This request takes {', '.join(known)}."]
    return problems


class StrictInputSchema(OpenApiSerializerExtension):
    """Tells the schema what ``StrictInput`` does: no properties beyond the declared ones."""

    target_class = StrictInput
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["additionalProperties"] = False
        return schema


def _range(name: str, low: float, high: float) -> dict:
    message = f"{name} must be from {format_bound(low)} to {format_bound(high)}."
    return {"min_value": low, "max_value": high, "error_messages": {"min_value": message, "max_value": message}}


# The most dynamic masks any provider takes: the multipart file parts they may come in.
MAX_DYNAMIC_MASKS = max((provider_class(name).max_dynamic_masks for name in PROVIDERS), default=0)
MASK_FILE_FIELDS = tuple(f"dynamic_mask_{n}" for n in range(1, MAX_DYNAMIC_MASKS + 1))
# Generous bounds on the shape alone; the chosen provider's own limits (6 masks,
# 2-77 points) are checked by jobs.extra_images with messages that say them.
SHAPE_MASKS, SHAPE_POINTS = 20, 200
MASK_SCHEMA = {
    "type": "object",
    "properties": {
        "mask_url": {
            "type": "string",
            "description": "The mask image: a public http(s) URL, or a data: URI (base64).",
        },
        "mask": {
            "type": "string",
            "enum": list(MASK_FILE_FIELDS),
            "description": "Multipart only: the name of the file part that holds the mask image.",
        },
        "trajectories": {
            "type": "array",
            "description": "The path the masked area follows, in pixels of the job's frame (2-77 points for Kling).",
            "items": {
                "type": "object",
                "properties": {"x": {"type": "integer", "minimum": 0}, "y": {"type": "integer", "minimum": 0}},
                "required": ["x", "y"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["trajectories"],
    "additionalProperties": False,
}
DYNAMIC_MASKS_EXAMPLE = [
    {"mask_url": "https://example.com/masks/boat.png", "trajectories": [{"x": 200, "y": 300}, {"x": 600, "y": 320}]}
]


@extend_schema_field(
    {
        "anyOf": [
            {"type": "array", "items": MASK_SCHEMA},
            {"type": "string", "description": "In a multipart body: the same array written as JSON."},
        ],
        "description": "Motion-brush masks (providers that take them: see `capabilities.accepts_masks` in "
        "GET /api/v1/providers): an array of `{mask_url | mask, trajectories: [{x, y}, …]}`. In JSON an array; "
        "in a multipart body the same array as a JSON string, where `mask` may name the file part "
        "(`dynamic_mask_1` … `dynamic_mask_6`) that holds the mask image.",
        "example": DYNAMIC_MASKS_EXAMPLE,
    }
)
class DynamicMasksField(serializers.Field):
    """A JSON array of masks, or the same array as a JSON string (multipart),
    read into ``[{"mask": name|None, "mask_url": url|None, "trajectory": [(x, y), ...]}]``."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                raise serializers.ValidationError(
                    'dynamic_masks must be a JSON array like [{"mask_url": "https://…", '
                    '"trajectories": [{"x": 10, "y": 20}, {"x": 30, "y": 40}]}].'
                ) from None
        if not isinstance(data, list) or len(data) > SHAPE_MASKS:
            raise serializers.ValidationError(f"dynamic_masks must be an array of at most {SHAPE_MASKS} masks.")
        masks = []
        for index, item in enumerate(data):
            where = f"dynamic_masks[{index}]"
            if not isinstance(item, dict):
                raise serializers.ValidationError(f"{where} must be an object {{mask_url | mask, trajectories}}.")
            unknown = sorted(set(item) - {"mask", "mask_url", "trajectories"})
            if unknown:
                raise serializers.ValidationError(
                    f"{where}: unknown key {unknown[0]}; it takes mask_url or mask, and trajectories."
                )
            sources = [key for key in ("mask", "mask_url") if item.get(key) not in (None, "")]
            if len(sources) != 1 or not isinstance(item[sources[0]], str):
                raise serializers.ValidationError(f"{where} must give exactly one of mask_url or mask, as a string.")
            points = item.get("trajectories")
            if not isinstance(points, list) or len(points) > SHAPE_POINTS:
                raise serializers.ValidationError(f"{where}.trajectories must be an array of {{x, y}} points.")
            trajectory = []
            for n, point in enumerate(points):
                if not isinstance(point, dict) or set(point) != {"x", "y"}:
                    raise serializers.ValidationError(f"{where}.trajectories[{n}] must be an object {{x, y}}.")
                trajectory.append((point["x"], point["y"]))
            masks.append(
                {"mask": item.get("mask") or None, "mask_url": item.get("mask_url") or None, "trajectory": trajectory}
            )
        return masks

    def to_representation(self, value):
        return value


class JobCreateJsonInput(StrictInput, ProviderParameterFields):
    """A job from JSON: the image comes as `image_url` or `data_uri`."""

    def validate_dynamic_masks(self, masks):
        # JSON has no file parts for "mask" to name.
        if not isinstance(self, JobCreateInput) and any(mask["mask"] for mask in masks):
            raise serializers.ValidationError(
                'A JSON body carries no files: give each mask as "mask_url" (a URL or data: URI).'
            )
        return masks

    # A plain string: the safe fetcher checks it and says precisely what is wrong.
    image_url = StrictCharField(
        required=False, max_length=2048, help_text="A public http(s) URL of a JPEG or PNG image."
    )
    data_uri = StrictCharField(
        required=False,
        trim_whitespace=True,
        help_text="The image as base64, bare or as `data:image/png;base64,…`.",
    )
    framing = serializers.ChoiceField(
        choices=list(FRAMINGS), required=False, help_text="Output size; default: nearest aspect."
    )
    provider = serializers.ChoiceField(
        choices=list(PROVIDERS),
        required=False,
        help_text="See GET /api/v1/providers.",
        error_messages={"invalid_choice": f"Unknown provider {{input}}; choose one of {', '.join(PROVIDERS)}."},
    )
    model = StrictCharField(required=False, max_length=128)
    seed = serializers.IntegerField(required=False, help_text="0 = random.", **_range("seed", 0, 4294967294))
    cfg_scale = serializers.FloatField(
        required=False, help_text="How closely to keep the framing.", **_range("cfg_scale", 0, 10)
    )
    motion_bucket_id = serializers.IntegerField(
        required=False, help_text="How much motion.", **_range("motion_bucket_id", 1, 255)
    )
    prompt = StrictCharField(required=False, allow_blank=True, max_length=2000)
    negative_prompt = StrictCharField(required=False, allow_blank=True, max_length=2000)
    request_id = StrictCharField(required=False, allow_blank=True, max_length=128)
    tail_image_url = StrictCharField(
        required=False,
        help_text="The end frame, where the video should finish (providers with `capabilities.accepts_tail_image`): "
        "a public http(s) URL of a JPEG or PNG, or a data: URI. Fitted to the photo's framing.",
    )
    static_mask_url = StrictCharField(
        required=False,
        help_text="Motion brush: the area that must stay still, as a mask image (white marks it): a public http(s) "
        "URL or a data: URI. Fitted to the photo's framing.",
    )
    dynamic_masks = DynamicMasksField(required=False)
    callback_url = StrictCharField(
        required=False,
        max_length=2048,
        help_text="A public http(s) URL told when the job ends (job.completed, job.failed, job.cancelled), "
        "as a Standard Webhooks delivery signed with your job-callback secret "
        "(GET /api/v1/webhooks/job-callback-secret).",
    )

    SOURCES = {"image": "image (file)", "image_url": "image_url", "data_uri": "data_uri"}

    def validate(self, attrs):
        # Only the sources this body can carry: JSON has no file.
        offered = [label for name, label in self.SOURCES.items() if name in self.fields]
        if len([name for name in self.SOURCES if attrs.get(name)]) != 1:
            message = f"Send exactly one of {', '.join(offered[:-1])} or {offered[-1]}."
            raise serializers.ValidationError({"image": [message]})
        return attrs


@extend_schema_field(
    {
        "type": "string",
        "description": "Motion-brush masks (providers that take them: see `capabilities.accepts_masks` in "
        "GET /api/v1/providers), as a JSON array written in one form field: `[{mask_url | mask, trajectories: "
        "[{x, y}, …]}]`, where `mask` may name the file part (`dynamic_mask_1` … `dynamic_mask_6`) that holds "
        "the mask image.",
        "example": json.dumps(
            [{"mask": "dynamic_mask_1", "trajectories": [{"x": 200, "y": 300}, {"x": 600, "y": 320}]}]
        ),
    }
)
class DynamicMasksFormField(DynamicMasksField):
    """``dynamic_masks`` in a multipart body, where every field is text: one JSON string."""


class JobCreateInput(JobCreateJsonInput):
    """A job from a multipart form: the image may also be a file."""

    dynamic_masks = DynamicMasksFormField(required=False)

    image = serializers.FileField(required=False, help_text="The image as a multipart file (JPEG or PNG, ≤ 10 MB).")
    tail_image = serializers.FileField(
        required=False, help_text="The end frame as a file (JPEG or PNG); or give tail_image_url."
    )
    static_mask = serializers.FileField(
        required=False, help_text="The static mask as a file (JPEG or PNG); or give static_mask_url."
    )
    # One file part per dynamic mask a provider may take (dynamic_mask_1 ...), declared
    # like any field so a strict input still refuses the names it does not know.
    locals().update(
        {
            name: serializers.FileField(
                required=False, help_text=f'A dynamic mask image, named by "mask": "{name}" in dynamic_masks.'
            )
            for name in MASK_FILE_FIELDS
        }
    )

    def validate(self, attrs):
        attrs = super().validate(attrs)
        for one, other in (("tail_image", "tail_image_url"), ("static_mask", "static_mask_url")):
            if attrs.get(one) and attrs.get(other):
                raise serializers.ValidationError({one: [f"Send {one} or {other}, not both."]})
        named = [mask["mask"] for mask in attrs.get("dynamic_masks") or [] if mask["mask"]]
        for name in named:
            if name not in MASK_FILE_FIELDS or not attrs.get(name):
                raise serializers.ValidationError(
                    {
                        "dynamic_masks": [
                            f'"mask": "{name}" names no file part sent; send the mask image as {name} '
                            f"(one of {', '.join(MASK_FILE_FIELDS)}) or give mask_url."
                        ]
                    }
                )
        unused = [name for name in MASK_FILE_FIELDS if attrs.get(name) and name not in named]
        if unused:
            raise serializers.ValidationError(
                {unused[0]: [f'No dynamic mask names {unused[0]} ("mask": "{unused[0]}").']}
            )
        return attrs


class JobListQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=[c for c, _ in Job.STATUS_CHOICES], required=False)
    provider = serializers.ChoiceField(choices=list(PROVIDERS), required=False)
    page = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=100)


class PageQuery(serializers.Serializer):
    page = serializers.IntegerField(required=False, min_value=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=100)


class ParametersOutput(ProviderParameterFields):
    """The job's parameters: the common ones, then the provider's own it was made with."""

    seed = serializers.IntegerField()
    cfg_scale = serializers.FloatField()
    motion_bucket_id = serializers.IntegerField()
    prompt = serializers.CharField()
    prompt_source = serializers.ChoiceField(
        choices=["", *(value for value, _ in Job.PROMPT_SOURCE_CHOICES)],
        help_text="Where the prompt came from: user (given), clip (written by Replicate's CLIP interrogator "
        "from the photo), default (the server's DEFAULT_PROMPT); empty while there is none.",
    )
    negative_prompt = serializers.CharField()
    width = serializers.IntegerField(help_text="The frame's width in pixels (the job's framing).")
    # Pipelet's own parameter has this name: its value is the one shown for a Pipelet job.
    height = serializers.IntegerField(
        help_text="The frame's height in pixels; for a Pipelet job, the height asked of Pipelet (720 or 480)."
    )
    tail_image = serializers.BooleanField(required=False, help_text="Present (true) when the job has an end frame.")
    static_mask = serializers.BooleanField(required=False, help_text="Present (true) when the job has a static mask.")
    dynamic_masks = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="Present when the job has dynamic masks: each `{trajectories: [{x, y}, …]}`, in order.",
    )


def extra_images_of(job: Job) -> dict:
    """The job's end frame and masks as its parameters show them (absent when none)."""
    shown: dict = {}
    if job.tail_upload_id:
        shown["tail_image"] = True
    if provider_class(job.provider).accepts_masks if job.provider in PROVIDERS else False:
        dynamic = []
        for mask in job.masks.all():
            if mask.is_static:
                shown["static_mask"] = True
            else:
                dynamic.append({"trajectories": [{"x": x, "y": y} for x, y in mask.trajectory]})
        if dynamic:
            shown["dynamic_masks"] = dynamic
    return shown


def parameters_of(job: Job) -> dict:
    """A job's ``parameters`` (``ParametersOutput``)."""
    return {
        "seed": job.seed,
        "cfg_scale": job.cfg_scale,
        "motion_bucket_id": job.motion_bucket_id,
        "prompt": job.prompt,
        "prompt_source": job.prompt_source,
        "negative_prompt": job.negative_prompt,
        "width": job.width,
        "height": job.height,
        **{name: value for name, value in job.extra_params.items() if name in PROVIDER_PARAMETERS},
        **extra_images_of(job),
    }


def video_of(job: Job, request, until=None) -> dict | None:
    """A completed job's ``video`` (``VideoInfoOutput``) with signed links, else None."""
    if job.status != Job.COMPLETED or not job.video:
        return None
    return {
        "url": signed_result_url(request, job, "video", until),
        "poster_url": signed_result_url(request, job, "poster", until),
        "frames": job.video_frames,
        "duration": job.video_duration,
        "bytes": job.video_bytes,
    }


def error_of(job: Job) -> dict | None:
    """A failed job's ``error`` (``ErrorInfoOutput``), else None."""
    if not job.error_code:
        return None
    return {"code": job.error_code, "message": job.error_message}


class ErrorInfoOutput(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class VideoInfoOutput(serializers.Serializer):
    url = serializers.CharField()
    poster_url = serializers.CharField()
    frames = serializers.IntegerField(allow_null=True)
    duration = serializers.FloatField(allow_null=True)
    bytes = serializers.IntegerField(allow_null=True)


class FieldsBuiltOnce:
    """For a ModelSerializer on the hot read: the fields DRF derives from the
    model are worked out once per class, then copied for each instance, as DRF
    copies declared fields. Deriving them on every instance was about a sixth
    of ``GET /api/v1/jobs/{id}``'s CPU (bench/bench_hot_read.py)."""

    def get_fields(self):
        built = type(self).__dict__.get("_fields_built_once")
        if built is None:
            built = super().get_fields()
            type(self)._fields_built_once = built
        return copy.deepcopy(built)


class EventOutput(FieldsBuiltOnce, serializers.ModelSerializer):
    class Meta:
        model = JobEvent
        fields = ["at", "from_status", "to_status", "message"]


class JobOutput(FieldsBuiltOnce, serializers.ModelSerializer):
    queue_position = serializers.SerializerMethodField(
        help_text="While the job waits: its place in the line, 1 being next (ours, then the provider's); "
        "otherwise null."
    )
    cancellable = serializers.SerializerMethodField(
        help_text="Whether POST …/cancel would be tried now; false once the provider cannot stop the job."
    )
    parameters = serializers.SerializerMethodField()
    video = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "status",
            "progress",
            "queue_position",
            "status_message",
            "cancellable",
            "provider",
            "model",
            "parameters",
            "seed_used",
            "cost",
            "finish_reason",
            "video",
            "error",
            "request_id",
            "created_at",
            "submitted_at",
            "finished_at",
            "expires_at",
        ]

    @extend_schema_field(serializers.IntegerField(allow_null=True, min_value=1))
    def get_queue_position(self, job: Job) -> int | None:
        return queue_position(job)

    def get_cancellable(self, job: Job) -> bool:
        return can_cancel(job)

    @extend_schema_field(ParametersOutput)
    def get_parameters(self, job: Job) -> dict:
        return parameters_of(job)

    @extend_schema_field(VideoInfoOutput(allow_null=True))
    def get_video(self, job: Job) -> dict | None:
        # A webhook's links must outlive its retries: they last as long as the video.
        return video_of(job, self.context.get("request"), self.context.get("link_until"))

    @extend_schema_field(ErrorInfoOutput(allow_null=True))
    def get_error(self, job: Job) -> dict | None:
        return error_of(job)


class JobDetailOutput(JobOutput):
    timeline = EventOutput(source="events", many=True, read_only=True)

    class Meta(JobOutput.Meta):
        fields = [*JobOutput.Meta.fields, "timeline"]


class ProviderCapabilitiesOutput(serializers.Serializer):
    supports_cancel = serializers.BooleanField()
    supports_webhook = serializers.BooleanField(
        help_text="The provider tells this install when a job ends (once PUBLIC_BASE_URL is set), so its jobs "
        "finish as soon as the provider does rather than at the next poll."
    )
    needs_prompt = serializers.BooleanField()
    needs_image_url = serializers.BooleanField(
        help_text="The provider fetches the image by URL: a job needs PUBLIC_BASE_URL on this install, "
        "or to be made from an image_url."
    )
    accepts_tail_image = serializers.BooleanField(
        help_text="A job may give an end frame (tail_image or tail_image_url) where the video should finish."
    )
    accepts_masks = serializers.BooleanField(
        help_text="A job may give motion-brush masks: static_mask(_url) and dynamic_masks with trajectories."
    )


class ProviderOutput(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    available = serializers.BooleanField(help_text="Whether jobs can use this provider on this install.")
    unavailable_reason = serializers.CharField(
        allow_blank=True, help_text='Why the provider cannot be used here; "" when it can.'
    )
    models = serializers.ListField(child=serializers.CharField())
    default_model = serializers.CharField()
    sizes = serializers.ListField(child=serializers.CharField())
    parameters = serializers.DictField(
        child=ParameterOutput(),
        help_text="What the provider takes, by the name a create request gives it: seed, cfg_scale and "
        "motion_bucket_id for every provider, then its own (the local provider's duration and fps).",
    )
    cost = serializers.IntegerField(help_text="Credits charged per successful video of the default model.")
    model_costs = serializers.DictField(
        child=serializers.IntegerField(), help_text="Credits charged per successful video, by model."
    )
    min_poll_interval = serializers.FloatField(help_text="Seconds between polls of the provider.")
    capabilities = ProviderCapabilitiesOutput()


class BalanceOutput(serializers.Serializer):
    balance = serializers.IntegerField()


class LedgerEntryOutput(serializers.ModelSerializer):
    job = serializers.UUIDField(source="job_id", allow_null=True)

    class Meta:
        model = LedgerEntry
        fields = ["id", "at", "kind", "amount", "balance_after", "job", "reason"]


class ApiKeyInput(StrictInput):
    name = StrictCharField(required=False, allow_blank=True, max_length=100)


class ApiKeyOutput(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["prefix", "name", "created_at", "last_used_at", "revoked_at"]


class ApiKeyCreatedOutput(ApiKeyOutput):
    key = serializers.CharField(help_text="The full key. It is shown only in this response.")

    class Meta(ApiKeyOutput.Meta):
        fields = [*ApiKeyOutput.Meta.fields, "key"]


# --- webhooks ---------------------------------------------------------------------------

EVENT_TYPES = ["job.started", "job.completed", "job.failed", "job.cancelled"]


class WebhookEndpointInput(StrictInput):
    url = StrictCharField(max_length=2048, help_text="A public http(s) URL that answers 2xx to a POST.")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES),
        required=False,
        allow_empty=False,
        max_length=len(EVENT_TYPES),
        help_text="What to send here; default: job.completed, job.failed and job.cancelled.",
    )
    description = StrictCharField(required=False, allow_blank=True, max_length=255)


class WebhookEndpointUpdateInput(WebhookEndpointInput):
    url = StrictCharField(required=False, max_length=2048, help_text="A public http(s) URL.")
    enabled = serializers.BooleanField(
        required=False, help_text="true enables an endpoint that was disabled (after a 410 Gone, say)."
    )


class WebhookEndpointOutput(serializers.ModelSerializer):
    enabled = serializers.BooleanField(source="is_enabled", help_text="false: nothing is sent here.")
    previous_secret_expires_at = serializers.DateTimeField(
        source="previous_secret_until",
        allow_null=True,
        help_text="After a rotation: until then the previous secret signs beside the new one.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "events",
            "description",
            "enabled",
            "disabled_at",
            "disabled_reason",
            "previous_secret_expires_at",
            "created_at",
        ]


class WebhookEndpointCreatedOutput(WebhookEndpointOutput):
    secret = serializers.CharField(help_text="The signing secret (whsec_…). It is shown only in this response.")

    class Meta(WebhookEndpointOutput.Meta):
        fields = [*WebhookEndpointOutput.Meta.fields, "secret"]


class SecretOutput(serializers.Serializer):
    secret = serializers.CharField(help_text="The signing secret (whsec_…).")
    previous_secret_expires_at = serializers.DateTimeField(
        allow_null=True, help_text="Until then the previous secret signs beside this one."
    )


class AttemptOutput(serializers.ModelSerializer):
    class Meta:
        model = CallbackAttempt
        fields = ["at", "succeeded", "status_code", "response_body", "error", "duration_ms", "next_attempt_at"]


class DeliveryOutput(serializers.ModelSerializer):
    webhook_id = serializers.CharField(source="msg_id", help_text="The webhook-id header: the same on every attempt.")
    job = serializers.UUIDField(source="job_id")
    endpoint = serializers.UUIDField(source="endpoint_id", allow_null=True, help_text="null: the job's callback_url.")
    attempts = AttemptOutput(source="attempt_log", many=True, read_only=True)

    class Meta:
        model = CallbackDelivery
        fields = [
            "id",
            "webhook_id",
            "event_type",
            "job",
            "endpoint",
            "url",
            "status",
            "next_attempt_at",
            "created_at",
            "delivered_at",
            "last_error",
            "attempts",
        ]


def page_of(item: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    """The paginated envelope the list endpoints answer with."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "count": serializers.IntegerField(),
            "next": serializers.CharField(allow_null=True),
            "previous": serializers.CharField(allow_null=True),
            "results": item(many=True),
        },
    )


class ErrorBodyOutput(serializers.Serializer):
    status = serializers.IntegerField()
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)
    balance = serializers.IntegerField(required=False, help_text="With 402: the caller's credits.")
    cost = serializers.IntegerField(required=False, help_text="With 402: what the job would cost.")


class ErrorOutput(serializers.Serializer):
    error = ErrorBodyOutput()


JobPageOutput = page_of(JobOutput, "JobPageOutput")
LedgerPageOutput = page_of(LedgerEntryOutput, "LedgerPageOutput")
DeliveryPageOutput = page_of(DeliveryOutput, "DeliveryPageOutput")
