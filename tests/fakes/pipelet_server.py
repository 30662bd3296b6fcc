"""A fake Pipelet video queue, over real HTTP on 127.0.0.1.

Written from Pipelet's document (``../shared/specs/pipelet-queue-api.md``) and
what ``PROVIDER-NOTES.md`` adds::

    POST /queue/MODEL                      Bearer token; JSON {prompt, data_uri: base64 image,
                                           duration?, height? (720 or 480), priority?,
                                           second_image_uri?, ...}; at most 5 s at 720p, 7 s at 480p
        -> 200 {request_id, response_url, status_url, cancel_url}
         | 400 invalid body | 401 no or wrong token | 404 unknown model
    GET  /queue/MODEL/requests/ID/status   IN_QUEUE {queue_position: 0-based}
                                           -> IN_PROGRESS {statusMessages.detail_message
                                              "Progress: n/24 Tasks done"} -> COMPLETED
                                           | FAILED | CANCELLED; 404 unknown; 400 bad id
    PUT  /queue/MODEL/requests/ID/cancel   204 while IN_QUEUE; 409 once started
    GET  /queue/MODEL/requests/ID          {"video": {"data_uri": "<base64 MP4>"}}; with
                                           ``x-pipelet-output: binary`` on the create, a
                                           presigned link instead (served at /s3/ID.mp4)

Each status poll moves the job one step: through ``script.queue_positions``
(IN_QUEUE), then ``script.progress`` (IN_PROGRESS, n of 24), then the
``script.outcome``. Script it through ``server.script``::

    with FakePipeletServer(token="pl-test") as fake:
        fake.script.queue_positions = [2, 1, 0]
        fake.script.outcome = "FAILED"            # or "COMPLETED", "never" (IN_PROGRESS for ever)
        fake.script.result_prefix = True          # data:video/mp4;base64,...
        fake.script.video = some_mp4_bytes        # the result (default: a real H.264 MP4)
        fake.script.fail_next(429, endpoint="status", retry_after=0)
        fake.script.fail_next("malformed_json", endpoint="result")  # also "truncated",
        #   "bad_base64", "not_mp4" (valid base64 of junk) on "result"
        fake.creates, fake.jobs                   # what it saw

Webhooks, as ``PROVIDER-NOTES.md`` documents them: a request created with the
header ``x-pipelet-webhook: URL`` (or ``?fal_webhook=URL``) gets a POST of
``{eventType, queueName, jobId, workerName, leaseExpiry, acquiredAt,
updatedAt, webhookUrl}`` at that URL when a worker takes it (``acquired``) and
when it ends (``completed``, with the result fields merged in, ``failed``,
``cancelled``): once each, unsigned, never retried, whatever the answer.
``fake.webhooks_sent`` records each (its status, or the error). With
``script.send_webhooks = False`` they are recorded but not sent (a test posts
them itself). ``script.finish_after_seconds`` runs jobs by the clock instead
of by polls (acquired at once, finished that long after); ``finish(id)`` ends
one now; ``lie(id)`` posts a ``completed`` body for a job that is not complete.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from tests.fakes.loopback import FailureScript, LoopbackServer, Recorded, RecordingHandler
from tests.fakes.stability_server import sample_mp4

MODELS = (
    "wan22-fast-t2v",
    "wan22-fast-t2v-premium",
    "wan22-fast-t2v-pro",
    "wan22-fast-i2v",
    "wan22-fast-i2v-premium",
    "wan22-fast-i2v-pro",
)
TASKS = 24
_ID = re.compile(r"^[0-9]+$")


@dataclass
class PipeletJob:
    id: str
    model: str
    payload: dict
    headers: dict[str, str]
    image_size: tuple[int, int]
    polls: int = 0
    state: str = "IN_QUEUE"
    tail_size: tuple[int, int] | None = None
    webhook_url: str = ""
    acquired_at: float | None = None
    updated_at: float = field(default_factory=time.time)


@dataclass
class SentHook:
    job_id: str
    event: str
    url: str
    body: dict
    status: int | str | None = None  # None: held (``script.send_webhooks`` is False)
    at: float = field(default_factory=time.time)


@dataclass
class PipeletScript(FailureScript):
    # fail_next: the next ``count`` calls to ``endpoint`` ("create", "status", "cancel" or "result")
    # answer the HTTP status ``action``, or: "malformed_json" (200 with a body cut inside the JSON),
    # on "result" also "truncated" (the connection closes halfway through the body), "bad_base64",
    # "not_mp4".
    queue_positions: list[int] = field(default_factory=lambda: [2, 1, 0])
    progress: list[int] = field(default_factory=lambda: [4, 12, 20])
    outcome: str = "COMPLETED"  # "FAILED", "never"
    result_prefix: bool = False
    escape_slashes: bool = False  # write every "/" of the base64 as "\/" (legal JSON)
    video: bytes | None = None
    send_webhooks: bool = True
    finish_after_seconds: float | None = None
    # With finish_after_seconds = 0: the job's webhooks are delivered before its
    # create is answered (a worker that takes and ends it at once).
    hooks_before_answer: bool = False


class FakePipeletServer(LoopbackServer):
    def __init__(self, token: str = "pl-test") -> None:
        self.token = token
        self.script = PipeletScript()
        self.requests: list[Recorded] = []
        self.jobs: dict[str, PipeletJob] = {}
        self._next_id = 11
        self._lock = threading.Lock()
        self.webhooks_sent: list[SentHook] = []
        self._timers: list[threading.Timer] = []

    def __exit__(self, *exc: object) -> None:
        for timer in self._timers:
            timer.cancel()
        super().__exit__(*exc)

    def new_id(self) -> str:
        with self._lock:
            self._next_id += 1
            return str(self._next_id)

    def _of(self, method: str, pattern: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and re.fullmatch(pattern, r.path.split("?")[0])]

    @property
    def creates(self) -> list[Recorded]:
        return self._of("POST", r"/queue/[^/]+")

    @property
    def polls(self) -> list[Recorded]:
        return self._of("GET", r"/queue/[^/]+/requests/[^/]+/status")

    @property
    def cancels(self) -> list[Recorded]:
        return self._of("PUT", r"/queue/[^/]+/requests/[^/]+/cancel")

    @property
    def result_fetches(self) -> list[Recorded]:
        return self._of("GET", r"/queue/[^/]+/requests/[^/]+")

    def advance(self, job: PipeletJob) -> None:
        """One status poll's worth of time for ``job`` (unless it runs by the clock)."""
        if self.script.finish_after_seconds is not None:
            return
        with self._lock:
            if job.state not in ("IN_QUEUE", "IN_PROGRESS"):
                return
            job.polls += 1
            queued, working = len(self.script.queue_positions), len(self.script.progress)
            if job.polls <= queued:
                state = "IN_QUEUE"
            elif job.polls <= queued + working or self.script.outcome == "never":
                state = "IN_PROGRESS"
            else:
                state = self.script.outcome
            events = self._move(job, state)
        self._send_hooks(job, events)

    def started(self, job: PipeletJob) -> None:
        """A job created to run by the clock: a worker takes it now, and it ends later."""
        with self._lock:
            events = self._move(job, "IN_PROGRESS")
            job.polls = len(self.script.queue_positions) + 1  # its status shows progress
            if self.script.hooks_before_answer and self.script.outcome != "never":
                events += self._move(job, self.script.outcome)
        self._send_hooks(job, events, wait=self.script.hooks_before_answer)
        if self.script.hooks_before_answer:
            return
        timer = threading.Timer(self.script.finish_after_seconds or 0.0, self.finish, args=(job.id,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def acquire(self, request_id: str) -> None:
        """A worker takes the queued job now (``acquired`` goes); it then shows progress."""
        job = self.jobs[request_id]
        with self._lock:
            events = self._move(job, "IN_PROGRESS")
            job.polls = max(job.polls, len(self.script.queue_positions))
        self._send_hooks(job, events)

    def finish(self, request_id: str) -> None:
        """The job reaches its scripted outcome now (taken by a worker first if it was
        still queued); its webhooks go out."""
        job = self.jobs[request_id]
        with self._lock:
            events = self._move(job, "IN_PROGRESS")
            if self.script.outcome != "never":
                events += self._move(job, self.script.outcome)
        self._send_hooks(job, events)

    def lie(self, request_id: str, event: str = "completed") -> SentHook | None:
        """Post an ``event`` body (``completed``: with the result merged in) for a job
        whatever its state: what an unsigned webhook from anyone could say."""
        job = self.jobs[request_id]
        sent = self._send_hooks(job, [event], state="COMPLETED" if event == "completed" else None)
        return sent[0] if sent else None

    def _move(self, job: PipeletJob, state: str) -> list[str]:
        """Set the state (the caller holds the lock); the webhook events that go with it."""
        if state == job.state or job.state not in ("IN_QUEUE", "IN_PROGRESS"):
            return []
        events = []
        if state != "IN_QUEUE" and job.acquired_at is None and state != "CANCELLED":
            job.acquired_at = time.time()
            events.append("acquired")
        job.state, job.updated_at = state, time.time()
        events += {"COMPLETED": ["completed"], "FAILED": ["failed"], "CANCELLED": ["cancelled"]}.get(state, [])
        return events

    def hook_body(self, job: PipeletJob, event: str, *, state: str | None = None) -> dict:
        """The documented webhook body; on ``completed`` the result fields merged in."""
        body = {
            "eventType": event,
            "queueName": job.model,
            "jobId": job.id,
            "workerName": "gpu-worker-7" if job.acquired_at or event == "completed" else None,
            "leaseExpiry": int((job.acquired_at or time.time()) * 1000) + 600_000,
            "acquiredAt": int((job.acquired_at or time.time()) * 1000),
            "updatedAt": int(job.updated_at * 1000),
            "webhookUrl": job.webhook_url,
        }
        if (state or job.state) == "COMPLETED" and event == "completed":
            body.update(self.result_body(job))
        return body

    def result_body(self, job: PipeletJob) -> dict:
        if job.headers.get("x-pipelet-output") == "binary":
            link = f"{self.base_url}/s3/{job.id}.mp4?X-Amz-Expires=3600&X-Amz-Signature=abc123"
            return {"video": {"data_uri": link, "data_url": link}}
        return {"video": {"data_uri": base64.b64encode(self.video_for(job)).decode("ascii")}}

    def _send_hooks(
        self, job: PipeletJob, events: list[str], *, state: str | None = None, wait: bool = False
    ) -> list[SentHook]:
        if not job.webhook_url:
            return []
        sent = [SentHook(job.id, event, job.webhook_url, self.hook_body(job, event, state=state)) for event in events]
        with self._lock:
            self.webhooks_sent += sent
        if self.script.send_webhooks and sent and wait:
            self._deliver(sent)
        elif self.script.send_webhooks and sent:
            # In order, in the background, once each: Pipelet does not retry.
            threading.Thread(target=self._deliver, args=(sent,), daemon=True).start()
        return sent

    def _deliver(self, hooks: list[SentHook]) -> None:
        for hook in hooks:
            request = urllib.request.Request(
                hook.url,
                data=json.dumps(hook.body).encode(),
                method="POST",
                headers={"Content-Type": "application/json", "User-Agent": "pipelet-webhooks/1.0"},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status: int | str = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError as exc:
                status = f"{type(exc).__name__}: {exc}"
            hook.status, hook.at = status, time.time()

    def webhooks_for(self, request_id: str, event: str | None = None) -> list[SentHook]:
        with self._lock:
            return [h for h in self.webhooks_sent if h.job_id == request_id and event in (None, h.event)]

    def status_body(self, job: PipeletJob) -> dict:
        url = f"{self.base_url}/queue/{job.model}/requests/{job.id}"
        if job.state == "IN_QUEUE":
            positions = self.script.queue_positions
            position = positions[min(job.polls, len(positions)) - 1] if job.polls else positions[0]
            return {"status": "IN_QUEUE", "queue_position": position, "statusMessages": {}, "response_url": url}
        if job.state == "IN_PROGRESS":
            step = job.polls - len(self.script.queue_positions)
            done = self.script.progress[min(step, len(self.script.progress)) - 1] if self.script.progress else 0
            return {
                "status": "IN_PROGRESS",
                "statusMessages": {"message": "PROCESSING", "detail_message": f"Progress: {done}/{TASKS} Tasks done"},
                "estimated_total_time_seconds": 90 if job.payload.get("height") == 480 else 180,
                "response_url": url,
            }
        if job.state == "FAILED":
            return {
                "status": "FAILED",
                "statusMessages": {"message": "FAILED", "detail_message": "worker error: CUDA out of memory"},
                "response_url": url,
            }
        return {"status": job.state, "statusMessages": {}, "response_url": url}

    def video_for(self, job: PipeletJob) -> bytes:
        if self.script.video is not None:
            return self.script.video
        return sample_mp4(1280, 720) if job.payload.get("height", 720) == 720 else sample_mp4(832, 480)


def padded_mp4(total_bytes: int, width: int = 1280, height: int = 720) -> bytes:
    """A real H.264 MP4 made ``total_bytes`` long by a trailing ``free`` box
    (which players skip): a result as large as a long, sharp video, made in
    milliseconds."""
    video = sample_mp4(width, height)
    pad = max(total_bytes - len(video), 8)
    return video + pad.to_bytes(4, "big") + b"free" + bytes(pad - 8)


def decode_image(value: Any) -> tuple[int, int] | str:
    """The size of the base64 image in ``value`` (bare, or as a data: URI), or what is wrong."""
    if not isinstance(value, str) or not value:
        return "must be a base64 encoded image"
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        raw = base64.b64decode(value, validate=True)
        with Image.open(io.BytesIO(raw)) as image:
            return image.size
    except (binascii.Error, ValueError, OSError):
        return "is not a base64 encoded image"


def _problems(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["the body must be a JSON object"]
    found = []
    if not isinstance(payload.get("prompt"), str) or not payload["prompt"].strip():
        found.append("prompt is required")
    image = decode_image(payload.get("data_uri"))
    if isinstance(image, str):
        found.append(f"data_uri {image}")
    if "second_image_uri" in payload:
        tail = decode_image(payload["second_image_uri"])
        if isinstance(tail, str):
            found.append(f"second_image_uri {tail}")
    height, duration = payload.get("height", 720), payload.get("duration", 5)
    if height not in (720, 480) or isinstance(height, bool):
        found.append("height: we only support 720, 480 as input")
    elif not isinstance(duration, int | float) or isinstance(duration, bool) or duration <= 0:
        found.append("duration must be a number of seconds")
    elif duration > (5 if height == 720 else 7):
        found.append(f"maximum duration for {height}p video is {5 if height == 720 else 7} seconds")
    if "priority" in payload and not isinstance(payload["priority"], int):
        found.append("priority must be an integer")
    return found


class _Handler(RecordingHandler):
    fake: FakePipeletServer

    def _gate(self, endpoint: str) -> bool:
        """Answers (and returns True) when the token is wrong or a failure is scripted."""
        if self.headers.get("Authorization") != f"Bearer {self.fake.token}":
            self._json(401, {"detail": "Unauthorized"})
            return True
        scripted = self.fake.script.take(endpoint)
        if scripted is None:
            return False
        action, retry_after = scripted
        if action == "malformed_json":
            self._send(200, b'{"request_id": "1", "status": ')
        elif isinstance(action, int):
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
            self._json(action, {"detail": f"scripted {action}"}, headers)
        else:
            self.scripted_result = action
            return False
        return True

    def _job(self, model: str, request_id: str) -> PipeletJob | None:
        if not _ID.match(request_id):
            self._json(400, {"detail": "Invalid request id"})
            return None
        job = self.fake.jobs.get(request_id)
        if job is None or job.model != model:
            self._json(404, {"detail": "Request not found"})
            return None
        return job

    def do_POST(self) -> None:
        self._begin()
        match = re.fullmatch(r"/queue/([^/?]+)", self.path.split("?")[0])
        if not match:
            return self._json(404, {"detail": "Not Found"})
        if self._gate("create"):
            return
        model = match[1]
        if model not in MODELS:
            return self._json(404, {"detail": f"Unknown model {model}"})
        payload = self.record.body
        problems = _problems(payload)
        if problems:
            return self._json(400, {"detail": "; ".join(problems)})
        request_id = self.fake.new_id()
        tail = decode_image(payload["second_image_uri"]) if "second_image_uri" in payload else None
        self.fake.jobs[request_id] = PipeletJob(
            id=request_id,
            model=model,
            payload=payload,
            headers=dict(self.record.headers),
            image_size=decode_image(payload["data_uri"]),  # type: ignore[arg-type]
            tail_size=tail,  # type: ignore[arg-type]
            webhook_url=self.record.headers.get("x-pipelet-webhook")
            or urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("fal_webhook", [""])[0],
        )
        if self.fake.script.finish_after_seconds is not None:
            self.fake.started(self.fake.jobs[request_id])
        base = f"{self.fake.base_url}/queue/{model}/requests/{request_id}"
        self._json(
            200,
            {
                "request_id": request_id,
                "response_url": base,
                "status_url": f"{base}/status",
                "cancel_url": f"{base}/cancel",
            },
        )

    def do_PUT(self) -> None:
        self._begin()
        match = re.fullmatch(r"/queue/([^/]+)/requests/([^/]+)/cancel", self.path)
        if not match:
            return self._json(404, {"detail": "Not Found"})
        if self._gate("cancel"):
            return
        job = self._job(match[1], match[2])
        if job is None:
            return
        with self.fake._lock:
            events = self.fake._move(job, "CANCELLED") if job.state == "IN_QUEUE" else None
        if events is None:
            return self._json(409, {"detail": f"Request is {job.state} and cannot be cancelled"})
        self._send(204, b"", headers=None)
        self.fake._send_hooks(job, events)

    def do_GET(self) -> None:
        self._begin()
        self.scripted_result = ""
        path = self.path.split("?")[0]
        if path.startswith("/s3/"):  # the presigned link: no key, as S3 serves it
            job = self.fake.jobs.get(path.removeprefix("/s3/").removesuffix(".mp4"))
            if job is None or job.state != "COMPLETED" or "X-Amz-Signature=" not in self.path:
                return self._send(403, b"<Error><Code>AccessDenied</Code></Error>", "application/xml")
            return self._send(200, self.fake.video_for(job), "video/mp4")
        match = re.fullmatch(r"/queue/([^/]+)/requests/([^/]+)(/status)?", path)
        if not match:
            return self._json(404, {"detail": "Not Found"})
        if self._gate("status" if match[3] else "result"):
            return
        job = self._job(match[1], match[2])
        if job is None:
            return
        if match[3]:
            self.fake.advance(job)
            return self._json(200, self.fake.status_body(job))
        if job.state != "COMPLETED":
            return self._json(400, {"detail": f"Request is {job.state}, not COMPLETED"})
        self._result(job)

    def _result(self, job: PipeletJob) -> None:
        action = self.scripted_result
        if job.headers.get("x-pipelet-output") == "binary":
            link = f"{self.fake.base_url}/s3/{job.id}.mp4?X-Amz-Expires=3600&X-Amz-Signature=abc123"
            return self._json(200, {"video": {"data_uri": link, "data_url": link}})
        video = self.fake.video_for(job)
        if action == "not_mp4":
            video = b"\x00\x01junk that is no video" * 400
        text = base64.b64encode(video).decode("ascii")
        if action == "bad_base64":
            text = text[:1000] + "!*?" + text[1000:]
        if self.fake.script.result_prefix:
            text = "data:video/mp4;base64," + text
        body = json.dumps({"video": {"data_uri": text}})
        if self.fake.script.escape_slashes:
            body = body.replace("/", "\\/")
        data = body.encode()
        if action == "truncated":
            # Promise the whole body, send half, and hang up.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.record.status = 200
            return
        self._send(200, data)


FakePipeletServer.handler = _Handler  # defined below the fake it serves
