"""Routes of the Stability-compatible endpoints (see ``jobs.compat_stability``).

A trailing slash is accepted too: clients of the original wrapper were not all
careful about it, and a redirect would turn their POST into a GET.
"""

from django.urls import re_path

from jobs import compat_stability

urlpatterns = [
    re_path(r"^api/img2video/?$", compat_stability.ImageToVideo.as_view(), name="compat-img2video"),
    re_path(
        r"^api/img2video/result/(?P<generation_id>[^/]+)/?$",
        compat_stability.result,
        name="compat-img2video-result",
    ),
    re_path(r"^processed_videos/(?P<filename>[^/]+)$", compat_stability.processed_video, name="compat-video"),
]
