"""Hand-written examples for the native API's OpenAPI schema, one list per operation.

The values are bodies the API really answers (copied from real calls, with the ids and
times made up), so Swagger UI and ReDoc show a caller what to expect. The tests in
``tests/test_api_docs.py`` validate every example against its schema and compare the job
detail with a real answer, so an example cannot quietly drift from the code.
"""

from __future__ import annotations

import json

from drf_spectacular.utils import OpenApiExample

from jobs.api import serializers
from jobs.api.errors import error_body
from providers.kling import KlingProvider
from providers.local import LocalProvider

ORIGIN = "https://i2v.example.com"
JOB_ID = "3f6c2a8e-9b1d-4e57-a0c4-7d2e5b9f1a36"
FAILED_JOB_ID = "c0a4e9d2-7f31-4b8e-9a65-1d3f7e2b8c40"
RETRIED_JOB_ID = "b81e4d07-2c6a-4f93-8e15-6a0d9c3b7f42"

# --- builders ----------------------------------------------------------------------------


def request(name: str, value: dict, media_type: str = "application/json", description: str = "") -> OpenApiExample:
    return OpenApiExample(name, value=value, request_only=True, media_type=media_type, description=description)


# A file cannot be written into an example's value: a multipart example shows the text
# fields and says where the file goes, rather than pretend a sentence is an image.
FILE_PART = "Plus the image itself as the file part `image` (a JPEG or PNG of at most 10 MB)."


def response(name: str, value: object, status: int = 200) -> OpenApiExample:
    # A list endpoint's example is one item: drf-spectacular wraps it in the list itself.
    return OpenApiExample(name, value=value, response_only=True, status_codes=[status])


def error(name: str, status: int, code: str, message: str, fields: dict | None = None, **extra) -> OpenApiExample:
    # Built by the error handler's own function, so the envelope cannot differ from a real one.
    return response(name, error_body(status, code, message, fields, **extra), status)


def invalid(name: str, field: str, problem: str) -> OpenApiExample:
    """A serializer's refusal: the handler prefixes the message with the field's name."""
    return error(name, 400, "invalid", f"{field}: {problem}", {field: [problem]})


def unknown(name: str, serializer: type[serializers.StrictInput], body: dict) -> OpenApiExample:
    """A field the operation does not take, refused by the serializer's own check."""
    fields = serializers.unknown_fields(serializer(), body)
    first = next(iter(fields))
    return error(name, 400, "invalid", f"{first}: {fields[first][0]}", fields)


def rejected(name: str, field: str, code: str, message: str, status: int = 400) -> OpenApiExample:
    """A refusal from the image and parameter checks, which carry their own code."""
    return error(name, status, code, message, {field: [message]})


def result_link(job_id: str, kind: str, signature: str) -> str:
    # As signed_result_url makes it: the token is "<job id>:<kind>:<timestamp>:<signature>".
    return f"{ORIGIN}/api/v1/jobs/{job_id}/{kind}?token={job_id}:{kind}:1wKq3d:{signature}"


def timeline(*steps: tuple[str, str, str, str]) -> list[dict]:
    return [dict(zip(("at", "from_status", "to_status", "message"), step, strict=True)) for step in steps]


# --- errors every operation may answer ---------------------------------------------------
# views.ERRORS documents 400 and 404 on every operation, even on those without input or an
# id, which cannot really answer them; these show the generic refusals there.

NO_KEY = error("No key", 401, "not_authenticated", "Authentication credentials were not provided.")
BAD_KEY = error("Wrong or revoked key", 401, "authentication_failed", "The API key is missing, wrong or revoked.")
THROTTLED = error("Throttled", 429, "throttled", "Request was throttled. Expected available in 23 seconds.")
NOT_FOUND = error("Not found", 404, "not_found", "Not found.")
MALFORMED = error(
    "Malformed JSON",
    400,
    "parse_error",
    "JSON parse error - Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
)
SHARED = (NO_KEY, BAD_KEY, THROTTLED, NOT_FOUND, MALFORMED)


def operation(*examples: OpenApiExample) -> list[OpenApiExample]:
    """An operation's own examples, plus the shared errors for each status it has none of its own for.
    Examples for a status the operation does not document are left out of the schema."""
    own = {code for example in examples for code in example.status_codes or ()}
    return [*examples, *(example for example in SHARED if example.status_codes[0] not in own)]


# --- jobs ------------------------------------------------------------------------------------

