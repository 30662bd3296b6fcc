"""A fake Pika ("Pika AI Video Web Bot") API, over real HTTP on 127.0.0.1.

It follows the protocol the original I2V API used (``../shared/specs/PROVIDER-NOTES.md``)::

    POST /generate   Bearer token; JSON {promptText, model, image: URL, options:
                     {frameRate, parameters: {motion, guidanceScale}, negativePrompt?,
                     seed?, aspectRatio?}}  -> 200 {"job": {"id": ...}}
                     | 400 {"error": ...} | 401 {"error": "Unauthorized"}
    GET  /jobs/ID    -> 200 {"id", "videos": [{"id", "status", "resultUrl"}]}; status
                     queued -> pending -> finished (then resultUrl) | 404 unknown job
    GET  /results/ID.mp4   the video (a real H.264 MP4)
    GET  /images/photo.png a photo, for jobs made "from an image URL"

Like the real service it fetches the image URL it is given, when the job is
submitted; a job whose image cannot be fetched (or is not an image) fails
(``videos[0].status`` "failed"). Script it through ``server.script``::

    with FakePikaServer(token="pika-test") as fake:
        fake.script.statuses = ["queued", "pending", "finished"]  # one per poll, the last repeats
        fake.script.fail_next(429, endpoint="generate", retry_after=0)
        fake.script.fail_next("malformed_json", endpoint="jobs")
        fake.script.result = "dead"      # resultUrl answers 404; "html": 200 text/html
        fake.submits, fake.jobs          # what it saw
"""

from __future__ import annotations

import io
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from tests.fakes.loopback import FailureScript, LoopbackServer, Recorded, RecordingHandler
from tests.fakes.stability_server import sample_mp4

ASPECTS = {"16:9": (1024, 576), "9:16": (576, 1024), "1:1": (768, 768), "5:2": (1280, 512)}
ASPECTS.update({"4:5": (640, 800), "4:3": (768, 576)})


@dataclass
class PikaJob:
    id: str
    payload: dict
    image: dict  # what fetching the image gave: {"ok", "status", "content_type", "size", "problem"}
    polls: int = 0
    failed_with: str = ""  # a terminal status other than finished


@dataclass
class PikaScript(FailureScript):
    # fail_next: the next ``count`` calls to ``endpoint`` ("generate" or "jobs") answer the HTTP
    # status ``action``, or 200 with broken JSON for "malformed_json".
    statuses: list[str] = field(default_factory=lambda: ["queued", "pending", "finished"])
    never_finish: bool = False  # stays "pending" for ever
    result: str = "ok"  # "ok", "dead" (404), "html" (200 text/html)


class FakePikaServer(LoopbackServer):
    def __init__(self, token: str = "pika-test") -> None:
        self.token = token
        self.script = PikaScript()
        self.requests: list[Recorded] = []
        self.jobs: dict[str, PikaJob] = {}

    @property
    def submits(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and r.path == "/generate"]

    @property
    def polls(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "GET" and r.path.startswith("/jobs/")]

    def job_status(self, job: PikaJob) -> str:
        if job.failed_with:
            return job.failed_with
        if self.script.never_finish:
            return "pending"
        statuses = self.script.statuses
        return statuses[min(job.polls, len(statuses)) - 1] if job.polls else statuses[0]


def fetch_image(url: str) -> dict:
    """Fetch the image as Pika would: it must answer 200 with an image."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            data = response.read(20 * 1024 * 1024)
            content_type = response.headers.get("Content-Type", "")
            status = response.status
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return {"ok": False, "problem": f"could not fetch the image: {exc}"}
    try:
        with Image.open(io.BytesIO(data)) as image:
            size = image.size
    except OSError:
        return {"ok": False, "status": status, "content_type": content_type, "problem": "not an image"}
    return {"ok": True, "status": status, "content_type": content_type, "size": size, "bytes": len(data)}


def photo_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (1024, 576), (200, 90, 40)).save(out, "PNG")
    return out.getvalue()


def _problems(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["the body must be a JSON object"]
    found = []
    if not isinstance(payload.get("promptText"), str) or not payload["promptText"].strip():
        found.append("promptText is required")
    if not isinstance(payload.get("image"), str) or not payload["image"].startswith(("http://", "https://")):
        found.append("image must be a URL")
    options = payload.get("options")
    if not isinstance(options, dict):
        return [*found, "options is required"]
    params = options.get("parameters") or {}
    checks = [
        ("frameRate", options.get("frameRate"), 1, 24),
        ("parameters.motion", params.get("motion"), 1, 4),
        ("parameters.guidanceScale", params.get("guidanceScale"), 5, 25),
    ]
    for name, value, low, high in checks:
        if not isinstance(value, int | float) or not low <= value <= high:
            found.append(f"{name} must be between {low} and {high}")
    if "aspectRatio" in options and options["aspectRatio"] not in ASPECTS:
        found.append("aspectRatio is not supported")
    return found


class _Handler(RecordingHandler):
    fake: FakePikaServer

    def _gate(self, endpoint: str) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.fake.token}":
            self._json(401, {"error": "Unauthorized"})
            return True
        scripted = self.fake.script.take(endpoint)
        if scripted is None:
            return False
        action, retry_after = scripted
        if action == "malformed_json":
            self._send(200, b'{"job": {"id": ')
        else:
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
            self._json(int(action), {"error": f"scripted {action}"}, headers)
        return True

    def do_POST(self) -> None:
        self._begin()
        if self.path != "/generate":
            return self._json(404, {"error": "Not found"})
        if self._gate("generate"):
            return
        payload = self.record.body
        problems = _problems(payload)
        if problems:
            return self._json(400, {"error": "; ".join(problems)})
        image = fetch_image(payload["image"])
        job = PikaJob(id=secrets.token_hex(12), payload=payload, image=image)
        if not image["ok"]:
            job.failed_with = "failed"
        self.fake.jobs[job.id] = job
        self._json(200, {"job": {"id": job.id, "promptText": payload["promptText"], "createdAt": time.time()}})

    def do_GET(self) -> None:
        self._begin()
        if self.path == "/images/photo.png":
            return self._send(200, photo_png(), "image/png")
        if self.path.startswith("/results/"):
            return self._result(self.path.removeprefix("/results/").removesuffix(".mp4"))
        if not self.path.startswith("/jobs/"):
            return self._json(404, {"error": "Not found"})
        if self._gate("jobs"):
            return
        job = self.fake.jobs.get(self.path.removeprefix("/jobs/"))
        if job is None:
            return self._json(404, {"error": "Job not found"})
        job.polls += 1
        status = self.fake.job_status(job)
        video: dict[str, Any] = {"id": f"v-{job.id}", "status": status, "resultUrl": None}
        if status == "finished":
            video["resultUrl"] = f"{self.fake.base_url}/results/{job.id}.mp4"
        if job.failed_with:
            video["error"] = job.image.get("problem", "generation failed")
        self._json(200, {"id": job.id, "promptText": job.payload["promptText"], "videos": [video]})

    def _result(self, job_id: str) -> None:
        job = self.fake.jobs.get(job_id)
        if job is None or self.fake.script.result == "dead":
            return self._send(404, b"<html>gone</html>", "text/html")
        if self.fake.script.result == "html":
            return self._send(200, b"<html><body>Your video is ready!</body></html>", "text/html")
        width, height = ASPECTS[job.payload["options"].get("aspectRatio", "16:9")]
        self._send(200, sample_mp4(width, height), "video/mp4")


FakePikaServer.handler = _Handler  # defined below the fake it serves
