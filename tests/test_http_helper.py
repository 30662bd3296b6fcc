"""The one outbound HTTP helper: timeouts, typed errors, bounded and safe retries."""

from __future__ import annotations

import socket
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from providers import http
from providers.base import ProviderError


class Scripted:
    """A loopback server answering each request with the next scripted reply."""

    def __init__(self, replies: list[tuple[int, dict, float]]) -> None:
        self.replies = list(replies)  # (status, headers, delay before answering)
        self.seen: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.seen.append(self.command)
                status, headers, delay = outer.replies.pop(0) if outer.replies else (200, {}, 0)
                time.sleep(delay)
                body = b'{"ok": true}'
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/x"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    servers = []

    def make(*replies):
        server = Scripted(list(replies))
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def test_a_get_that_meets_a_server_error_is_retried_until_it_works(serve):
    server = serve((503, {}, 0), (502, {}, 0))
    response = http.request("GET", server.url, retries=2, backoff=0.01)
    assert response.status_code == 200
    assert server.seen == ["GET", "GET", "GET"]


def test_retries_are_bounded_and_end_in_a_typed_retryable_error(serve):
    server = serve((500, {}, 0), (500, {}, 0), (500, {}, 0), (500, {}, 0))
    with pytest.raises(ProviderError) as caught:
        http.request("GET", server.url, retries=2, backoff=0.01)
    assert (caught.value.status, caught.value.retryable, caught.value.code) == (500, True, "provider_unavailable")
    assert len(server.seen) == 3


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_post_that_meets_a_server_error_is_never_sent_again_and_says_the_outcome_is_unknown(serve, status):
    server = serve((status, {}, 0))
    with pytest.raises(http.HttpError) as caught:
        http.request("POST", server.url, retries=2, backoff=0.01, data=b"x")
    assert (caught.value.code, caught.value.retryable, caught.value.status) == (
        "provider_outcome_unknown",
        False,
        status,
    )
    assert "has not been sent again" in caught.value.message and "nothing was charged" in caught.value.message
    assert server.seen == ["POST"]


@pytest.mark.parametrize("status", [429, 503])
def test_a_post_the_provider_did_not_take_is_sent_again(serve, status):
    server = serve((status, {"Retry-After": "0"}, 0))
    assert http.request("POST", server.url, retries=1, data=b"x").status_code == 200
    assert server.seen == ["POST", "POST"]


def test_a_post_refused_beyond_the_retries_stays_retryable_for_the_pipeline(serve):
    server = serve((503, {"Retry-After": "4"}, 0))
    with pytest.raises(http.HttpError) as caught:
        http.request("POST", server.url, retries=0, data=b"x")
    assert (caught.value.code, caught.value.retryable, caught.value.retry_after) == ("provider_unavailable", True, 4.0)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_says_the_operator_must_check_the_named_setting(serve, status):
    server = serve((status, {}, 0))
    remote = http.Remote("Pika", "PIKAPI_BEARER_TOKEN")
    with pytest.raises(http.HttpError) as caught:
        http.request("POST", server.url, retries=2, data=b"x", remote=remote)
    assert caught.value.code == "provider_auth" and not caught.value.retryable
    assert caught.value.message.startswith("Pika refused our API key")
    assert "an operator must check PIKAPI_BEARER_TOKEN" in caught.value.message
    assert server.seen == ["POST"]


def test_a_poll_404_says_the_provider_no_longer_knows_the_job_not_that_results_expired_after_a_day(serve):
    server = serve((404, {}, 0))
    with pytest.raises(http.HttpError) as caught:
        http.request("GET", server.url, retries=2, remote=http.Remote("Stability", "STABILITY_API_KEY"))
    assert caught.value.code == "provider_job_missing" and not caught.value.retryable
    assert caught.value.message.startswith("Stability no longer knows this job")
    assert "API key was changed" in caught.value.message and "24 hours" not in caught.value.message


def test_the_providers_own_words_are_kept_for_staff_and_summarised_for_the_user():
    raw = b'{"error": {"message": "promptText is required"}, "code": 17}'
    error = http.Remote("Pika").error(422, raw, "POST https://pika.example/generate", method="POST")
    assert (error.code, error.retryable) == ("invalid_request", False)
    assert error.message == "Pika rejected the request: promptText is required"
    assert error.detail == f"POST https://pika.example/generate -> 422: {raw.decode()}"
    assert http.error_summary(b'{"errors": ["a", "b"]}') == "a; b"
    assert http.error_summary(b"<html>oops</html>") == ""


def test_a_rate_limited_post_is_retried_after_retry_after(serve):
    server = serve((429, {"Retry-After": "0"}, 0))
    assert http.request("POST", server.url, retries=1, data=b"x").status_code == 200
    assert server.seen == ["POST", "POST"]


def test_a_rate_limit_beyond_the_retries_carries_retry_after(serve):
    server = serve((429, {"Retry-After": "7"}, 0))
    with pytest.raises(http.HttpError) as caught:
        http.request("GET", server.url, retries=0)
    assert (caught.value.code, caught.value.retry_after) == ("rate_limited", 7.0)


def test_a_post_without_an_answer_is_never_repeated_and_says_so(serve):
    server = serve((200, {}, 2.0))
    with pytest.raises(http.HttpError) as caught:
        http.request("POST", server.url, retries=3, timeout=(1, 0.3), data=b"x")
    assert caught.value.code == "provider_outcome_unknown"
    assert caught.value.retryable is False
    assert "cannot tell whether it was accepted" in caught.value.message
    assert server.seen == ["POST"]


def test_a_get_without_an_answer_times_out_as_retryable(serve):
    server = serve((200, {}, 2.0), (200, {}, 2.0))
    with pytest.raises(http.HttpError) as caught:
        http.request("GET", server.url, retries=1, backoff=0.01, timeout=(1, 0.3))
    assert (caught.value.code, caught.value.retryable) == ("provider_timeout", True)
    assert server.seen == ["GET", "GET"]


def test_a_refused_connection_is_unreachable_and_retryable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(http.HttpError) as caught:
        http.request("POST", f"http://127.0.0.1:{port}/", retries=0, data=b"x")
    assert (caught.value.code, caught.value.retryable, caught.value.status) == ("provider_unreachable", True, None)


def test_retry_after_is_read_as_seconds_or_as_a_date():
    assert http.parse_retry_after("12") == 12.0
    assert 25 <= http.parse_retry_after(formatdate(time.time() + 30, usegmt=True)) <= 30
    assert http.parse_retry_after("soon") is None
    assert http.parse_retry_after(None) is None
