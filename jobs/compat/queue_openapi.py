"""The queue-style API (``jobs.compat.queue``) in the OpenAPI schema.

Its errors are ``{"detail": ...}`` and its status poll is a plain view, so the
four operations are written here as plain OpenAPI data and merged into the
generated schema by ``add_queue_endpoints``, a ``POSTPROCESSING_HOOKS`` entry.
The model ids are the ones this install can take when the schema is made.
``tests/test_compat_queue.py`` compares the examples with real answers.
"""

from __future__ import annotations

import copy

from jobs.compat.queue import (
    BAD_ID_MESSAGE,
    BAD_KEY_MESSAGE,
    NO_KEY_MESSAGE,
    NOT_FOUND_MESSAGE,
    WWW_AUTHENTICATE,
    available_model_ids,
)
from jobs.compat_openapi import _examples, _header

TAG = "Queue-style (Pipelet, fal)"
TAG_DESCRIPTION = (
    "The queue API of Pipelet (and fal.ai, whose pattern it copies): a client written for it works unchanged but "
    "for the host and the key, sent as `Authorization: Key <key>` (fal's clients) or `Authorization: Bearer <key>`. "
    "`POST /queue/{modelId}` starts a video and answers its `status_url`, `response_url` and `cancel_url`; poll "
    "the status (202 while `IN_QUEUE` with a 0-based `queue_position`, or `IN_PROGRESS`; 200 once `COMPLETED`, "
    "`FAILED` or `CANCELLED`), then GET the `response_url` for the MP4 as base64 in `video.data_uri`, or as a "
    "signed link when the create sent `x-pipelet-output: binary`. A `modelId` is a provider's name (`local`, "
    "`stability`, ...) or a model a provider declares (`wan22-fast-i2v`, `kling-video/v1/standard/image-to-video`). "
    'Errors are `{"detail": "..."}`. With `Authorization: Key`, a request that ended without a video is reported '
    "as fal reports it, `COMPLETED` with `error` and `error_type`, and a refused cancel is 400 rather than 409 "
    "(fal-client retries a 409 for about 50 s)."
)
SECURITY = [{"apiKey": []}, {"queueKey": []}]
KEY_SCHEME = {
    "type": "apiKey",
    "in": "header",
    "name": "Authorization",
    "description": "The same API key as fal's clients send it: `Authorization: Key i2v_…`",
}
REQUEST_ID = "0b7f1a52-3c5e-4d1a-9f6b-2a8c4e6d1f90"
BASE = "https://i2v.example.com/queue/local/requests/" + REQUEST_ID
URLS = {"request_id": REQUEST_ID, "response_url": BASE, "status_url": f"{BASE}/status", "cancel_url": f"{BASE}/cancel"}
LINK = f"https://i2v.example.com/api/v1/jobs/{REQUEST_ID}/video?token=MGI3ZjFhNTI:1uXcvS:iL0GoVfdAmKRo5DMJy"
TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: str, headers: dict | None = None, **examples: object) -> dict:
    response = {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema), "examples": _examples(**examples)}},
    }
    if headers:
        response["headers"] = headers
    return response


def _detail(description: str, headers: dict | None = None, **bodies: str | dict) -> dict:
    examples = {name: body if isinstance(body, dict) else {"detail": body} for name, body in bodies.items()}
    return _json(description, "QueueError", headers, **examples)


UNAUTHORIZED = _detail(
    "No key, or a wrong or revoked one.",
    {"WWW-Authenticate": _header(f"`{WWW_AUTHENTICATE}`")},
    No_key=NO_KEY_MESSAGE,
    Wrong_or_revoked_key=BAD_KEY_MESSAGE,
)
THROTTLED = _detail(
    "Too many requests for this key, or too many wrong keys from this address; see Retry-After.",
    {"Retry-After": _header("Seconds to wait before the next request.")},
    Throttled="Request was throttled. Expected available in 58 seconds.",
)
NOT_FOUND = _detail(
    "No such request for this key under this model id (another caller's request, or one made under another "
    "model, is not found either).",
    Not_found=NOT_FOUND_MESSAGE,
)
BAD_ID = _detail("The request id cannot be one of ours.", Not_a_request_id=BAD_ID_MESSAGE)
LOG_LINE = {"type": "object", "required": ["message", "level", "source", "timestamp"]}

