"""A job's files for support staff: the upload, the poster and the video.

No ``/media/`` URL serves anything: every file goes through a view that
decides who may have it. Staff get links signed the way the API signs its
result links (``jobs.links``, expiring after ``RESULT_LINK_SECONDS``),
but a staff link is no bearer link: it opens only for a signed-in, active
staff member allowed to view that model. Anyone else gets 404, as if the
file did not exist. The kinds here ("staff-…") are not the API's ("video",
"poster"), so an API link never opens a staff file and a staff token never
opens an API file.

Files are streamed by ``serving.serve_file``, so the video answers HTTP
Range requests and a browser can seek in it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from jobs import links
from jobs.models import Job, Upload
from jobs.serving import serve_file


@dataclass(frozen=True)
class FileKind:
    model: type[models.Model]
    field: str
    permissions: tuple[str, ...]  # any one of them will do
    content_type: str = ""  # empty: from the upload's detected format


KINDS = {
    "staff-video": FileKind(Job, "video", ("jobs.view_job",), "video/mp4"),
    "staff-poster": FileKind(Job, "poster", ("jobs.view_job",), "image/jpeg"),
    # Whoever may read a job may see the image it was made from.
    "staff-original": FileKind(Upload, "original", ("jobs.view_upload", "jobs.view_job")),
    "staff-normalized": FileKind(Upload, "normalized", ("jobs.view_upload", "jobs.view_job"), "image/png"),
}
ORIGINAL_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}


def staff_file_url(obj: Job | Upload, kind: str) -> str:
    """A link to one of ``obj``'s files for staff, or "" when it has none (yet, or any more)."""
    spec = KINDS[kind]
    assert isinstance(obj, spec.model), f"{kind} is a file of a {spec.model.__name__}"
    if not getattr(obj, spec.field):
        return ""
    return f"{reverse('staff-file', args=[kind, obj.pk])}?token={links.sign(obj.pk, kind)}"


def may_see_files(user, kind: str) -> bool:
    spec = KINDS.get(kind)
    if spec is None or not (user.is_active and user.is_staff):
        return False
    return any(user.has_perm(permission) for permission in spec.permissions)


@require_GET
def staff_file(request: HttpRequest, kind: str, pk) -> HttpResponse:
    """Serve a staff link's file, or 404 to anyone who is not staff allowed to see it."""
    token = request.GET.get("token", "")
    if not (may_see_files(request.user, kind) and token and links.check(pk, kind, token)):
        raise Http404("No such file.")
    spec = KINDS[kind]
    obj = spec.model.objects.filter(pk=pk).first()
    field = getattr(obj, spec.field, None)
    if not field:
        raise Http404("This file no longer exists.")
    content_type = spec.content_type or ORIGINAL_TYPES.get(obj.format, "application/octet-stream")
    return serve_file(request, field.name, content_type)
