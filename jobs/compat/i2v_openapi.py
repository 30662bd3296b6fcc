"""The I2V-compatible endpoint (``jobs.compat.i2v``) in the OpenAPI schema.

Its errors are FastAPI's ``{"detail": ...}``, not the native shape, so the
operation is written here as plain OpenAPI data and merged into the generated
schema by ``add_i2v_endpoint``, a ``POSTPROCESSING_HOOKS`` entry. Messages are
the view's own constants where it has them; ``tests/test_compat_i2v.py``
compares the examples with real answers.
"""

from __future__ import annotations

import copy

from jobs.compat.i2v import BAD_KEY_MESSAGE, BAD_REQUEST_ID_MESSAGE, NO_KEY_MESSAGE, REQUEST_ID_MAX
from jobs.compat_openapi import _examples, _header

TAG = "I2V-API-compatible"
TAG_DESCRIPTION = (
    "The original I2V API's endpoint, reproduced: a client written for it works unchanged but for the host and "
    "one header with an API key (`x-api-key: <key>` or `Authorization: Bearer <key>`). `POST /api/v1/i2v` starts "
    "the pipeline for an image URL; when the video is ready (or the job fails) i2v POSTs the original's callback "
    "body to `{CALLBACK_API_URL}/{request_id}/callback` with `x-api-key: <GAME_API_KEY>`, retrying with growing "
    'pauses until the receiver answers 2xx. Errors are FastAPI\'s `{"detail": ...}`.'
)
SECURITY_SCHEME = "apiKey"
HEADER_SCHEME = "i2vApiKeyHeader"
STARTED = {"message": "Video generation pipeline initialized | ETA: 5-7 minutes", "request_id": "your-request-id"}


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


def _detail(description: str, headers: dict | None = None, **messages: str) -> dict:
    return _json(description, "I2VError", headers, **{name: {"detail": text} for name, text in messages.items()})


def _missing(where: str, name: str) -> dict:
    return {"loc": [where, name], "msg": "field required", "type": "value_error.missing"}


SCHEMAS: dict[str, dict] = {
    "I2VRequest": {
        "type": "object",
        "required": ["image_id"],
        "properties": {
            "image_id": {
                "type": "string",
                "description": "The http(s) URL of a JPEG or PNG image (at most 10 MB) on a public address. "
                "HTML-escaped characters (`&#x2F;`, `&#x3D;`, `&amp;`) are unescaped first, as the original did.",
            }
        },
    },
    "I2VStarted": {
        "type": "object",
        "required": ["message", "request_id"],
        "additionalProperties": False,
        "properties": {
            "message": {
                "type": "string",
                "pattern": r"^Video generation pipeline initialized \| ETA: [0-9]+-[0-9]+ minutes$",
                "description": "The ETA is estimated from this provider's recent videos (5-7 without history).",
            },
            "request_id": {"type": "string", "description": "The `x-request-id` you sent."},
        },
    },
    "I2VError": {
        "type": "object",
        "required": ["detail"],
        "additionalProperties": False,
        "properties": {
            "detail": {
                "oneOf": [
                    {"type": "string", "description": "What went wrong, for a person to read."},
                    {
                        "type": "array",
                        "description": "What is missing or malformed (422), as FastAPI lists it.",
                        "items": {
                            "type": "object",
                            "required": ["loc", "msg", "type"],
                            "properties": {
                                "loc": {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]}},
                                "msg": {"type": "string"},
                                "type": {"type": "string"},
                            },
                        },
                    },
                ]
            }
        },
    },
}

