"""Serving result files so a browser can seek in them (HTTP Range, 206).

On the local disk the file is streamed from here. On remote storage (S3 and
the like) the caller has already checked the link and the permissions, so the
answer is a redirect to the storage's presigned, expiring URL: the storage
serves the bytes and the ranges, and no web process relays video.
"""

from __future__ import annotations

import re

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK = 64 * 1024


def _chunks(handle, remaining: int):
    try:
        while remaining > 0:
            data = handle.read(min(CHUNK, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data
    finally:
        handle.close()


def serve_file(request: HttpRequest, name: str, content_type: str, *, download_name: str = "") -> HttpResponse:
    """Stream a stored file, answering a single byte range with 206; on
    remote storage, redirect to a presigned URL for it."""
    if not name or not default_storage.exists(name):
        raise Http404("This file no longer exists (results are deleted after the retention period).")
    if not is_local(default_storage):
        return _redirect_to_storage(name, content_type, download_name)
    size = default_storage.size(name)
    header = request.headers.get("Range", "").strip()
    match = _RANGE.match(header) if header else None
    if header and not match:
        # Multiple or malformed ranges: the whole file is a valid answer.
        match = None
    if match and (match.group(1) or match.group(2)):
        start_s, end_s = match.groups()
        if start_s:
            start = int(start_s)
            end = min(int(end_s), size - 1) if end_s else size - 1
        else:  # a suffix range: the last N bytes
            start = max(size - int(end_s), 0)
            end = size - 1
        if start >= size or start > end:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        handle = default_storage.open(name, "rb")
        handle.seek(start)
        response = StreamingHttpResponse(_chunks(handle, end - start + 1), status=206, content_type=content_type)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(end - start + 1)
    else:
        response = FileResponse(default_storage.open(name, "rb"), content_type=content_type)
        response["Content-Length"] = str(size)
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=3600"
    if download_name:
        response["Content-Disposition"] = f'attachment; filename="{download_name}"'
    return response


def is_local(storage) -> bool:
    """Whether ``storage`` keeps files on this machine's disk (has paths)."""
    try:
        storage.path("probe")
    except NotImplementedError:
        return False
    return True


def _redirect_to_storage(name: str, content_type: str, download_name: str) -> HttpResponse:
    # The storage stores what boto3 guessed from the name; say what we serve.
    parameters = {"ResponseContentType": content_type}
    if download_name:
        parameters["ResponseContentDisposition"] = f'attachment; filename="{download_name}"'
    response = HttpResponseRedirect(default_storage.url(name, parameters=parameters))
    # The presigned URL is a credential of its own: no shared cache may keep it.
    response["Cache-Control"] = "private, no-store"
    return response