QUEUED_JOB = {
    "id": JOB_ID,
    "status": "queued",
    "progress": 0.0,
    "queue_position": None,
    "status_message": "Waiting for a worker",
    "cancellable": True,
    "provider": "local",
    "model": "camera-motion",
    "parameters": {
        "seed": 7,
        "cfg_scale": 1.8,
        "motion_bucket_id": 180,
        "prompt": "",
        "prompt_source": "",
        "negative_prompt": "",
        "width": 1024,
        "height": 576,
        "duration": 5.0,
        "fps": 24,
    },
    "seed_used": None,
    "cost": 1,
    "finish_reason": "",
    "video": None,
    "error": None,
    "request_id": "order-1042",
    "created_at": "2026-03-14T09:26:53.589793Z",
    "submitted_at": None,
    "finished_at": None,
    "expires_at": None,
}
COMPLETED_JOB = {
    **QUEUED_JOB,
    "status": "completed",
    "progress": 1.0,
    "status_message": "Video ready",
    "cancellable": False,
    "seed_used": 7,
    "finish_reason": "SUCCESS",
    "video": {
        "url": result_link(JOB_ID, "video", "AdvaSYSx-FWHBN_6X-mchgtPFd0QTSEuqnBoc_omr0w"),
        "poster_url": result_link(JOB_ID, "poster", "OW23zUgxuoWIrZA1ElKnXsR9ao-upYCV3o5huAo0X-8"),
        "frames": 25,
        "duration": 2.083,
        "bytes": 120131,
    },
    "submitted_at": "2026-03-14T09:26:53.871402Z",
    "finished_at": "2026-03-14T09:26:55.310566Z",
    "expires_at": "2026-03-15T09:26:55.310566Z",
}
CANCELLED_JOB = {**QUEUED_JOB, "status": "cancelled", "status_message": "Cancelled", "cancellable": False}
TIMED_OUT = (
    "The provider did not finish within 7 minutes, so we stopped waiting. "
    "It has not been charged; please try again, perhaps with another provider."
)
FAILED_JOB = {
    **QUEUED_JOB,
    "id": FAILED_JOB_ID,
    "status": "failed",
    "status_message": TIMED_OUT,
    "cancellable": False,
    "provider": "stability",
    "model": "stable-video-diffusion",
    "parameters": {**QUEUED_JOB["parameters"], "seed": 0, "cfg_scale": 2.5, "motion_bucket_id": 160},
    "cost": 20,
    "error": {"code": "timed_out", "message": TIMED_OUT},
    "request_id": "order-1043",
    "created_at": "2026-03-14T10:02:11.204518Z",
    "submitted_at": "2026-03-14T10:02:11.993047Z",
    "finished_at": "2026-03-14T10:09:14.118230Z",
}
# A retry is a new job with the old one's image, provider and parameters.
RETRIED_JOB = {
    **QUEUED_JOB,
    **{key: FAILED_JOB[key] for key in ("provider", "model", "parameters", "cost", "request_id")},
    "id": RETRIED_JOB_ID,
    "created_at": "2026-03-14T10:15:40.662871Z",
}

NO_CREDITS = error(
    "Not enough credits",
    402,
    "insufficient_credits",
    "Not enough credits: this costs 20 credits and your balance is 5. "
    "Ask for more credits or choose a cheaper provider.",
    balance=5,
    cost=20,
)
PAST_THE_LAST_PAGE = error("Past the last page", 404, "not_found", "Invalid page.")

JOBS_LIST = operation(
    response(
        "A page of jobs",
        {
            "count": 2,
            "next": None,
            "previous": None,
            "results": [FAILED_JOB, COMPLETED_JOB],
        },
    ),
    invalid("Unknown status", "status", '"done" is not a valid choice.'),
    PAST_THE_LAST_PAGE,
)

