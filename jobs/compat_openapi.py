"""The Stability-compatible endpoints (``jobs.compat_stability``) in the OpenAPI schema.

Two of the three are plain Django views, which drf-spectacular cannot see, and the
third answers in the spec's ``{"error": "..."}`` shape rather than the native one, so
all three are written here as plain OpenAPI data and merged into the generated
schema by ``add_compat_endpoints``, a ``POSTPROCESSING_HOOKS`` entry. The messages in
the examples are the view's own constants where it has them, so they cannot drift;
``tests/test_api_docs.py`` validates every example and compares them with real answers.
"""

from __future__ import annotations

import copy
import re

from jobs.compat_stability import (
    BAD_KEY_MESSAGE,
    IN_PROGRESS_MESSAGE,
    NO_KEY_MESSAGE,
    NOT_FOUND_MESSAGE,
    PARAMETERS,
    STARTED_MESSAGE,
    unknown_fields_message,
)

TAG = "Stability-compatible"
TAG_DESCRIPTION = (
    "The original Stability image-to-video wrapper's API, reproduced exactly: a client written for it works "
    "unchanged but for the host and an `Authorization: Bearer <API key>` header (the native API's keys). "
    "Start a generation with `POST /api/img2video`, poll `GET /api/img2video/result/{id}` until it is not 202, "
    'then fetch the `video_url` it gives with a plain GET. Errors are `{"error": "..."}`, not the native shape.'
)
# The native API's key scheme (jobs.api.auth.ApiKeyScheme); the session cookie is not accepted here.
SECURITY_SCHEME = "apiKey"

GENERATION_ID = "915b370251724c5cb9a3d68c23a2756d"
VIDEO_URL = (
    "/processed_videos/video_915b370251724c5cb9a3d68c23a2756d.1xUcvS."
    "iL0GoVfdAmKRo5DMJy-vH3lFL-yRwSshF5OvEbcatUk_12345.mp4"
)


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _examples(_description: str = "", **named: object) -> dict:
    """``Name_of_it=value`` pairs as OpenAPI examples, keyed and summarised as drf-spectacular does."""
    described = {"description": _description} if _description else {}
    return {
        re.sub(r"[\W_]", "", key.title()): {"summary": key.replace("_", " "), **described, "value": value}
        for key, value in named.items()
    }


FILE_PART = "Plus the image itself as the file part `image` (a JPEG or PNG of at most 10 MB)."


def _json(description: str, schema: str, headers: dict | None = None, **examples: object) -> dict:
    response = {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema), "examples": _examples(**examples)}},
    }
    if headers:
        response["headers"] = headers
    return response


def _error(description: str, headers: dict | None = None, **examples: str | dict) -> dict:
    bodies = {name: body if isinstance(body, dict) else {"error": body} for name, body in examples.items()}
    return _json(description, "CompatError", headers, **bodies)


def _header(description: str) -> dict:
    return {"schema": {"type": "string"}, "description": description}


def _parameter_schema(name: str, description: str) -> dict:
    # The ranges and defaults are the view's own, so the schema cannot promise other ones.
    low, high, default, whole = PARAMETERS[name]
    number = int if whole else float
    return {
        "type": "integer" if whole else "number",
        "minimum": number(low),
        "maximum": number(high),
        "default": number(default),
        "description": description,
    }


UNAUTHORIZED = _error(
    "No key, or a wrong or revoked one.",
    {"WWW-Authenticate": _header('`Bearer realm="i2v"`')},
    No_key=NO_KEY_MESSAGE,
    Wrong_or_revoked_key=BAD_KEY_MESSAGE,
)