SCHEMAS: dict[str, dict] = {
    "QueueSubmitRequest": {
        "type": "object",
        "description": "Besides these, the parameters the model's provider declares, by name (`duration`, `fps`, "
        "`height`...: see `GET /api/v1/providers`); any other field is refused with 422 naming it.",
        "properties": {
            "prompt": {"type": "string", "description": "What should happen in the video."},
            "data_uri": {
                "type": "string",
                "description": "The image (JPEG or PNG, at most 10 MB) as base64, bare or as "
                "`data:image/png;base64,…`. Send this or `image_url`.",
            },
            "image_url": {
                "type": "string",
                "description": "A public http(s) URL of the image, fetched by the server. Send this or `data_uri`.",
            },
            "negative_prompt": {"type": "string", "description": "What the video should avoid."},
            "second_image_uri": {
                "type": "string",
                "description": "Pipelet's field: the image the video should end on (JPEG or PNG), as base64 like "
                "`data_uri`, bare or as `data:image/jpeg;base64,…`. It is fitted to the photo's framing. Only for "
                "models whose provider takes an end frame (Pipelet's `wan22-fast-i2v*`, Kling's); for the others "
                "it is refused with 422 saying which do.",
                "example": TINY_PNG,
            },
            "tail_image_url": {
                "type": "string",
                "description": "The end frame as the native API takes it: a public http(s) URL (fetched by the "
                "server) or a `data:` URI. Send this or `second_image_uri`, not both.",
                "example": "https://example.com/beach-at-dusk.jpg",
            },
            "seed": {"type": "integer", "minimum": 0, "description": "The same seed makes the same video again."},
            "duration": {
                "type": "number",
                "description": "Seconds, for models that take it. Pipelet: at most 5 s at 720p, 7 s at 480p; Kling: "
                "5 or 10.",
                "example": 5,
            },
            "height": {
                "type": "integer",
                "enum": [720, 480],
                "description": "Pipelet's output height: 720, or 480 for clips up to 7 s.",
                "example": 720,
            },
            "priority": {
                "type": "integer",
                "minimum": 0,
                "maximum": 10,
                "description": "Pipelet's: a higher priority runs sooner at Pipelet; 0 (or leaving it out) keeps "
                "Pipelet's own order.",
                "example": 5,
            },
            "higher_quality_with_more_steps": {
                "type": "string",
                "enum": ["no", "yes"],
                "description": "Pipelet's: `yes` spends more steps on the video for higher quality; it takes longer.",
                "example": "no",
            },
        },
    },
    "QueueSubmitted": {
        "type": "object",
        "required": ["request_id", "response_url", "status_url", "cancel_url"],
        "properties": {
            "request_id": {"type": "string", "description": "Your handle for this request."},
            "response_url": {"type": "string", "format": "uri", "description": "GET it for the result."},
            "status_url": {"type": "string", "format": "uri", "description": "Poll it for progress."},
            "cancel_url": {"type": "string", "format": "uri", "description": "PUT to it to cancel."},
        },
    },
    "QueueStatus": {
        "type": "object",
        "required": ["status", "request_id", "response_url", "status_url", "cancel_url", "statusMessages"],
        "properties": {
            "status": {"type": "string", "enum": ["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED"]},
            "request_id": {"type": "string"},
            "response_url": {"type": "string", "format": "uri"},
            "status_url": {"type": "string", "format": "uri"},
            "cancel_url": {"type": "string", "format": "uri"},
            "queue_position": {
                "type": "integer",
                "minimum": 0,
                "description": "While `IN_QUEUE`: how many jobs are ahead (0 = next).",
            },
            "statusMessages": {
                "type": "object",
                "properties": {"message": {"type": "string"}, "detail_message": {"type": "string"}},
                "description": "`message` is PROCESSING, COMPLETED, EXPIRED, FAILED or CANCELLED; `detail_message` "
                "says how far the job is, or why it ended without a video.",
            },
            "logs": {
                "type": "array",
                "nullable": True,
                "items": {
                    **LOG_LINE,
                    "properties": {
                        "message": {"type": "string"},
                        "level": {"type": "string", "enum": ["INFO", "ERROR"]},
                        "source": {"type": "string"},
                        "timestamp": {"type": "string", "format": "date-time"},
                    },
                },
                "description": "On every `IN_PROGRESS` and `COMPLETED` answer: null, or with `?logs=true` the "
                "request's timeline.",
            },
            "metrics": {"type": "object", "properties": {"inference_time": {"type": "number"}}},
            "error": {"type": "string", "description": "`Key` callers: why a `COMPLETED` request has no video."},
            "error_type": {"type": "string", "enum": ["FAILED", "CANCELLED"]},
        },
    },
    "QueueResult": {
        "type": "object",
        "required": ["video"],
        "properties": {
            "video": {
                "type": "object",
                "required": ["url", "data_uri"],
                "properties": {
                    "url": {"type": "string", "format": "uri", "description": "A signed link, no key needed."},
                    "content_type": {"type": "string", "enum": ["video/mp4"]},
                    "file_name": {"type": "string"},
                    "file_size": {"type": "integer", "description": "Bytes of the MP4."},
                    "data_uri": {
                        "type": "string",
                        "description": "The H.264 MP4 as base64 (no `data:` prefix), or the signed link when the "
                        "create sent `x-pipelet-output: binary`.",
                    },
                    "data_url": {"type": "string", "description": "The signed link, with `x-pipelet-output`."},
                },
            },
            "seed": {"type": "integer", "description": "The seed the video was made with."},
        },
    },
    "QueueError": {
        "type": "object",
        "required": ["detail"],
        "properties": {
            "detail": {"type": "string", "description": "What went wrong, for a person to read."},
            "status": {"type": "string", "description": "The request's status, when that is why."},
            "balance": {"type": "integer", "description": "With 402: your balance."},
            "cost": {"type": "integer", "description": "With 402: what the video costs."},
        },
    },
}