JOBS_CREATE = operation(
    request(
        "Upload a file",
        {"provider": "local", "seed": 7, "motion_bucket_id": 180, "request_id": "order-1042"},
        media_type="multipart/form-data",
        description=FILE_PART,
    ),
    request(
        "From a URL",
        {
            "image_url": "https://example.com/photos/harbour.jpg",
            "provider": "stability",
            "cfg_scale": 2.5,
            "motion_bucket_id": 160,
            "request_id": "order-1043",
        },
    ),
    request(
        "From base64",
        {
            "data_uri": "data:image/png;base64,"
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==",
            "provider": "local",
            "framing": "square",
        },
    ),
    request(
        "Kling with an end frame and masks (multipart)",
        {
            "provider": "kling",
            "prompt": "The boat sails out of the harbour at dusk",
            "duration": 10,
            "dynamic_masks": json.dumps(
                [{"mask": "dynamic_mask_1", "trajectories": [{"x": 200, "y": 300}, {"x": 600, "y": 320}]}]
            ),
        },
        media_type="multipart/form-data",
        description=FILE_PART + " The end frame as the file part `tail_image`, the static mask as `static_mask` and "
        "the boat's mask as `dynamic_mask_1`, each a JPEG or PNG (fitted to the photo's framing).",
    ),
    request(
        "Kling with an end frame and masks (JSON)",
        {
            "image_url": "https://example.com/photos/harbour.jpg",
            "provider": "kling",
            "model": "kling-video/v2.1/standard/image-to-video",
            "prompt": "The boat sails out of the harbour at dusk",
            "negative_prompt": "blur, distortion",
            "duration": 5,
            "kling_cfg_scale": 0.6,
            "tail_image_url": "https://example.com/photos/harbour-night.jpg",
            "static_mask_url": "https://example.com/masks/quay.png",
            "dynamic_masks": [
                {
                    "mask_url": "https://example.com/masks/boat.png",
                    "trajectories": [{"x": 200, "y": 300}, {"x": 400, "y": 310}, {"x": 600, "y": 320}],
                }
            ],
        },
    ),
    response("Queued", QUEUED_JOB, 201),
    invalid("No image", "image", "Send exactly one of image (file), image_url or data_uri."),
    rejected(
        "End frame for a provider without one",
        "tail_image_url",
        "not_supported",
        "Local (embedded, offline) does not take an end frame (tail_image_url); providers that do: kling.",
    ),
    rejected(
        "Trajectory point outside the frame",
        "dynamic_masks",
        "point_outside",
        "dynamic_masks[0].trajectories[1] is (1100, 320), outside the 1024x576 frame: x must be from 0 to 1023 "
        "and y from 0 to 575.",
    ),
    rejected(
        "Too many dynamic masks",
        "dynamic_masks",
        "too_many",
        "Kling (AI/ML API) takes at most 6 dynamic masks; 7 were given.",
    ),
    unknown("Misspelt fields", serializers.JobCreateJsonInput, {"motoin_bucket_id": 200, "cfg": 5}),
    invalid("Unknown provider", "provider", "Unknown provider runway; choose one of local, stability."),
    rejected(
        "Not an image",
        "image",
        "not_an_image",
        "This file is not a JPEG or PNG image (it looks like text). Upload a JPEG or PNG.",
    ),
    error("Bad idempotency key", 400, "bad_idempotency_key", "Idempotency-Key must be 1 to 255 printable characters."),
    NO_CREDITS,
    error(
        "Same key still in progress",
        409,
        "idempotency_in_progress",
        "A request with this Idempotency-Key is still being handled; retry shortly.",
    ),
    rejected("Image too large", "image", "too_large", "The file is 12.4 MB; images must be 10 MB or smaller.", 413),
    error("Body too large", 413, "too_large", "The request body is too large."),
    error(
        "Key reused with another body",
        422,
        "idempotency_key_reused",
        "This Idempotency-Key was already used with a different request body; use a new key.",
    ),
)

JOBS_RETRIEVE = operation(
    response(
        "Completed",
        {
            **COMPLETED_JOB,
            "timeline": timeline(
                (QUEUED_JOB["created_at"], "", "queued", "Job created; 1 credit(s) held"),
                ("2026-03-14T09:26:53.866120Z", "queued", "preparing", "Preparing"),
                (COMPLETED_JOB["submitted_at"], "preparing", "submitted", "Submitted to Local (embedded, offline)"),
                ("2026-03-14T09:26:53.902885Z", "submitted", "running", "Rendering started"),
                ("2026-03-14T09:26:55.283714Z", "running", "finalizing", "The provider finished; saving the video"),
                (COMPLETED_JOB["finished_at"], "finalizing", "completed", "Video ready (25 frames, 2.08 s)"),
            ),
        },
    ),
    response(
        "Failed",
        {
            **FAILED_JOB,
            "timeline": timeline(
                (FAILED_JOB["created_at"], "", "queued", "Job created; 20 credit(s) held"),
                ("2026-03-14T10:02:11.240310Z", "queued", "preparing", "Preparing"),
                (
                    FAILED_JOB["submitted_at"],
                    "preparing",
                    "submitted",
                    "Submitted to Stability AI — Stable Video Diffusion",
                ),
                (FAILED_JOB["finished_at"], "submitted", "failed", TIMED_OUT),
            ),
        },
    ),
)

JOBS_CANCEL = operation(
    response("Cancelled", CANCELLED_JOB),
    error("Already finished", 409, "conflict", "This job is already completed; there is nothing to cancel."),
    error(
        "The provider cannot stop it",
        409,
        "conflict",
        "This job is already with Stability AI — Stable Video Diffusion, which cannot stop it; "
        "it will finish on its own.",
    ),
)

