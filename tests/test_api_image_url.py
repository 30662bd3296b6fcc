"""Creating a job from an image_url: fetched safely, refused clearly."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from jobs.models import Job
from tests.api_helpers import key_client
from tests.factories import photo_bytes

pytestmark = pytest.mark.django_db

PHOTO = photo_bytes(1000, 1000, fmt="PNG")


class ImageServer:
    """Serves a PNG at /photo.png and redirects /go?to=<url>; counts requests."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.hits.append(self.path)
                if self.path.startswith("/go?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path.split("=", 1)[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PHOTO)))
                self.end_headers()
                self.wfile.write(PHOTO)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def image_server():
    server = ImageServer()
    yield server
    server.close()


def create(url: str):
    return key_client().post("/api/v1/jobs", {"image_url": url, "provider": "local"}, format="json")


def test_an_image_url_on_an_allowed_server_makes_a_job(image_server, settings):
    settings.SAFE_FETCH_ALLOW = (f"127.0.0.1:{image_server.port}",)
    response = create(f"http://127.0.0.1:{image_server.port}/photo.png")
    assert response.status_code == 201, response.json()
    assert response.json()["parameters"]["width"] == 768
    assert image_server.hits == ["/photo.png"]
    # Kept, so a provider that fetches images by URL can be given it.
    assert (
        Job.objects.get(pk=response.json()["id"]).upload.source_url == f"http://127.0.0.1:{image_server.port}/photo.png"
    )


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/photo.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/photo.png",
        "http://2130706433:{port}/photo.png",
        "http://localhost:{port}/photo.png",
    ],
)
def test_an_image_url_aimed_at_a_local_address_is_refused_and_nothing_is_fetched(image_server, target):
    response = create(target.format(port=image_server.port))
    assert response.status_code == 400
    error = response.json()["error"]
    assert "image_url" in error["fields"]
    assert "private or local address" in error["message"] or "localhost" in error["message"]
    assert image_server.hits == []
    assert Job.objects.count() == 0


@pytest.mark.parametrize("target", ["http://127.0.0.1:{other}/photo.png", "http://169.254.169.254/", "http://[::1]/"])
def test_a_redirect_to_a_local_address_is_refused(image_server, settings, target):
    settings.SAFE_FETCH_ALLOW = (f"127.0.0.1:{image_server.port}",)
    other = ImageServer()
    try:
        to = target.format(other=other.port)
        response = create(f"http://127.0.0.1:{image_server.port}/go?to={to}")
        assert response.status_code == 400
        assert "image_url redirected to" in response.json()["error"]["message"]
        assert other.hits == []
    finally:
        other.close()
    assert Job.objects.count() == 0


def test_a_non_http_url_is_refused():
    response = key_client().post("/api/v1/jobs", {"image_url": "file:///etc/passwd"}, format="json")
    assert response.status_code == 400
    assert "image_url" in response.json()["error"]["fields"]