def _model_parameter(model_ids: list[str]) -> dict:
    schema: dict = {"type": "string"}
    if model_ids:
        schema["enum"] = model_ids
    return {
        "in": "path",
        "name": "modelId",
        "required": True,
        "schema": schema,
        "description": "A provider's name or one of its models; slashes are kept as they are "
        f"(`kling-video/v1/standard/image-to-video`). Available here: {', '.join(model_ids) or 'none'}.",
        "example": model_ids[0] if model_ids else "local",
    }


REQUEST_PARAMETER = {
    "in": "path",
    "name": "requestId",
    "required": True,
    "schema": {
        "type": "string",
        "format": "uuid",
        "pattern": "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$",
    },
    "description": "The `request_id` the create answered.",
    "example": REQUEST_ID,
}


def _link(operation: str) -> dict:
    return {
        "operationId": operation,
        "parameters": {"modelId": "$request.path.modelId", "requestId": "$response.body#/request_id"},
    }


SUBMIT = {
    "operationId": "queue_submit",
    "tags": [TAG],
    "summary": "Start a video (Pipelet / fal queue)",
    "description": "Takes the image (`data_uri` or `image_url`), the prompt, the model's parameters (Pipelet's "
    "`duration`, `height`, `priority`, ...) and, for models that take one, an end frame (`second_image_uri`), "
    "holds the credits the video costs and queues it; the answer comes at once with the URLs to poll, fetch and cancel "
    "it. Send `Idempotency-Key` to make retries safe, `x-pipelet-output: binary` to get the result as a "
    "link instead of base64, and `fal_webhook` (fal's way) or `x-pipelet-webhook` (Pipelet's) to be told when "
    "it ends: a Standard Webhooks POST (`job.completed`, `job.failed`, `job.cancelled`, the job as "
    "`GET /api/v1/jobs/{id}` shows it) signed with your job-callback secret "
    "(`GET /api/v1/webhooks/job-callback-secret`).",
    "security": SECURITY,
    "parameters": [
        {
            "in": "header",
            "name": "x-pipelet-output",
            "required": False,
            "schema": {"type": "string", "enum": ["binary"]},
            "description": "`binary`: the result's `video.data_uri` and `video.data_url` hold a signed link to the "
            "MP4 instead of its base64.",
        },
        {
            "in": "header",
            "name": "x-pipelet-webhook",
            "required": False,
            "schema": {"type": "string", "format": "uri"},
            "description": "A public http(s) URL told when the request ends (Standard Webhooks, signed with your "
            "job-callback secret). Pipelet's header; `fal_webhook` is fal's name for the same.",
        },
        {
            "in": "query",
            "name": "fal_webhook",
            "required": False,
            "schema": {"type": "string", "format": "uri"},
            "description": "fal's name for `x-pipelet-webhook`: a public http(s) URL told when the request ends.",
        },
        {
            "in": "header",
            "name": "Idempotency-Key",
            "required": False,
            "schema": {"type": "string", "pattern": r"^[\x20-\x7e]{1,255}$"},
            "description": "Any 1–255 printable characters, unique per create you mean; a retry with it gets the "
            "first answer and starts nothing new.",
        },
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": _ref("QueueSubmitRequest"),
                "examples": _examples(
                    Pipelet_style={"prompt": "A cat wearing a superman cape", "data_uri": TINY_PNG, "duration": 5},
                    Pipelet_with_an_end_frame={
                        "prompt": "The sun sets over the bay",
                        "data_uri": TINY_PNG,
                        "second_image_uri": TINY_PNG,
                        "duration": 7,
                        "height": 480,
                        "priority": 5,
                    },
                    From_a_URL={"prompt": "Waves rolling in", "image_url": "https://example.com/beach.jpg"},
                ),
            }
        },
    },
    "responses": {
        "200": {
            **_json("Queued.", "QueueSubmitted", Queued=URLS),
            "links": {
                "PollTheStatus": _link("queue_status"),
                "FetchTheResult": _link("queue_result"),
                "CancelIt": _link("queue_cancel"),
            },
        },
        "400": _detail(
            "The body is not JSON.",
            Not_JSON="The body is not valid JSON: JSON parse error - Expecting value: line 1 column 1 (char 0)",
        ),
        "401": UNAUTHORIZED,
        "402": _detail(
            "The key's owner has too few credits for this video.",
            Not_enough_credits={
                "detail": "Not enough credits: this costs 20 credits and your balance is 5. Ask for more credits "
                "or choose a cheaper provider.",
                "balance": 5,
                "cost": 20,
            },
        ),
        "404": _detail(
            "No such model id here.",
            Unknown_model="Unknown model id 'wan22-fast-t2v'. Model ids available here: local, camera-motion.",
        ),
        "409": _detail(
            "A request with this Idempotency-Key is still being handled; retry shortly.",
            In_progress="A request with this Idempotency-Key is still being handled; retry shortly.",
        ),
        "413": _detail(
            "The image is over the size cap.", Too_large="The image is too large; images must be 10 MB or smaller."
        ),
        "415": _detail("The body is not JSON.", Not_JSON='Unsupported media type "text/plain" in request.'),
        "422": _detail(
            "A field is unknown or cannot be used; the message names it.",
            Unknown_field="Unknown field 'width': the model local takes prompt, negative_prompt, data_uri, "
            "image_url, seed, cfg_scale, motion_bucket_id, duration, fps.",
            No_image="Send the image as exactly one of data_uri (base64, bare or data:image/...;base64,) or image_url.",
            Bad_base64="data_uri is not valid base64.",
            Not_an_image="This file is not a JPEG or PNG image (it looks like a PDF document). Upload a JPEG or PNG.",
            Out_of_range="duration must be from 1 to 10 s; got 30.",
            Pipelet_rule="At 720p Pipelet makes at most 5 s; choose 5 s or less, or 480p for up to 7 s.",
            No_end_frame_here="Local (embedded, offline) does not take an end frame (second_image_uri); "
            "providers that do: pipelet, kling.",
            Callback_not_public="x-pipelet-webhook points to a private or local address (10.0.0.5); only public "
            "addresses can be fetched.",
        ),
        "429": THROTTLED,
        "503": _detail(
            "The model is known but its provider is not configured on this server.",
            Not_configured="The model 'wan22-fast-i2v' is not available on this server: PIPELET_API_KEY is not "
            "set. Model ids available here: local, camera-motion.",
        ),
    },
}

