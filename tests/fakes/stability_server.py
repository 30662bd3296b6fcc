"""A fake Stability AI v2beta image-to-video server, over real HTTP on 127.0.0.1.

It follows the protocol in ``../shared/specs/PROVIDER-NOTES.md``::

    POST /v2beta/image-to-video           multipart image, seed, cfg_scale, motion_bucket_id
         -> 200 {"id": <64 hex>} | 400/401/403/413 {id, name, errors[]}
    GET  /v2beta/image-to-video/result/ID -> 202 {id, status: "in-progress"}
         -> 200 MP4 + finish-reason/seed headers (accept: video/*)
         -> 200 {video: base64, finish_reason, seed} (accept: application/json)
         -> 404 for an unknown id or another key's job

Use it as a context manager (or ``start()``/``stop()``) and script it through
``server.script``::

    with FakeStabilityServer(api_key="sk-test") as fake:
        fake.script.finish_after_polls = 2          # two 202s, then the video
        fake.script.fail_next(429, count=2, endpoint="result", retry_after=3)
        ...
        fake.requests      # every request, in order (RecordedRequest)
        fake.jobs          # every accepted job, in submission order (FakeJob)

The MP4 is a real H.264 clip made once per size with PyAV and cached for the
whole process. Requests are served thread-per-request, so hundreds of jobs can
be in flight at once.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SIZES = ((1024, 576), (576, 1024), (768, 768))
SEED_MAX = 4294967294
SUBMIT_PATH = "/v2beta/image-to-video"
RESULT_PREFIX = "/v2beta/image-to-video/result/"
MAX_IMAGE_BYTES = 10 * 1024 * 1024

# Names of scripted actions other than a plain HTTP status.
ACTIONS = frozenset({"content_moderation", "malformed_json", "truncate", "cut"})


# --- the video ----------------------------------------------------------------

_video_lock = threading.Lock()
_video_cache: dict[tuple[int, int, int, int, bool], bytes] = {}


def sample_mp4(width: int, height: int, frames: int = 14, fps: int = 7, faststart: bool = False) -> bytes:
    """A small real H.264 MP4 of ``frames`` moving-gradient frames (cached).

    By default the index (``moov``) comes last, as a plain encoder writes it,
    so a cut-short copy does not open at all; ``faststart`` puts it first, so
    a cut-short copy opens and only its last frames are missing.
    """
    key = (width, height, frames, fps, faststart)
    with _video_lock:
        cached = _video_cache.get(key)
        if cached is not None:
            return cached
        import av
        import numpy as np

        with tempfile.TemporaryDirectory() as folder:  # faststart rewrites the file: it needs a real one
            path = os.path.join(folder, "sample.mp4")
            options = {"movflags": "+faststart"} if faststart else {}
            with av.open(path, mode="w", format="mp4", options=options) as container:
                stream = container.add_stream("libx264", rate=fps)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.options = {"preset": "ultrafast", "crf": "35"}
                xs = np.linspace(0, 255, width, dtype=np.float32)[None, :]
                ys = np.linspace(0, 255, height, dtype=np.float32)[:, None]
                for index in range(frames):
                    shift = index * 255.0 / frames
                    rgb = np.empty((height, width, 3), dtype=np.uint8)
                    rgb[..., 0] = ((xs + shift) % 256).astype(np.uint8)
                    rgb[..., 1] = ((ys + shift) % 256).astype(np.uint8)
                    rgb[..., 2] = 128
                    for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
            with open(path, "rb") as handle:
                data = handle.read()
        _video_cache[key] = data
        return data


# --- records ------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request as the fake saw it (image bytes are not kept, only their shape)."""

    time: float  # time.time() when the request line was read
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    form: dict[str, str] = field(default_factory=dict)
    # name -> {filename, content_type, size, width, height, format}
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: int | None = None  # what the fake answered

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