START = {
    "operationId": "compat_i2v_create",
    "tags": [TAG],
    "summary": "Start the image-to-video pipeline",
    "description": "Fetches the image, holds the credits a video costs and starts the pipeline (Replicate's CLIP "
    "interrogator writes a prompt, then Pika animates the image, when both are configured here; otherwise the "
    "install's I2V provider). The answer comes at once; the result arrives by callback. Sending the same "
    "`x-request-id` again starts nothing new and gets the first answer again, word for word.",
    "security": [{SECURITY_SCHEME: []}, {HEADER_SCHEME: []}],
    "parameters": [
        {
            "in": "header",
            "name": "x-request-id",
            "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": REQUEST_ID_MAX, "pattern": "^[ -~]+$"},
            "description": "Your id for this request: the callback is sent to "
            "`{CALLBACK_API_URL}/{x-request-id}/callback`. Printable ASCII characters, at most "
            f"{REQUEST_ID_MAX}.",
            "example": "5f0c6b1e-8d2a-4c1e-9f3a-2b7d4e6a8c90",
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": _ref("I2VRequest"),
                "examples": _examples(
                    An_image_URL={"image_id": "https://example.com/image.jpg"},
                    An_HTML_escaped_URL={"image_id": "https:&#x2F;&#x2F;cdn.example.com&#x2F;photo.png?w&#x3D;1024"},
                ),
            }
        },
    },
    "responses": {
        "200": _json(
            "Started (or the answer to an earlier request with this `x-request-id`).", "I2VStarted", Started=STARTED
        ),
        "400": _detail(
            "The image URL or the request id cannot be used; the message says why.",
            Not_http="image_id must use http or https.",
            Private_address="image_id points to a private or local address (10.0.0.5); only public addresses can "
            "be fetched.",
            Unknown_host="image_id has a host name (images.example.invalid) that could not be found.",
            Not_found_there="Fetching image_id failed: the server answered 404 Not Found.",
            Not_an_image="This file is not a JPEG or PNG image (it looks like a PDF document). Upload a JPEG or PNG.",
            Empty_URL="image_id is empty: give the http(s) URL of a JPEG or PNG image.",
            Bad_request_id=BAD_REQUEST_ID_MESSAGE,
        ),
        "401": _detail(
            "No key, or a wrong or revoked one.",
            {"WWW-Authenticate": _header('`Bearer realm="i2v"`')},
            No_key=NO_KEY_MESSAGE,
            Wrong_or_revoked_key=BAD_KEY_MESSAGE,
        ),
        "402": _detail(
            "The key's owner has too few credits for this video.",
            Not_enough_credits="Not enough credits: this costs 20 credits and your balance is 5. "
            "Ask for more credits or choose a cheaper provider.",
        ),
        "413": _detail(
            "The image (or the request body) is over the size cap.",
            Image_too_large="image_id is larger than the 10 MB limit.",
        ),
        "415": _detail(
            "The body is not JSON.",
            Not_JSON='Unsupported media type "text/plain" in request.',
        ),
        "422": _json(
            "A required header or field is missing, or the body is not a JSON object, as FastAPI reports it.",
            "I2VError",
            No_x_request_id={"detail": [_missing("header", "x-request-id")]},
            No_image_id={"detail": [_missing("body", "image_id")]},
            Not_JSON={
                "detail": [
                    {
                        "loc": ["body", 0],
                        "msg": "JSON parse error - Expecting value: line 1 column 1 (char 0)",
                        "type": "value_error.jsondecode",
                    }
                ]
            },
        ),
        "429": _detail(
            "Too many requests for this key, or too many wrong keys from this address; see Retry-After.",
            {"Retry-After": _header("Seconds to wait before the next request.")},
            Throttled="Request was throttled. Expected available in 58 seconds.",
            Too_many_wrong_keys="Too many wrong API keys were sent from your address.",
        ),
        "503": _detail(
            "Video generation is not configured on this server.",
            Not_available="Video generation is not available right now: Unknown provider 'pika'; choose one of "
            "local, stability.",
        ),
    },
}

PATHS = {"/api/v1/i2v": {"post": START}}
HEADER_SECURITY = {
    "type": "apiKey",
    "in": "header",
    "name": "x-api-key",
    "description": "The same API key, for clients of the original I2V API: `x-api-key: i2v_…`",
}


def add_i2v_endpoint(result: dict, generator: object = None, request: object = None, public: bool = True) -> dict:
    """drf-spectacular postprocessing hook: the I2V-compatible path, schemas, key header and tag."""
    result.setdefault("paths", {}).update(copy.deepcopy(PATHS))
    components = result.setdefault("components", {})
    schemas = {**components.get("schemas", {}), **copy.deepcopy(SCHEMAS)}
    components["schemas"] = dict(sorted(schemas.items()))
    components["securitySchemes"] = {**components.get("securitySchemes", {}), HEADER_SCHEME: dict(HEADER_SECURITY)}
    result["tags"] = [*result.get("tags", []), {"name": TAG, "description": TAG_DESCRIPTION}]
    return result