IN_PROGRESS = {
    "status": "IN_PROGRESS",
    **URLS,
    "logs": None,
    "statusMessages": {"message": "PROCESSING", "detail_message": "Progress: 45% done (Rendering 120 frames: 45%)"},
}
STATUS = {
    "operationId": "queue_status",
    "tags": [TAG],
    "summary": "Poll a request",
    "description": "202 while the request waits (`IN_QUEUE`, with `queue_position`, 0 being next: for Pipelet's "
    "model ids, Pipelet's own number once Pipelet has the request) or is being made (`IN_PROGRESS`, with its "
    "progress in `statusMessages.detail_message`: Pipelet's own `Progress: 4/24 Tasks done` for its model ids); "
    "200 once it has ended. "
    "`?logs=true` adds the request's timeline as `logs`. Not counted against the request budget: poll as often "
    "as your client does.",
    "security": SECURITY,
    "parameters": [
        REQUEST_PARAMETER,
        {
            "in": "query",
            "name": "logs",
            "required": False,
            "schema": {"type": "string", "enum": ["true", "false", "1", "0"]},
            "description": "`true` or `1`: include the timeline in `logs`.",
        },
    ],
    "responses": {
        "200": _json(
            "The request has ended.",
            "QueueStatus",
            Completed={
                "status": "COMPLETED",
                **URLS,
                "logs": None,
                "statusMessages": {"message": "COMPLETED", "detail_message": "The video is ready at response_url."},
                "metrics": {"inference_time": 7.412},
            },
            Failed={
                "status": "FAILED",
                **URLS,
                "logs": None,
                "statusMessages": {"message": "FAILED", "detail_message": "The provider could not make this video."},
            },
            Cancelled={
                "status": "CANCELLED",
                **URLS,
                "logs": None,
                "statusMessages": {"message": "CANCELLED", "detail_message": "This request was cancelled."},
            },
            Failed_as_fal_clients_see_it={
                "status": "COMPLETED",
                **URLS,
                "logs": None,
                "statusMessages": {"message": "FAILED", "detail_message": "The provider could not make this video."},
                "error": "The provider could not make this video.",
                "error_type": "FAILED",
            },
        ),
        "202": _json(
            "Still waiting or being made.",
            "QueueStatus",
            In_queue={"status": "IN_QUEUE", **URLS, "queue_position": 1, "statusMessages": {}},
            In_progress=IN_PROGRESS,
            In_progress_at_Pipelet={
                **IN_PROGRESS,
                "statusMessages": {"message": "PROCESSING", "detail_message": "Progress: 4/24 Tasks done"},
            },
            In_progress_with_logs={
                **IN_PROGRESS,
                "logs": [
                    {
                        "message": "Job created; 1 credit(s) held",
                        "level": "INFO",
                        "source": "USER",
                        "timestamp": "2026-12-02T14:03:07.123456Z",
                    }
                ],
            },
        ),
        "400": BAD_ID,
        "401": UNAUTHORIZED,
        "404": NOT_FOUND,
        "405": _detail("Only GET.", Not_GET='Method "POST" not allowed.'),
        "429": _detail(
            "Too many wrong API keys were sent from this address; see Retry-After.",
            {"Retry-After": _header("Seconds to wait before the next request.")},
            Too_many_wrong_keys="Too many wrong API keys were sent from your address. Try again in 42 s.",
        ),
    },
}

