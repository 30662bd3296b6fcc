"""What every fake provider server shares: a threaded HTTP server on 127.0.0.1
with a free port, serving in the background while the ``with`` block runs.

A subclass names its request handler class (``handler``); the handler reaches
the fake, and its script and records, as ``self.fake``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


class LoopbackServer:
    handler: ClassVar[type[BaseHTTPRequestHandler]]
    _server: ThreadingHTTPServer | None = None

    def __enter__(self) -> Self:
        handler = type("Handler", (self.handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def address(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"http://{self.address}"


class LoopbackHandler(BaseHTTPRequestHandler):
    """Answers with a body of known length; quiet, so test output stays readable."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json", headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers=headers)


@dataclass
class Recorded:
    """One request as a JSON fake saw it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any = None  # the JSON sent, when it parsed
    status: int | None = None  # what the fake answered


class RecordingHandler(LoopbackHandler):
    """A JSON fake's handler: ``_begin`` reads the body and records the request
    in ``fake.requests``; every answer's status is kept on that record."""

    protocol_version = "HTTP/1.1"
    record: Recorded

    def _send(self, status: int, body: bytes, content_type: str = "application/json", headers: dict | None = None):
        self.record.status = status
        super()._send(status, body, content_type, headers)

    def _begin(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.record = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        self.fake.requests.append(self.record)
        return raw


@dataclass
class FailureScript:
    """A fake's scripted failures: ``fail_next`` queues them per endpoint (the
    names each fake's script lists), the handler ``take``s the next one."""

    failures: list[tuple[int | str, str, float | None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fail_next(self, action: int | str, count: int = 1, *, endpoint: str, retry_after: float | None = None) -> None:
        """The next ``count`` calls to ``endpoint`` answer the HTTP status
        ``action``, or the fake's named misbehaviour ("malformed_json", ...)."""
        with self._lock:
            self.failures += [(action, endpoint, retry_after)] * count

    def take(self, endpoint: str) -> tuple[int | str, float | None] | None:
        with self._lock:
            for index, (action, where, retry_after) in enumerate(self.failures):
                if where == endpoint:
                    del self.failures[index]
                    return action, retry_after
        return None