SCHEMAS: dict[str, dict] = {
    "CompatImageToVideoRequest": {
        "type": "object",
        "required": ["image"],
        "additionalProperties": False,
        "properties": {
            "image": {
                "type": "string",
                "format": "binary",
                "description": "The still image to animate: a JPEG or PNG file of at most 10 MB, sent as a file "
                "(not a text field). It is fitted to 1024×576, 576×1024 or 768×768, whichever is nearest its shape.",
            },
            "seed": _parameter_schema(
                "seed",
                "Seed for the random generation, 0 to 4294967294; 0 picks one at random. "
                "The seed used comes back in the result, as a string.",
            ),
            "cfg_scale": _parameter_schema(
                "cfg_scale",
                "How strongly the video sticks to the original image, 0 to 10: lower gives the model more freedom.",
            ),
            "motion_bucket_id": _parameter_schema(
                "motion_bucket_id", "The amount of motion, 1 (subtle) to 255 (dramatic)."
            ),
        },
    },
    "CompatStarted": {
        "type": "object",
        "required": ["success", "id", "message"],
        "additionalProperties": False,
        "properties": {
            "success": {"type": "boolean", "enum": [True]},
            "id": {
                "type": "string",
                "pattern": "^[0-9a-f]{32}$",
                "description": "The generation ID to poll with.",
            },
            "message": {"type": "string"},
        },
    },
    "CompatInProgress": {
        "type": "object",
        "required": ["status", "message"],
        "additionalProperties": False,
        "properties": {"status": {"type": "string", "enum": ["in-progress"]}, "message": {"type": "string"}},
    },
    "CompatComplete": {
        "type": "object",
        "required": ["status", "video_url", "finish_reason", "seed"],
        "additionalProperties": False,
        "properties": {
            "status": {"type": "string", "enum": ["complete"]},
            "video_url": {
                "type": "string",
                "pattern": r"^/processed_videos/video_[A-Za-z0-9_.\-]+_[0-9]+\.mp4$",
                "description": "Relative to the host. Works with a plain GET, no key, until it expires (an hour by "
                "default); poll the result again for a fresh one.",
            },
            "finish_reason": {"type": "string", "enum": ["SUCCESS"]},
            "seed": {"type": "string", "pattern": "^[0-9]+$", "description": "The seed used, as a string."},
        },
    },
    "CompatError": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {"type": "string", "description": "What went wrong, for a person to read."},
            "finish_reason": {
                "type": "string",
                "enum": ["CONTENT_FILTERED"],
                "description": "Only when Stability's content filter blocked the video.",
            },
        },
    },
}

START = {
    "operationId": "compat_img2video_create",
    "tags": [TAG],
    "summary": "Start a video generation",
    "description": "Takes the image and parameters, holds the credits a video costs and starts the generation; "
    "poll the result with the returned `id`. Parameters left out or empty take the defaults shown.",
    "security": [{SECURITY_SCHEME: []}],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": _ref("CompatImageToVideoRequest"),
                "encoding": {"image": {"contentType": "image/jpeg, image/png"}},
                # A file cannot be written into an example's value: these show the text fields and
                # say where the file goes, rather than pretend a sentence is an image.
                "examples": _examples(
                    _description=FILE_PART,
                    The_specs_defaults={"seed": 0, "cfg_scale": 1.5, "motion_bucket_id": 127},
                    A_chosen_seed_and_more_motion={"seed": 12345, "cfg_scale": 2.5, "motion_bucket_id": 200},
                ),
            }
        },
    },
    "responses": {
        "200": {
            **_json(
                "Started.",
                "CompatStarted",
                Started={"success": True, "id": GENERATION_ID, "message": STARTED_MESSAGE},
            ),
            "links": {
                "PollTheResult": {
                    "operationId": "compat_img2video_result",
                    "parameters": {"id": "$response.body#/id"},
                    "description": "The `id` is the one to poll with.",
                }
            },
        },
        "400": _error(
            "The image or a parameter cannot be used; the message says which and why.",
            No_image="image is required: send a JPEG or PNG file in the multipart field 'image'.",
            Image_sent_as_text="image must be a file upload (multipart/form-data), not a text field.",
            Not_a_JPEG_or_PNG="This file is not a JPEG or PNG image (it looks like a PDF document). "
            "Upload a JPEG or PNG.",
            Image_over_10_MB="The file is 10.0 MB; images must be 10 MB or smaller.",
            Seed_out_of_range="seed must be from 0 to 4294967294; got -1.",
            Cfg_scale_out_of_range="cfg_scale must be from 0 to 10; got 11.",
            Motion_bucket_id_out_of_range="motion_bucket_id must be from 1 to 255; got 0.",
            Unknown_field=unknown_fields_message(["motoin"]),
            Not_multipart='Unsupported media type "application/json" in request. '
            "Send the image as multipart/form-data in the field 'image'.",
        ),
        "401": UNAUTHORIZED,
        "402": _error(
            "The key's owner has too few credits for this video.",
            Not_enough_credits="Not enough credits: this costs 20 credits and your balance is 5. "
            "Ask for more credits or choose a cheaper provider.",
        ),
        "413": _error(
            "The request body is over the size cap.",
            Body_too_large="The request body is too large; images must be 10 MB or smaller.",
        ),
        "429": _error(
            "Too many requests for this key; see Retry-After.",
            {"Retry-After": _header("Seconds to wait before the next request.")},
            Throttled="Request was throttled. Expected available in 58 seconds.",
        ),
        "500": _error(
            "Video generation is not configured on this server.",
            Not_available="Video generation is not available right now: "
            "The Stability AI — Stable Video Diffusion provider is not configured here.",
        ),
    },
}

