"""A fake callback receiver (the G.A.M.E API's side), over real HTTP on 127.0.0.1.

It records every request as it arrived (method, path, headers, raw body bytes)
and answers from a script::

    with FakeCallbackReceiver() as receiver:
        receiver.answers.extend([500, 500])     # fail twice, then the default 200
        receiver.answers.append(("redirect", "/elsewhere"))
        receiver.answers.append("hang")         # hold the request until release()
        receiver.answers.append((429, {"Retry-After": "30"}))  # a status with headers
        receiver.answers.append(410)            # gone
        receiver.default_status = "hang"        # hold every request not scripted
        ...
        receiver.received    # [Received(method, path, headers, body)]
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


class FakeCallbackReceiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: deque = deque()
        self.default_status = 200
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.hanging = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                outer._handle(self)

            def do_POST(self):
                outer._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.address = f"127.0.0.1:{self.port}"

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            self.received.append(
                Received(handler.command, handler.path, {k.lower(): v for k, v in handler.headers.items()}, body)
            )
            answer = self.answers.popleft() if self.answers else self.default_status
        if answer == "hang":
            self.hanging.set()
            self._release.wait(120)
            answer = 200
        extra: dict[str, str] = {}
        if isinstance(answer, tuple) and answer[0] == "redirect":
            answer, extra = 302, {"Location": answer[1]}
        elif isinstance(answer, tuple):
            answer, extra = answer
        text = b'{"ok": true}' if 200 <= answer < 300 else b'{"error": "scripted"}'
        try:
            handler.send_response(answer)
            for name, value in extra.items():
                handler.send_header(name, value)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(text)))
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(text)
        except OSError:
            pass  # the sender went away (a killed worker)

    def release(self) -> None:
        self._release.set()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """The first ``count`` requests, once they have arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} callback(s), got {len(self.received)}: {self.received}")

    def start(self) -> FakeCallbackReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeCallbackReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