@dataclass
class FakeJob:
    """One accepted generation, with the times a benchmark needs."""

    id: str
    index: int  # 0-based submission order
    key: str
    width: int
    height: int
    seed: int
    cfg_scale: float
    motion_bucket_id: int
    submitted_at: float  # time.time()
    finish_at: float | None  # time.time() when the result is ready; None: never (or by polls)
    finish_after_polls: int | None = None  # ready after this many result GETs answered 202
    polls: int = 0  # result GETs for this job that reached the job (not 429/500-scripted)
    running_polls: int = 0  # of which answered 202
    last_poll_at: float | None = None  # last poll that passed the poll floor
    ready_at: float | None = None  # poll-count jobs: the poll that made the result ready
    first_fetched_at: float | None = None  # first 200 with the result
    fetches: int = 0  # 200s with the result
    floor_violations: int = 0  # polls refused for coming sooner than min_interval

    def is_ready(self, now: float) -> bool:
        return self.ready_at is not None or (self.finish_at is not None and now >= self.finish_at)

    @property
    def finished_at(self) -> float | None:
        """When the result became ready (its scripted time, or the poll that
        made it ready); None while it is not."""
        if self.ready_at is not None:
            return self.ready_at
        if self.finish_at is not None and time.time() >= self.finish_at:
            return self.finish_at
        return None

    @property
    def fetch_latency(self) -> float | None:
        """Seconds from ready to first fetched, when both happened."""
        if self.finished_at is None or self.first_fetched_at is None:
            return None
        return self.first_fetched_at - self.finished_at


@dataclass
class _Failure:
    action: int | str
    endpoint: str  # "submit", "result" or "any"
    remaining: int
    retry_after: float | None


@dataclass
class ResultHold:
    """A result GET the fake keeps unanswered (``StabilityScript.hold_next_result``):
    a worker caught mid-poll, for a test that kills it there."""

    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    client_port: int = 0  # the caller's end of the connection, to find its process
    job_id: str = ""


