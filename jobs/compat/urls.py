"""Routes of the compatibility endpoints under ``jobs.compat``.

Included before the native API's, whose catch-all would answer 404 for them. A
trailing slash is accepted too: a redirect would turn a POST into a GET.

Queue model ids may hold slashes (``kling-video/v1/standard/image-to-video``),
so the request routes come first and take the last ``/requests/{id}`` of the
path; a model id never has a ``requests`` segment of its own.
"""

from django.urls import re_path

from jobs.compat import i2v, queue

_SEGMENT = r"(?!requests(?:/|$))[^/]+"
_MODEL = rf"(?P<model_id>{_SEGMENT}(?:/{_SEGMENT})*)"
_REQUEST = r"(?P<request_id>[^/]+)"

urlpatterns = [
    re_path(r"^api/v1/i2v/?$", i2v.ImageToVideo.as_view(), name="compat-i2v"),
    re_path(rf"^queue/{_MODEL}/requests/{_REQUEST}/status/?$", queue.status, name="queue-status"),
    re_path(rf"^queue/{_MODEL}/requests/{_REQUEST}/cancel/?$", queue.Cancel.as_view(), name="queue-cancel"),
    re_path(rf"^queue/{_MODEL}/requests/{_REQUEST}/?$", queue.Result.as_view(), name="queue-result"),
    re_path(rf"^queue/{_MODEL}/?$", queue.Submit.as_view(), name="queue-submit"),
    re_path(r"^queue(?:/[\s\S]*)?$", queue.not_found, name="queue-not-found"),
]