JOBS_RETRY = operation(
    response("Queued again as a new job", RETRIED_JOB, 201),
    NO_CREDITS,
    error("Not failed or cancelled", 409, "conflict", "Only a failed or cancelled job can be retried."),
)

# The file itself has no literal example: its answers' descriptions say what comes back.
JOBS_FILE = [error("Expired or tampered link", 404, "not_found", "Not found."), THROTTLED]

# --- providers, credits and keys -------------------------------------------------------------

PROVIDERS_LIST = operation(
    response(
        "The local renderer",
        {
            "name": "local",
            "label": "Local (embedded, offline)",
            "available": True,
            "unavailable_reason": "",
            "models": ["camera-motion"],
            "default_model": "camera-motion",
            "sizes": ["1024x576", "576x1024", "768x768"],
            "parameters": {param.name: param.describe() for param in LocalProvider.parameters},
            "cost": 1,
            "model_costs": {"camera-motion": 1},
            "min_poll_interval": 0.0,
            "capabilities": {
                "supports_cancel": False,
                "supports_webhook": False,
                "needs_prompt": False,
                "needs_image_url": False,
                "accepts_tail_image": False,
                "accepts_masks": False,
            },
        },
    ),
    response(
        "Kling through AI/ML API",
        {
            "name": "kling",
            "label": "Kling (AI/ML API)",
            "available": True,
            "unavailable_reason": "",
            "models": list(KlingProvider.models),
            "default_model": KlingProvider.models[0],
            "sizes": ["1024x576", "576x1024", "768x768"],
            "parameters": {param.name: param.describe() for param in KlingProvider.parameters},
            "cost": 10,
            "model_costs": {model: 10 for model in KlingProvider.models},
            "min_poll_interval": 10.0,
            "capabilities": {
                "supports_cancel": False,
                "supports_webhook": False,
                "needs_prompt": True,
                "needs_image_url": False,
                "accepts_tail_image": True,
                "accepts_masks": True,
            },
        },
    ),
)

CREDITS_BALANCE = operation(response("Balance", {"balance": 99}))

CREDITS_LEDGER = operation(
    response(
        "A page of entries",
        {
            "count": 3,
            "next": None,
            "previous": None,
            "results": [
                {
                    "id": 3,
                    "at": COMPLETED_JOB["finished_at"],
                    "kind": "capture",
                    "amount": 0,
                    "balance_after": 99,
                    "job": JOB_ID,
                    "reason": "Charged 1 for a completed video",
                },
                {
                    "id": 2,
                    "at": QUEUED_JOB["created_at"],
                    "kind": "hold",
                    "amount": -1,
                    "balance_after": 99,
                    "job": JOB_ID,
                    "reason": "local job",
                },
                {
                    "id": 1,
                    "at": "2026-03-14T09:20:02.118395Z",
                    "kind": "grant",
                    "amount": 100,
                    "balance_after": 100,
                    "job": None,
                    "reason": "Starting credits",
                },
            ],
        },
    ),
    invalid("Page size too large", "page_size", "Ensure this value is less than or equal to 100."),
    PAST_THE_LAST_PAGE,
)

API_KEY = {
    "prefix": "331ff0b0",
    "name": "CI server",
    "created_at": "2026-03-14T09:18:40.027614Z",
    "last_used_at": "2026-03-14T10:15:40.641209Z",
    "revoked_at": None,
}

KEYS_LIST = operation(response("One key", API_KEY))

KEYS_CREATE = operation(
    request("Named key", {"name": "CI server"}),
    response(
        "Created",
        {**API_KEY, "last_used_at": None, "key": "i2v_331ff0b0_0gM7RSDgCNHoK9dlnzSNJKH3KGyw_3hZSxl30uwhExc"},
        201,
    ),
    invalid("Name too long", "name", "Ensure this field has no more than 100 characters."),
    unknown("Unknown field", serializers.ApiKeyInput, {"label": "CI server"}),
)

KEYS_REVOKE = operation(error("No such key", 404, "not_found", "Not found."))

# --- webhooks -------------------------------------------------------------------------------