@dataclass
class StabilityScript:
    """What the fake does; change fields at any time (reads happen per request).

    When a job is ready, decided at submit time in this order: ``never_finish``
    (never), ``finish_at`` (absolute ``time.time()`` by job index: a callable
    ``index -> float | None`` or a sequence), ``finish_after_polls`` (that many
    202s, then ready), else ``finish_after_seconds`` after the submit.
    """

    finish_after_seconds: float = 0.0
    finish_after_polls: int | None = None
    never_finish: bool = False
    finish_at: Callable[[int], float | None] | Sequence[float | None] | None = None
    # Answer of every result (also changeable later): SUCCESS or CONTENT_FILTERED.
    finish_reason: str = "SUCCESS"
    # Persistent misbehaviour (for "the next K calls" use fail_next).
    content_moderation: bool = False  # every submit answers 403 content_moderation
    malformed_submit: bool = False  # every submit answers 200 with broken JSON
    truncate_video: bool = False  # every result is cut to half its bytes (Content-Length matches)
    # The poll floor: a job polled again sooner than this answers 429.
    min_interval: float = 0.0
    min_interval_slack: float = 0.0  # seconds of tolerance on the floor
    # Account-wide limit: at most this many requests per window (Stability: 150 per 10 s).
    account_limit: tuple[int, float] | None = None
    frames: int = 14
    fps: int = 7
    faststart: bool = False  # put the MP4 index first (see sample_mp4)
    _failures: list[_Failure] = field(default_factory=list, repr=False)
    _holds: list[ResultHold] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def hold_next_result(self) -> ResultHold:
        """The next result GET (past auth and scripted failures) waits until
        ``release`` is set, 60 s at most, and is then answered as usual."""
        hold = ResultHold()
        with self._lock:
            self._holds.append(hold)
        return hold

    def _take_hold(self) -> ResultHold | None:
        with self._lock:
            return self._holds.pop(0) if self._holds else None

    def fail_next(
        self,
        action: int | str,
        count: int = 1,
        *,
        endpoint: str = "any",
        retry_after: float | None = 1.0,
    ) -> None:
        """The next ``count`` calls to ``endpoint`` ("submit", "result" or "any")
        misbehave: ``action`` is an HTTP status (429 sends ``Retry-After`` unless
        ``retry_after`` is None; 5xx and 4xx send a Stability error body), or one
        of "content_moderation" (submit: 403), "malformed_json" (submit: 200 with
        broken JSON), "truncate" (result: half the MP4, consistent length) or
        "cut" (result: full Content-Length, half the bytes, then the connection
        closes). Scripted failures are used in the order they were added."""
        if endpoint not in ("submit", "result", "any"):
            raise ValueError(f"endpoint must be submit, result or any, not {endpoint!r}")
        if not isinstance(action, int) and action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        with self._lock:
            self._failures.append(_Failure(action, endpoint, count, retry_after))

    def _take_failure(self, endpoint: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.remaining > 0 and failure.endpoint in (endpoint, "any"):
                    if isinstance(failure.action, str) and not _action_fits(failure.action, endpoint):
                        continue
                    failure.remaining -= 1
                    return failure
            self._failures[:] = [f for f in self._failures if f.remaining > 0]
        return None

    def _finish_time(self, index: int, now: float) -> float | None:
        if self.never_finish:
            return None
        if self.finish_at is not None:
            if callable(self.finish_at):
                return self.finish_at(index)
            return self.finish_at[index] if index < len(self.finish_at) else None
        if self.finish_after_polls is not None:
            return None
        return now + self.finish_after_seconds


def _action_fits(action: str, endpoint: str) -> bool:
    return (action in ("content_moderation", "malformed_json")) == (endpoint == "submit")


# --- the server ---------------------------------------------------------------


class FakeStabilityServer:
    """The fake; ``base_url`` is what ``STABILITY_BASE_URL`` should be."""

    def __init__(self, api_key: str = "sk-test", *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api_key = api_key
        self.script = StabilityScript()
        self.requests: list[RecordedRequest] = []
        self.jobs: list[FakeJob] = []
        self._jobs_by_id: dict[str, FakeJob] = {}
        self._lock = threading.Lock()
        self._account_window: deque[float] = deque()
        self._host, self._port = host, port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> FakeStabilityServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        httpd = ThreadingHTTPServer((self._host, self._port), handler, bind_and_activate=False)
        httpd.daemon_threads = True
        httpd.request_queue_size = 1024  # the listen backlog; the default 5 drops bursts
        httpd.allow_reuse_address = True
        httpd.server_bind()
        httpd.server_activate()
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeStabilityServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # reading what happened

    def job(self, job_id: str) -> FakeJob:
        with self._lock:
            return self._jobs_by_id[job_id]

    def requests_to(self, method: str, path_prefix: str = "") -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    @property
    def submits(self) -> list[RecordedRequest]:
        return self.requests_to("POST", SUBMIT_PATH)

    @property
    def polls(self) -> list[RecordedRequest]:
        return self.requests_to("GET", RESULT_PREFIX)

    def timings(self) -> list[dict[str, Any]]:
        """Per job, in submission order: index, id, submitted_at, finished_at,
        first_fetched_at, fetch_latency, polls, floor_violations."""
        with self._lock:
            return [
                {
                    "index": j.index,
                    "id": j.id,
                    "submitted_at": j.submitted_at,
                    "finished_at": j.finished_at,
                    "first_fetched_at": j.first_fetched_at,
                    "fetch_latency": j.fetch_latency,
                    "polls": j.polls,
                    "floor_violations": j.floor_violations,
                }
                for j in self.jobs
            ]

    @property
    def floor_violations(self) -> int:
        with self._lock:
            return sum(j.floor_violations for j in self.jobs)

    def add_job(self, *, key: str | None = None, width: int = 1024, height: int = 576, seed: int = 1) -> FakeJob:
        """A job as if submitted, without HTTP (for setting up poll tests)."""
        return self._new_job(key or self.api_key, width, height, seed, 1.8, 127, time.time())

    # internals used by the handler

    def _record(self, record: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(record)

    def _account_limited(self, now: float) -> float | None:
        """Seconds to wait when the account-wide limit is hit, else None."""
        limit = self.script.account_limit
        if not limit:
            return None
        count, window = limit
        with self._lock:
            while self._account_window and self._account_window[0] <= now - window:
                self._account_window.popleft()
            if len(self._account_window) >= count:
                return max(0.001, self._account_window[0] + window - now)
            self._account_window.append(now)
        return None

    def _new_job(self, key: str, width: int, height: int, seed: int, cfg: float, motion: int, now: float) -> FakeJob:
        script = self.script
        by_polls = None if script.never_finish or script.finish_at is not None else script.finish_after_polls
        with self._lock:
            index = len(self.jobs)
            job = FakeJob(
                id=secrets.token_hex(32),
                index=index,
                key=key,
                width=width,
                height=height,
                seed=seed or secrets.randbelow(SEED_MAX) + 1,
                cfg_scale=cfg,
                motion_bucket_id=motion,
                submitted_at=now,
                finish_at=script._finish_time(index, now),
                finish_after_polls=by_polls,
            )
            if job.finish_after_polls is not None and job.finish_after_polls <= 0:
                job.ready_at = now
            self.jobs.append(job)
            self._jobs_by_id[job.id] = job
        return job


def _error_body(name: str, *errors: str) -> dict[str, Any]:
    return {"id": secrets.token_hex(16), "name": name, "errors": list(errors)}


_STATUS_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    402: "payment_required",
    403: "forbidden",
    404: "not_found",
    413: "payload_too_large",
    422: "invalid_parameters",
    429: "rate_limit_exceeded",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
}


class _Handler(BaseHTTPRequestHandler):
    # Headers and body go out in two writes; with Nagle on, each small answer
    # waited ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    fake: FakeStabilityServer  # set on the subclass made by start()
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API
    server_version = "FakeStability/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # --- responses

    def _head(self, status: int, content_type: str, length: int, headers: dict[str, str] | None) -> None:
        self.record.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self._head(status, content_type, len(body), headers)
        self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _error(self, status: int, *errors: str, name: str | None = None, retry_after: float | None = None) -> None:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
        self._json(status, _error_body(name or _STATUS_NAMES.get(status, "error"), *errors), headers)

    def _content_moderation(self) -> None:
        self._error(
            403,
            "Your request was flagged by our content moderation system, as a result your request was denied "
            "and you were not charged.",
            name="content_moderation",
        )

    def _malformed(self) -> None:
        self._send(200, b'{"id": "abc', "application/json")

    # --- request plumbing

    def _begin(self) -> bytes:
        self.record = RecordedRequest(
            time=time.time(),
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        self.fake._record(self.record)
        self.pending: _Failure | None = None
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _key(self) -> str | None:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def _gate(self, endpoint: str) -> bool:
        """Auth, the account limit and scripted failures; True when answered."""
        if self._key() != self.fake.api_key:
            self._error(401, "authorization: invalid or missing API key")
            return True
        wait = self.fake._account_limited(self.record.time)
        if wait is not None:
            self._error(429, "You have exceeded the rate limit.", retry_after=round(wait, 3))
            return True
        failure = self.fake.script._take_failure(endpoint)
        if failure is None:
            return False
        if isinstance(failure.action, int):
            status = failure.action
            retry_after = failure.retry_after if status in (429, 503) else None
            self._error(status, f"scripted {status}", retry_after=retry_after)
            return True
        if failure.action == "content_moderation":
            self._content_moderation()
            return True
        if failure.action == "malformed_json":
            self._malformed()
            return True
        self.pending = failure  # "truncate" / "cut" act on the result body
        return False

    # --- submit

    def do_POST(self) -> None:
        body = self._begin()
        if self.path.split("?")[0] != SUBMIT_PATH:
            self._error(404, f"{self.path}: not found")
            return
        try:
            form, files = _parse_multipart(self.headers.get("Content-Type", ""), body)
        except ValueError as exc:
            if not self._gate("submit"):
                self._error(400, str(exc))
            return
        self.record.form, self.record.files = form, files
        if self._gate("submit"):
            return
        script = self.fake.script
        if script.content_moderation:
            self._content_moderation()
            return
        errors, status = _validate(form, files)
        if errors:
            self._error(status, *errors)
            return
        if script.malformed_submit:
            self._malformed()
            return
        image = files["image"]
        job = self.fake._new_job(
            self._key() or "",
            image["width"],
            image["height"],
            int(form.get("seed") or 0),
            float(form.get("cfg_scale") or 1.8),
            int(form.get("motion_bucket_id") or 127),
            self.record.time,
        )
        self._json(200, {"id": job.id})

    # --- result

    def do_GET(self) -> None:
        self._begin()
        path = self.path.split("?")[0]
        if not path.startswith(RESULT_PREFIX):
            self._error(404, f"{self.path}: not found")
            return
        if self._gate("result"):
            return
        job_id = path[len(RESULT_PREFIX) :]
        hold = self.fake.script._take_hold()
        if hold is not None:
            hold.client_port, hold.job_id = self.client_address[1], job_id
            hold.arrived.set()
            hold.release.wait(60)
        fake, now = self.fake, self.record.time
        outcome, wait = "missing", 0.0
        with fake._lock:
            job = fake._jobs_by_id.get(job_id)
            if job is not None and job.key == self._key():
                floor = fake.script.min_interval
                elapsed = None if job.last_poll_at is None else now - job.last_poll_at
                if floor > 0 and elapsed is not None and elapsed < floor - fake.script.min_interval_slack:
                    job.floor_violations += 1
                    outcome, wait = "too_soon", floor - elapsed
                else:
                    job.polls += 1
                    job.last_poll_at = now
                    if job.is_ready(now):
                        outcome = "ready"
                    else:
                        outcome = "running"
                        job.running_polls += 1
                        if job.finish_after_polls is not None and job.running_polls >= job.finish_after_polls:
                            job.ready_at = now
        if outcome == "missing":
            self._error(404, f"id: no generation {job_id} for this key")
        elif outcome == "too_soon":
            self._error(429, "Polling too often; wait before polling this id again.", retry_after=round(wait, 3))
        elif outcome == "running":
            self._json(202, {"id": job_id, "status": "in-progress"})
        else:
            self._result(job)

    def _result(self, job: FakeJob) -> None:
        script = self.fake.script
        video = sample_mp4(job.width, job.height, script.frames, script.fps, script.faststart)
        action = self.pending.action if self.pending is not None else None
        if action is None and script.truncate_video:
            action = "truncate"
        finish_reason = script.finish_reason
        with self.fake._lock:
            job.fetches += 1
            if job.first_fetched_at is None:
                job.first_fetched_at = time.time()
        accept = self.headers.get("Accept", "video/*")
        if "application/json" in accept and "video/" not in accept:
            if action in ("truncate", "cut"):
                video = video[: len(video) // 2]
            self._json(
                200, {"video": base64.b64encode(video).decode(), "finish_reason": finish_reason, "seed": job.seed}
            )
            return
        headers = {"finish-reason": finish_reason, "seed": str(job.seed)}
        if action == "truncate":
            self._send(200, video[: len(video) // 2], "video/mp4", headers)
        elif action == "cut":
            # The full length is promised, half is sent, then the connection closes.
            self._head(200, "video/mp4", len(video), headers)
            self.wfile.write(video[: len(video) // 2])
            self.wfile.flush()
            self.close_connection = True
        else:
            self._send(200, video, "video/mp4", headers)


def _header_params(name: str, value: str) -> Message:
    message = Message()
    message[name] = value
    return message


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Form fields and file descriptions of a multipart/form-data body.

    Each file becomes ``{filename, content_type, size, width, height, format}``
    (width/height/format None when Pillow cannot read it); bytes are not kept.
    """
    header = _header_params("content-type", content_type)
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str) or not boundary:
        raise ValueError("content-type: expected multipart/form-data with a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise ValueError("body: malformed multipart body")
    form: dict[str, str] = {}
    files: dict[str, dict[str, Any]] = {}
    for chunk in chunks[1:-1]:
        if not chunk.startswith(b"\r\n") or not chunk.endswith(b"\r\n"):
            raise ValueError("body: malformed multipart part")
        head, sep, data = chunk[2:-2].partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("body: multipart part without headers")
        part = BytesParser().parsebytes(head + b"\r\n\r\n", headersonly=True)
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        filename = part.get_param("filename", header="content-disposition")
        if isinstance(filename, str):
            files[name] = {
                "filename": filename,
                "content_type": part.get_content_type(),
                "size": len(data),
                **_image_shape(data),
            }
        else:
            form[name] = data.decode("utf-8", "replace")
    return form, files


def _image_shape(data: bytes) -> dict[str, Any]:
    """Width, height and format from the image header (no full decode)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return {"width": image.width, "height": image.height, "format": image.format}
    except Exception:  # anything Pillow cannot read is "not an image" here
        return {"width": None, "height": None, "format": None}


def _validate(form: dict[str, str], files: dict[str, dict[str, Any]]) -> tuple[list[str], int]:
    """Stability's checks on a submit: (errors, status)."""
    image = files.get("image")
    if image is None:
        return ["image: is required"], 400
    if image["size"] > MAX_IMAGE_BYTES:
        return [f"image: must be at most {MAX_IMAGE_BYTES} bytes"], 413
    if image["format"] is None:
        return ["image: could not be read as an image"], 400
    errors = []
    if image["format"] not in ("PNG", "JPEG"):
        errors.append("image: must be a PNG or JPEG")
    if (image["width"], image["height"]) not in SIZES:
        errors.append(f"image: {image['width']}x{image['height']} is not supported; use 1024x576, 576x1024 or 768x768")
    checks = (("seed", int, 0, SEED_MAX), ("cfg_scale", float, 0, 10), ("motion_bucket_id", int, 1, 255))
    for name, cast, low, high in checks:
        raw = form.get(name)
        if raw is None or raw == "":
            continue
        try:
            value = cast(raw)
        except ValueError:
            errors.append(f"{name}: {raw!r} is not a number")
            continue
        if not low <= value <= high:
            errors.append(f"{name}: must be between {low} and {high}")
    return errors, 400