CANCEL = {
    "operationId": "queue_cancel",
    "tags": [TAG],
    "summary": "Cancel a request",
    "description": "204 while the request has not reached a provider (or its provider can stop it); the credits "
    "held for it come back. Once a provider that cannot stop it has it: 409 (400 for `Authorization: Key` "
    "callers), with the request's status. Cancelling a cancelled request is 204 again.",
    "security": SECURITY,
    "parameters": [REQUEST_PARAMETER],
    "responses": {
        "204": {"description": "Cancelled; nothing is charged."},
        "400": _detail(
            "`Authorization: Key` callers: too late to cancel. Anyone: the request id cannot be one of ours.",
            Too_late={"detail": "This job is already completed; there is nothing to cancel.", "status": "COMPLETED"},
            Not_a_request_id=BAD_ID_MESSAGE,
        ),
        "401": UNAUTHORIZED,
        "404": NOT_FOUND,
        "409": _detail(
            "Too late to cancel: it has ended, or a provider that cannot stop it has it.",
            Already_started={
                "detail": "This job is already with Stability AI — Stable Video Diffusion, which cannot stop it; it "
                "will finish on its own.",
                "status": "IN_PROGRESS",
            },
            Already_completed={
                "detail": "This job is already completed; there is nothing to cancel.",
                "status": "COMPLETED",
            },
        ),
        "429": THROTTLED,
    },
}