ENDPOINT_ID = "5b0f3c1e-8d2a-4c7b-9e46-2f1a7d3c9b58"
ENDPOINT = {
    "id": ENDPOINT_ID,
    "url": "https://hooks.example.com/i2v",
    "events": ["job.completed", "job.failed", "job.cancelled"],
    "description": "Order service",
    "enabled": True,
    "disabled_at": None,
    "disabled_reason": "",
    "previous_secret_expires_at": None,
    "created_at": "2026-03-14T09:20:11.402113Z",
}
GONE_ENDPOINT = {
    **ENDPOINT,
    "enabled": False,
    "disabled_at": "2026-03-15T02:11:40.118000Z",
    "disabled_reason": "Disabled on 2026-03-15 02:11 UTC: it answered 410 Gone. "
    "Enable it again once it takes deliveries; the ones waiting will then be sent.",
}
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw2Vr3tp6fq0w="
NEW_SECRET = "whsec_Zk3tq7wq1mB0y9XvN2cJ8aLr5pE4sTu6dHf0gKiMnOo="
UNREACHABLE_URL = "url points to 127.0.0.1, a private or local address; use a public http(s) URL."
DELIVERY = {
    "id": 812,
    "webhook_id": "msg_2Lq7dV9pW0cXy4bZk8Jm1sTa",
    "event_type": "job.completed",
    "job": JOB_ID,
    "endpoint": ENDPOINT_ID,
    "url": "https://hooks.example.com/i2v",
    "status": "delivered",
    "next_attempt_at": None,
    "created_at": "2026-03-14T09:26:55.312004Z",
    "delivered_at": "2026-03-14T09:27:00.655120Z",
    "last_error": "",
    "attempts": [
        {
            "at": "2026-03-14T09:26:55.401223Z",
            "succeeded": False,
            "status_code": 503,
            "response_body": '{"error": "deploying"}',
            "error": "The receiver answered 503.",
            "duration_ms": 41,
            "next_attempt_at": "2026-03-14T09:27:00.610000Z",
        },
        {
            "at": "2026-03-14T09:27:00.612877Z",
            "succeeded": True,
            "status_code": 200,
            "response_body": '{"ok": true}',
            "error": "",
            "duration_ms": 38,
            "next_attempt_at": None,
        },
    ],
}


def page(*items: dict) -> dict:
    return {"count": len(items), "next": None, "previous": None, "results": list(items)}


WEBHOOKS_LIST = operation(response("One endpoint", ENDPOINT))
WEBHOOKS_CREATE = operation(
    request(
        "Endpoint",
        {"url": "https://hooks.example.com/i2v", "events": ["job.completed", "job.failed"], "description": "Orders"},
    ),
    response("Created, with its secret", {**ENDPOINT, "secret": SECRET}, 201),
    error("A private address", 400, "invalid", UNREACHABLE_URL, {"url": [UNREACHABLE_URL]}),
    invalid("Unknown event", "events", '"job.done" is not a valid choice.'),
    unknown("Unknown field", serializers.WebhookEndpointInput, {"url": "https://hooks.example.com/i2v", "hmac": 1}),
)
WEBHOOKS_RETRIEVE = operation(response("Enabled", ENDPOINT), response("Disabled after a 410", GONE_ENDPOINT))
WEBHOOKS_UPDATE = operation(
    request("Enable again", {"enabled": True}),
    request("Change the events", {"events": ["job.started", "job.completed"]}),
    response("Updated", ENDPOINT),
    invalid("Not a boolean", "enabled", "Must be a valid boolean."),
)
WEBHOOKS_DELETE = operation()
WEBHOOKS_ROTATE = operation(
    response("The new secret", {"secret": NEW_SECRET, "previous_secret_expires_at": "2026-03-16T10:00:00.000000Z"})
)
WEBHOOKS_DELIVERIES = operation(
    response("A delivery that succeeded on its second attempt", page(DELIVERY)),
    invalid("Page size too large", "page_size", "Ensure this value is less than or equal to 100."),
)
WEBHOOKS_REDELIVER = operation(
    response(
        "Queued again",
        {**DELIVERY, "id": 813, "status": "pending", "delivered_at": None, "attempts": []},
        202,
    ),
    error(
        "Disabled endpoint",
        409,
        "conflict",
        "This endpoint is disabled; enable it (PATCH enabled: true) to send to it again.",
    ),
)
JOB_CALLBACK_SECRET = operation(response("The secret", {"secret": SECRET, "previous_secret_expires_at": None}))
JOB_CALLBACK_SECRET_ROTATE = operation(
    response("The new secret", {"secret": NEW_SECRET, "previous_secret_expires_at": "2026-03-16T10:00:00.000000Z"})
)
JOBS_DELIVERIES = operation(
    response("A job's deliveries", page({**DELIVERY, "endpoint": None, "url": "https://orders.example.com/done"})),
    invalid("Page size too large", "page_size", "Ensure this value is less than or equal to 100."),
)
