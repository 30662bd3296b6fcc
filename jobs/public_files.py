"""Files reachable by anyone holding a signed link: what a provider that
fetches its input by URL (Pika, Kling) is given. Nothing else is public."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from jobs import links
from jobs.models import Upload
from jobs.serving import serve_file


@require_GET
def public_image(request: HttpRequest, upload_id) -> HttpResponse:
    """An upload's normalised image (PNG), for the link's lifetime; 404 otherwise."""
    token = request.GET.get("token", "")
    if not (token and links.check(upload_id, links.IMAGE, token)):
        raise Http404("No such image.")
    upload = Upload.objects.filter(pk=upload_id).only("normalized").first()
    if upload is None or not upload.normalized:
        raise Http404("No such image.")
    return serve_file(request, upload.normalized.name, "image/png")