RESULT = {
    "operationId": "queue_result",
    "tags": [TAG],
    "summary": "Fetch the video",
    "description": "Once the status is `COMPLETED`: the MP4 as base64 in `video.data_uri` (streamed; decode it to "
    "get the file), a signed link to it in `video.url`, or the link in `data_uri` too when the create sent "
    "`x-pipelet-output: binary`. Before that: 400 saying the status.",
    "security": SECURITY,
    "parameters": [REQUEST_PARAMETER],
    "responses": {
        "200": _json(
            "The video.",
            "QueueResult",
            Base64={
                "video": {
                    "url": LINK,
                    "content_type": "video/mp4",
                    "file_name": f"{REQUEST_ID}.mp4",
                    "file_size": 123783,
                    "data_uri": "AAAAIGZ0eXBpc29tAAACAGlzb21pc28yYXZjMW1wNDEAAAAIZnJlZQ...",
                },
                "seed": 12345,
            },
            A_link_with_x_pipelet_output_binary={
                "video": {
                    "url": LINK,
                    "content_type": "video/mp4",
                    "file_name": f"{REQUEST_ID}.mp4",
                    "file_size": 123783,
                    "data_uri": LINK,
                    "data_url": LINK,
                },
                "seed": 12345,
            },
        ),
        "400": _detail(
            "Not finished yet; poll the status. Or the request id cannot be one of ours.",
            Still_in_progress={
                "detail": "Request is still IN_PROGRESS: poll its status_url until it is COMPLETED.",
                "status": "IN_PROGRESS",
            },
            Not_a_request_id=BAD_ID_MESSAGE,
        ),
        "401": UNAUTHORIZED,
        "404": NOT_FOUND,
        "410": _detail(
            "The video was deleted after the retention period.",
            Deleted={"detail": "The video was deleted: results are kept for 24 hours.", "status": "COMPLETED"},
        ),
        "422": _detail(
            "The request ended without a video; nothing was charged.",
            Failed={"detail": "The provider could not make this video.", "status": "FAILED"},
            Cancelled={"detail": "This request was cancelled.", "status": "CANCELLED"},
        ),
        "429": THROTTLED,
    },
}


def add_queue_endpoints(result: dict, generator: object = None, request: object = None, public: bool = True) -> dict:
    """drf-spectacular postprocessing hook: the queue paths, schemas, key scheme and tag."""
    models = _model_parameter(available_model_ids())
    operations = copy.deepcopy({"submit": SUBMIT, "status": STATUS, "cancel": CANCEL, "result": RESULT})
    for operation in operations.values():
        operation["parameters"] = [models, *operation["parameters"]]
    request_path = "/queue/{modelId}/requests/{requestId}"
    result.setdefault("paths", {}).update(
        {
            "/queue/{modelId}": {"post": operations["submit"]},
            f"{request_path}/status": {"get": operations["status"]},
            f"{request_path}/cancel": {"put": operations["cancel"]},
            request_path: {"get": operations["result"]},
        }
    )
    components = result.setdefault("components", {})
    schemas = {**components.get("schemas", {}), **copy.deepcopy(SCHEMAS)}
    components["schemas"] = dict(sorted(schemas.items()))
    components["securitySchemes"] = {**components.get("securitySchemes", {}), "queueKey": dict(KEY_SCHEME)}
    result["tags"] = [*result.get("tags", []), {"name": TAG, "description": TAG_DESCRIPTION}]
    return result
