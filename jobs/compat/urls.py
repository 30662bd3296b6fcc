"""Routes of the I2V-compatible endpoint (see ``jobs.compat.i2v``).

Included before the native API's, whose catch-all would answer 404 for it. A
trailing slash is accepted too: a redirect would turn the POST into a GET.
"""

from django.urls import re_path

from jobs.compat import i2v

urlpatterns = [
    re_path(r"^api/v1/i2v/?$", i2v.ImageToVideo.as_view(), name="compat-i2v"),
]