RESULT = {
    "operationId": "compat_img2video_result",
    "tags": [TAG],
    "summary": "Poll a generation",
    "description": "202 while the video is being made, then 200 with a link to it, or an error. "
    "Only the key's owner can see a generation.",
    "security": [{SECURITY_SCHEME: []}],
    "parameters": [
        {
            "in": "path",
            "name": "id",
            "required": True,
            "schema": {"type": "string"},
            "description": "The `id` the start returned: 32 hex digits (the dashed UUID form works too).",
            "example": GENERATION_ID,
        }
    ],
    "responses": {
        "200": _json(
            "The video is ready.",
            "CompatComplete",
            Complete={"status": "complete", "video_url": VIDEO_URL, "finish_reason": "SUCCESS", "seed": "12345"},
        ),
        "202": _json(
            "Still being made; poll again in a few seconds.",
            "CompatInProgress",
            In_progress={"status": "in-progress", "message": IN_PROGRESS_MESSAGE},
        ),
        "401": UNAUTHORIZED,
        "429": _error(
            "Too many wrong API keys were sent from this address; see Retry-After.",
            {"Retry-After": _header("Seconds to wait before the next request.")},
            Too_many_wrong_keys="Too many wrong API keys were sent from your address. Try again in 42 s.",
        ),
        "404": _error(
            "No such generation for this key, or its video was deleted after the retention period.",
            Unknown_id=NOT_FOUND_MESSAGE,
            Past_retention="The video was deleted: results are kept for 24 hours.",
        ),
        "500": _error(
            "The generation failed or was cancelled; nothing was charged.",
            Failed="Stability could not make this video (ERROR).",
            Content_filtered={
                "error": "Stability's content filter blocked the generated video. Try a different image.",
                "finish_reason": "CONTENT_FILTERED",
            },
            Cancelled="This generation was cancelled.",
        ),
    },
}


def _file() -> dict:
    # Bytes have no literal example worth showing (and an example without a value stops
    # ReDoc from rendering at all): the answer's description says what comes back.
    return {"schema": {"type": "string", "format": "binary"}}


VIDEO = {
    "operationId": "compat_processed_video",
    "tags": [TAG],
    "summary": "Download the video (supports Range)",
    "description": "The MP4 behind a result's `video_url`. No key: the signed file name is the credential, "
    "so a `<video src>` can play it.",
    "security": [],
    "parameters": [
        {
            "in": "path",
            "name": "filename",
            "required": True,
            "schema": {"type": "string", "pattern": r"^video_[A-Za-z0-9_.\-]+_[0-9]+\.mp4$"},
            "description": "The file name from `video_url`: `video_<signed token>_<seed>.mp4`.",
            "example": VIDEO_URL.rsplit("/", 1)[1],
        },
        {
            "in": "header",
            "name": "Range",
            "required": False,
            "schema": {"type": "string"},
            "description": "A byte range, e.g. `bytes=0-1023`, for seeking.",
        },
    ],
    "responses": {
        "200": {
            "description": "The whole MP4, with `Content-Length` and `Accept-Ranges: bytes`.",
            "headers": {"Accept-Ranges": _header("`bytes`")},
            "content": {"video/mp4": _file()},
        },
        "206": {
            "description": "The range asked for: for `Range: bytes=0-1023` the first 1024 bytes, with "
            "`Content-Range: bytes 0-1023/123783`.",
            "headers": {"Content-Range": _header("e.g. `bytes 0-1023/123783`")},
            "content": {"video/mp4": _file()},
        },
        "404": _error(
            "The link is wrong or expired, or the video is gone; poll the result again for a fresh link.",
            Wrong_or_expired_link="This video link is wrong or has expired; poll the result again for a fresh one.",
            Video_gone="This video no longer exists.",
        ),
    },
}

PATHS: dict[str, dict] = {
    "/api/img2video": {"post": START},
    "/api/img2video/result/{id}": {"get": RESULT},
    "/processed_videos/{filename}": {"get": VIDEO},
}


def add_compat_endpoints(result: dict, generator: object = None, request: object = None, public: bool = True) -> dict:
    """drf-spectacular postprocessing hook: the compat paths, schemas and tag, merged into ``result``."""
    # Copies: the schema is generated per request, and later hooks or callers may change what they get.
    result.setdefault("paths", {}).update(copy.deepcopy(PATHS))
    components = result.setdefault("components", {})
    schemas = {**components.get("schemas", {}), **copy.deepcopy(SCHEMAS)}
    components["schemas"] = dict(sorted(schemas.items()))  # in name order, as drf-spectacular lists them
    # A new list: the one there may be the TAGS setting itself, which an append would grow on every request.
    result["tags"] = [*result.get("tags", []), {"name": TAG, "description": TAG_DESCRIPTION}]
    return result
