"""The test client on remote storage: a browser follows our redirect to the
storage's presigned URL, so the test client does too.

With ``AWS_STORAGE_BUCKET_NAME`` set, every file link answers 302 to the S3
server (a real one on loopback in CI). Tests written against what a user
observes (the bytes, the 206 and its Content-Range) then follow that redirect
over real HTTP, sending the same Range header, as a browser would. The
redirect itself is asserted in ``tests/test_remote_storage.py``.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from django.conf import settings
from django.http import StreamingHttpResponse
from django.test import Client

# Headers of the storage's answer that the tests look at.
_KEPT = ("Content-Type", "Content-Length", "Content-Range", "Accept-Ranges", "Content-Disposition")


def storage_is_remote() -> bool:
    return bool(getattr(settings, "AWS_STORAGE_BUCKET_NAME", ""))


def _from_storage(url: str, range_header: str | None):
    request = urllib.request.Request(url, headers={"Range": range_header} if range_header else {})
    try:
        answer = urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as error:
        answer = error
    body = answer.read()
    response = StreamingHttpResponse([body], status=answer.status)
    for name in _KEPT:
        if answer.headers.get(name) is not None:
            response[name] = answer.headers[name]
    return response


def follow_storage_redirects(monkeypatch) -> None:
    endpoint = settings.AWS_S3_ENDPOINT_URL or ""
    original = Client.request

    def request(self, **environ):
        response = original(self, **environ)
        location = response.get("Location", "") if response.status_code == 302 else ""
        if not (endpoint and location.startswith(endpoint)):
            return response
        followed = _from_storage(location, environ.get("HTTP_RANGE"))
        for attribute in ("wsgi_request", "request", "client", "templates", "context", "resolver_match"):
            if hasattr(response, attribute):
                setattr(followed, attribute, getattr(response, attribute))
        followed.redirected_from = response
        return followed

    monkeypatch.setattr(Client, "request", request)
