"""A fake Replicate predictions API, over real HTTP on 127.0.0.1.

It follows the protocol in ``../shared/specs/PROVIDER-NOTES.md`` closely enough
for the real ``replicate`` client (1.0.7)::

    POST /v1/predictions                     {"version", "input"} -> 201 prediction
    POST /v1/models/{owner}/{name}/predictions {"input"}          -> 201 prediction
    GET  /v1/predictions/{id}                                     -> 200 prediction
    POST /v1/predictions/{id}/cancel                              -> 200 prediction
    GET  /files/{id}.mp4                                          -> the video output

Every prediction body carries ``id``, ``model``, ``version``, ``status`` (the
client refuses one without), plus ``input``, ``output``, ``logs``, ``error``.
``Prefer: wait`` is answered at once with ``starting`` (what Replicate does
when the wait runs out). Auth: ``Authorization: Bearer <token>`` or ``Token``.

A prediction moves ``starting`` -> ``processing`` -> its outcome as it is
looked at: ``script.finish_after_polls`` GETs, then ``script.outcome``
(``succeed``, ``fail``, ``aborted``, ``empty`` output, ``never`` finishing). Text models
(their name contains "clip") answer ``script.clip_text``; others a URL on this
server serving a real MP4. ``script.fail_next(status, endpoint=...)`` answers
the next calls of an endpoint (``create``, ``get``, ``cancel``, ``file``) with
an error status or ``"malformed_json"``.

Webhooks, as Replicate documents them: a prediction created with ``webhook``
(and ``webhook_events_filter`` containing ``completed``, or no filter) gets,
once it is final, one POST of its body to that URL, signed Standard-Webhooks
style with the account's secret (``whsec_…``, served at
``GET /v1/webhooks/default/secret``): ``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64>``. A non-2xx answer or no answer is retried
with backoff for about ``script.webhook_retry_seconds`` (a minute, as Replicate
does for the terminal webhook). The signature is made by the
``standardwebhooks`` library, independently of our own check.

``script.finish_after_seconds``: when set, a prediction finishes by the clock
that long after its creation, whether or not anyone looks (as real ones do);
``finish(id)`` finishes one at once. ``script.send_webhooks = False`` keeps
webhooks from being sent (a provider whose webhook never comes).
``script.hold_gets``: an ``Event``; while it is unset, a GET of a prediction
answers what it read only once the event is set (``get_waiting`` is set when
one is held): a poll in flight.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from tests.fakes.loopback import LoopbackHandler, LoopbackServer
from tests.fakes.stability_server import sample_mp4

CLIP_VERSION = "8151e1c9f47e696fa316146a2e35812ccf79cfc9eba05b11c7f450155102af70"
SVD_VERSION = "3f0457e4619daac51203dedb472816fd4af51f3149fa7a9e0b5ffcf1b8172438"
VERSIONS = {
    CLIP_VERSION: "pharmapsychotic/clip-interrogator",
    SVD_VERSION: "stability-ai/stable-video-diffusion",
}
_MODEL_PATH = re.compile(r"^/v1/models/([\w.-]+)/([\w.-]+)/predictions$")
_PREDICTION_PATH = re.compile(r"^/v1/predictions/([A-Za-z0-9]+)(/cancel)?$")
_FILE_PATH = re.compile(r"^/files/([A-Za-z0-9]+)\.mp4$")


@dataclass
class SentWebhook:
    prediction_id: str
    url: str
    webhook_id: str
    status: int | str  # the receiver's HTTP status, or the error
    at: float


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakePrediction:
    id: str
    model: str
    version: str
    input: dict
    status: str = "starting"
    output: Any = None
    error: str | None = None
    logs: str = ""
    polls: int = 0
    cancelled: bool = False
    webhook: str = ""
    webhook_events_filter: list | None = None


@dataclass
class ReplicateScript:
    finish_after_polls: int = 2
    outcome: str = "succeed"  # succeed | fail | aborted | empty | never
    error_text: str = "CUDA out of memory"
    clip_text: str = "a red fox sitting in the snow, by Ansel Adams, trending on artstation"
    failures: dict[str, list[tuple[int | str, float | None]]] = field(default_factory=dict)
    finish_after_seconds: float | None = None
    send_webhooks: bool = True
    webhook_retry_seconds: float = 60.0
    hold_gets: threading.Event | None = None

    def fail_next(self, status: int | str, *, endpoint: str, count: int = 1, retry_after: float | None = None) -> None:
        self.failures.setdefault(endpoint, []).extend([(status, retry_after)] * count)

    def take(self, endpoint: str) -> tuple[int | str, float | None] | None:
        queue = self.failures.get(endpoint) or []
        return queue.pop(0) if queue else None


class FakeReplicateServer(LoopbackServer):
    def __init__(self, token: str = "r8_test") -> None:
        self.token = token
        self.script = ReplicateScript()
        self.predictions: dict[str, FakePrediction] = {}
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self.webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        self.webhooks_sent: list[SentWebhook] = []
        self.get_waiting = threading.Event()
        self._timers: list[threading.Timer] = []

    def __exit__(self, *exc: object) -> None:
        for timer in self._timers:
            timer.cancel()
        super().__exit__(*exc)

    def created(self, model_part: str = "") -> list[FakePrediction]:
        with self.lock:
            return [p for p in self.predictions.values() if model_part in p.model]

    def calls(self, method: str, prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]

    # --- the protocol ----------------------------------------------------------

    def new_prediction(self, model: str, version: str, inputs: dict, webhook: dict | None = None) -> FakePrediction:
        prediction = FakePrediction(id=secrets.token_hex(13), model=model, version=version, input=inputs)
        prediction.webhook = str((webhook or {}).get("webhook") or "")
        prediction.webhook_events_filter = (webhook or {}).get("webhook_events_filter")
        with self.lock:
            self.predictions[prediction.id] = prediction
        if self.script.finish_after_seconds is not None:
            timer = threading.Timer(self.script.finish_after_seconds, self.finish, args=(prediction.id,))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
        return prediction

    def finish(self, prediction_id: str) -> None:
        """The prediction reaches its scripted outcome now (then its webhook goes)."""
        prediction = self.predictions[prediction_id]
        with self.lock:
            if prediction.status not in ("starting", "processing"):
                return
            prediction.status = "processing"
        self._step(prediction, final=True)

    def advance(self, prediction: FakePrediction) -> None:
        """One look moves the prediction along its script (unless it runs by the clock)."""
        if self.script.finish_after_seconds is not None:
            with self.lock:
                if prediction.status == "starting":
                    prediction.status = "processing"
            return
        self._step(prediction, final=False)

    def _step(self, prediction: FakePrediction, *, final: bool) -> None:
        with self.lock:
            if prediction.status not in ("starting", "processing"):
                return
            prediction.polls += 1
            waiting = self.script.outcome == "never" or prediction.polls < self.script.finish_after_polls
            if waiting and not final:
                prediction.status = "processing" if prediction.polls >= 1 else "starting"
                done = min(prediction.polls, 9)
                prediction.logs = f"{done * 10}%|{'#' * done}{' ' * (10 - done)}| {done * 5}/50 [00:01<00:09]"
                return
            if self.script.outcome == "fail":
                prediction.status, prediction.error = "failed", self.script.error_text
            elif self.script.outcome == "aborted":  # a Cancel-After deadline passed
                prediction.status, prediction.error = "aborted", "Prediction aborted: deadline exceeded"
            elif self.script.outcome == "empty":
                prediction.status, prediction.output = "succeeded", ""
            else:
                prediction.status = "succeeded"
                if "clip" in prediction.model:
                    prediction.output = self.script.clip_text
                else:
                    prediction.output = f"{self.base_url}/files/{prediction.id}.mp4"
        self.completed(prediction)

    def completed(self, prediction: FakePrediction) -> None:
        """The prediction is final: its webhook, if it asked for one, goes out (in the background)."""
        wanted = prediction.webhook_events_filter is None or "completed" in prediction.webhook_events_filter
        if prediction.webhook and wanted and self.script.send_webhooks:
            body = json.dumps(self.body(prediction))
            threading.Thread(target=self._deliver, args=(prediction, body), daemon=True).start()

    def sign(self, webhook_id: str, timestamp: int, body: str, secret: str | None = None) -> str:
        moment = datetime.fromtimestamp(timestamp, tz=UTC)  # the library wants a UTC-aware time
        return Webhook(secret or self.webhook_secret).sign(webhook_id, moment, body)

    def _deliver(self, prediction: FakePrediction, body: str) -> None:
        webhook_id = f"msg_{secrets.token_hex(12)}"
        give_up = time.monotonic() + self.script.webhook_retry_seconds
        pause = 0.5
        while True:
            timestamp = int(time.time())
            request = urllib.request.Request(
                prediction.webhook,
                data=body.encode(),
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "webhook-id": webhook_id,
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": self.sign(webhook_id, timestamp, body),
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    status: int | str = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError as exc:
                status = f"{type(exc).__name__}: {exc}"
            sent = SentWebhook(prediction.id, prediction.webhook, webhook_id, status, time.time())
            with self.lock:
                self.webhooks_sent.append(sent)
            if isinstance(status, int) and 200 <= status < 300:
                return
            if time.monotonic() + pause > give_up:
                return
            time.sleep(pause)
            pause = min(pause * 2, 15.0)

    def webhooks_for(self, prediction_id: str) -> list[SentWebhook]:
        with self.lock:
            return [sent for sent in self.webhooks_sent if sent.prediction_id == prediction_id]

    def body(self, prediction: FakePrediction) -> dict:
        return {
            "id": prediction.id,
            "model": prediction.model,
            "version": prediction.version,
            "status": prediction.status,
            "input": prediction.input,
            "output": prediction.output,
            "logs": prediction.logs,
            "error": prediction.error,
            "metrics": {},
            "created_at": "2026-12-02T08:00:00.000Z",
            "urls": {
                "get": f"{self.base_url}/v1/predictions/{prediction.id}",
                "cancel": f"{self.base_url}/v1/predictions/{prediction.id}/cancel",
            },
        }


class _Handler(LoopbackHandler):
    fake: FakeReplicateServer
    protocol_version = "HTTP/1.1"

    def _problem(self, status: int, detail: str, retry_after: float | None = None) -> None:
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else None
        self._json(status, {"title": "Error", "detail": detail, "status": status}, headers)

    def _begin(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        self.fake.requests.append(Recorded(self.command, self.path, dict(self.headers.items()), body))
        return body

    def _authorised(self) -> bool:
        given = self.headers.get("Authorization", "")
        if given in (f"Bearer {self.fake.token}", f"Token {self.fake.token}"):
            return True
        self._problem(401, "Invalid token.")
        return False

    def _scripted(self, endpoint: str) -> bool:
        failure = self.fake.script.take(endpoint)
        if failure is None:
            return False
        status, retry_after = failure
        if status == "malformed_json":
            self._send(200 if endpoint != "create" else 201, b'{"id": "abc", "status": ', "application/json")
        else:
            self._problem(int(status), f"scripted {status}", retry_after)
        return True

    def do_POST(self) -> None:
        body = self._begin()
        if not self._authorised():
            return
        match = _PREDICTION_PATH.match(self.path)
        if match and match[2]:
            if self._scripted("cancel"):
                return
            prediction = self.fake.predictions.get(match[1])
            if prediction is None:
                self._problem(404, "Not found.")
                return
            with self.fake.lock:
                stopped = prediction.status in ("starting", "processing")
                if stopped:
                    prediction.status, prediction.cancelled = "canceled", True
            if stopped:
                self.fake.completed(prediction)
            self._json(200, self.fake.body(prediction))
            return
        if self._scripted("create"):
            return
        inputs = body.get("input") if isinstance(body, dict) else None
        if not isinstance(inputs, dict):
            self._problem(422, "input is required")
            return
        model_match = _MODEL_PATH.match(self.path)
        if model_match:
            model, version = f"{model_match[1]}/{model_match[2]}", ""
        elif self.path == "/v1/predictions" and body.get("version") in VERSIONS:
            version = body["version"]
            model = VERSIONS[version]
        else:
            self._problem(404, "The requested version does not exist.")
            return
        prediction = self.fake.new_prediction(model, version, inputs, body)
        # With "Prefer: wait" Replicate holds the request; when the wait runs out
        # it answers "starting", which the client keeps polling. We answer at once.
        self._json(201, self.fake.body(prediction))

    def do_GET(self) -> None:
        self._begin()
        file_match = _FILE_PATH.match(self.path)
        if file_match:
            if self._scripted("file"):
                return
            if file_match[1] not in self.fake.predictions:
                self._send(404, b"not found", "text/plain")
                return
            self._send(200, sample_mp4(1024, 576), "video/mp4")  # no token needed: a delivery URL
            return
        if not self._authorised():
            return
        if self.path == "/v1/webhooks/default/secret":
            self._json(200, {"key": self.fake.webhook_secret})
            return
        match = _PREDICTION_PATH.match(self.path)
        if not match or match[2]:
            self._problem(404, "Not found.")
            return
        if self._scripted("get"):
            return
        prediction = self.fake.predictions.get(match[1])
        if prediction is None:
            self._problem(404, "Not found.")
            return
        self.fake.advance(prediction)
        answer = self.fake.body(prediction)
        hold = self.fake.script.hold_gets
        if hold is not None and not hold.is_set():
            self.fake.get_waiting.set()
            hold.wait(60)
        self._json(200, answer)


FakeReplicateServer.handler = _Handler  # defined below the fake it serves
