"""A fake AI/ML API for Kling image-to-video, over real HTTP on 127.0.0.1.

Written from the documents (``../shared/specs/aimlapi-kling-image-to-video.md``
and the Kling section of ``PROVIDER-NOTES.md``), not from what our client sends::

    POST /v2/video/generations                 Bearer key; JSON {model, image_url, prompt?,
    POST /v2/generate/video/kling/generation   tail_image_url?, duration, negative_prompt?,
                                               cfg_scale?, static mask?, dynamic_masks?}
         -> 200 {"id": ..., "status": "queued"} | 400/422 {"error": {"name", "message"}}
            | 401 {"error": ...} without the right bearer key
    GET  <either path>?generation_id=ID
         -> 200 {id, status, video?: {url}, error?: {name, message}, meta?: {usage: {credits_used}}}
            status queued -> generating -> completed (one per poll, the last repeats)
            | 404 unknown generation
    GET  /results/ID.mp4   the video (a real H.264 MP4 of the image's shape)

What it checks, per the documents: ``model`` is a known Kling image-to-video
model; ``image_url`` is given (a URL, which it fetches, or base64 / a data URI,
which it decodes); ``duration`` is 5 or 10 (the v1 models also take "5"/"10",
as AI/ML API's own sample sends); ``cfg_scale`` 0-1; the masks under the
model's own names (v1/v1.6: ``static_mask_url``, ``dynamic_masks[].mask_url``;
v2.1: ``static_mask``, ``dynamic_masks[].mask``), at most 6 dynamic masks,
each with 2-77 trajectory points ``{x, y}``. A request that breaks a rule is
400 (a malformed body) or 422 (a value out of range) with a message.

Script it through ``server.script``::

    fake.script.statuses = ["queued", "generating", "completed"]
    fake.script.failure = ("invalid_prompt", "The prompt breaks the content policy")  # -> status "error"
    fake.script.never_finish = True
    fake.script.fail_next(429, endpoint="create", retry_after=0)   # or 500, "malformed_json"; endpoint "poll"
    fake.script.credits_used = 420000
    fake.submits, fake.generations        # what it saw
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image

from tests.fakes.loopback import FailureScript, LoopbackHandler, LoopbackServer
from tests.fakes.stability_server import sample_mp4

CURRENT = "/v2/video/generations"
LEGACY = "/v2/generate/video/kling/generation"
V1_MODELS = {
    "kling-video/v1/standard/image-to-video",
    "kling-video/v1/pro/image-to-video",
    "kling-video/v1.6/standard/image-to-video",
    "kling-video/v1.6/pro/image-to-video",
}
V2_MODELS = {"kling-video/v2.1/standard/image-to-video", "kling-video/v2.1/pro/image-to-video"}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any = None
    status: int | None = None


@dataclass
class Generation:
    id: str
    payload: dict
    image_size: tuple[int, int]
    images: dict[str, tuple[int, int]]  # field -> the size of the image it named
    polls: int = 0


@dataclass
class AimlScript(FailureScript):
    # fail_next: the next ``count`` calls to ``endpoint`` ("create" or "poll") answer the HTTP
    # status ``action``, or 200 with broken JSON for "malformed_json".
    statuses: list[str] = field(default_factory=lambda: ["queued", "generating", "completed"])
    never_finish: bool = False
    failure: tuple[str, str] | None = None  # (name, message): the generation ends in "error"
    credits_used: int = 420000


class Invalid(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def read_image(value: Any, name: str) -> tuple[int, int]:
    """The size of the image ``value`` names: fetched when a URL, decoded when base64."""
    if not isinstance(value, str) or not value:
        raise Invalid(400, f"{name} must be a URL or base64 image")
    if value.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(value, timeout=10) as response:
                data = response.read(20 * 1024 * 1024)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise Invalid(400, f"{name}: could not fetch the image: {exc}") from None
    else:
        text = value.split(",", 1)[1] if value.startswith("data:") else value
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise Invalid(400, f"{name} is neither a URL nor valid base64") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except OSError:
        raise Invalid(400, f"{name} is not an image") from None


def validate(payload: Any) -> tuple[dict[str, tuple[int, int]], tuple[int, int]]:
    """The documented rules; returns the sizes of the images named, by field."""
    if not isinstance(payload, dict):
        raise Invalid(400, "The body must be a JSON object")
    model = payload.get("model")
    if model not in V1_MODELS | V2_MODELS:
        raise Invalid(400, f"Invalid model: {model!r}")
    v1 = model in V1_MODELS
    duration = payload.get("duration", 5)
    allowed = (5, 10, "5", "10") if v1 else (5, 10)
    if isinstance(duration, bool) or duration not in allowed:
        raise Invalid(422, f"duration must be one of 5, 10; got {duration!r}")
    cfg = payload.get("cfg_scale", 0.5)
    if isinstance(cfg, bool) or not isinstance(cfg, int | float) or not 0 <= cfg <= 1:
        raise Invalid(422, f"cfg_scale must be a number from 0 to 1; got {cfg!r}")
    for text in ("prompt", "negative_prompt"):
        if text in payload and not isinstance(payload[text], str):
            raise Invalid(400, f"{text} must be a string")
    static_name, mask_name = ("static_mask_url", "mask_url") if v1 else ("static_mask", "mask")
    wrong_static, wrong_mask = ("static_mask", "mask") if v1 else ("static_mask_url", "mask_url")
    if wrong_static in payload:
        raise Invalid(400, f"{wrong_static} is not a field of {model}; use {static_name}")
    sizes = {"image_url": read_image(payload.get("image_url"), "image_url")}
    if "tail_image_url" in payload:
        sizes["tail_image_url"] = read_image(payload["tail_image_url"], "tail_image_url")
    if static_name in payload:
        sizes[static_name] = read_image(payload[static_name], static_name)
    masks = payload.get("dynamic_masks")
    if masks is not None:
        if not isinstance(masks, list):
            raise Invalid(400, "dynamic_masks must be an array")
        if len(masks) > 6:
            raise Invalid(422, f"dynamic_masks takes at most 6 masks; got {len(masks)}")
        for index, mask in enumerate(masks):
            where = f"dynamic_masks[{index}]"
            if not isinstance(mask, dict) or wrong_mask in mask or mask_name not in mask:
                raise Invalid(400, f"{where} must be an object with {mask_name} and trajectories")
            sizes[f"{where}.{mask_name}"] = read_image(mask[mask_name], f"{where}.{mask_name}")
            points = mask.get("trajectories")
            if not isinstance(points, list) or not 2 <= len(points) <= 77:
                raise Invalid(422, f"{where}.trajectories must have from 2 to 77 points")
            for point in points:
                if not isinstance(point, dict) or not all(isinstance(point.get(k), int) for k in ("x", "y")):
                    raise Invalid(400, f"{where}.trajectories: each point is {{x, y}} in whole pixels")
    return sizes, sizes["image_url"]


class FakeAimlServer(LoopbackServer):
    def __init__(self, key: str = "aiml-test-key") -> None:
        self.key = key
        self.script = AimlScript()
        self.requests: list[Recorded] = []
        self.generations: dict[str, Generation] = {}

    @property
    def submits(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST"]

    @property
    def polls(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "GET" and r.path in (CURRENT, LEGACY)]

    def status_of(self, generation: Generation) -> str:
        if self.script.never_finish:
            return "generating"
        statuses = list(self.script.statuses)
        if self.script.failure is not None:
            statuses[-1] = "error"
        return statuses[min(generation.polls, len(statuses)) - 1] if generation.polls else statuses[0]


class _Handler(LoopbackHandler):
    fake: FakeAimlServer
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: bytes, content_type: str = "application/json", headers: dict | None = None):
        self.record.status = status
        super()._send(status, body, content_type, headers)

    def _begin(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.record = Recorded(self.command, parts.path, parse_qs(parts.query), headers, body)
        self.fake.requests.append(self.record)

    def _gate(self, endpoint: str) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.fake.key}":
            self._json(401, {"error": {"name": "Unauthorized", "message": "Invalid API key"}})
            return True
        scripted = self.fake.script.take(endpoint)
        if scripted is None:
            return False
        action, retry_after = scripted
        if action == "malformed_json":
            self._send(200, b'{"id": "x", "status": ')
        else:
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
            self._json(int(action), {"error": {"name": "Scripted", "message": f"scripted {action}"}}, headers)
        return True

    def do_POST(self) -> None:
        self._begin()
        if self.record.path not in (CURRENT, LEGACY):
            return self._json(404, {"error": {"name": "NotFound", "message": "Not found"}})
        if self._gate("create"):
            return
        if not isinstance(self.record.body, dict):
            return self._json(400, {"error": {"name": "BadRequest", "message": "The body must be JSON"}})
        try:
            sizes, image_size = validate(self.record.body)
        except Invalid as exc:
            return self._json(exc.status, {"error": {"name": "ValidationError", "message": exc.message}})
        generation = Generation(secrets.token_hex(12), self.record.body, image_size, sizes)
        self.fake.generations[generation.id] = generation
        self._json(200, {"id": generation.id, "status": "queued"})

    def do_GET(self) -> None:
        self._begin()
        if self.record.path.startswith("/results/"):
            return self._result(self.record.path.removeprefix("/results/").removesuffix(".mp4"))
        if self.record.path not in (CURRENT, LEGACY):
            return self._json(404, {"error": {"name": "NotFound", "message": "Not found"}})
        if self._gate("poll"):
            return
        generation_id = (self.record.query.get("generation_id") or [""])[0]
        generation = self.fake.generations.get(generation_id)
        if generation is None:
            return self._json(404, {"error": {"name": "NotFound", "message": "Generation not found"}})
        generation.polls += 1
        status = self.fake.status_of(generation)
        body: dict[str, Any] = {"id": generation.id, "status": status}
        if status == "completed":
            body["video"] = {"url": f"{self.fake.base_url}/results/{generation.id}.mp4"}
            body["meta"] = {"usage": {"credits_used": self.fake.script.credits_used}}
        if status == "error":
            name, message = self.fake.script.failure or ("GenerationFailed", "The generation failed")
            body["error"] = {"name": name, "message": message}
            body["meta"] = {"usage": {"credits_used": 0}}
        self._json(200, body)

    def _result(self, generation_id: str) -> None:
        generation = self.fake.generations.get(generation_id)
        if generation is None:
            return self._send(404, b"<html>gone</html>", "text/html")
        width, height = generation.image_size
        self._send(200, sample_mp4(width, height), "video/mp4")


FakeAimlServer.handler = _Handler
