"""Saving a provider's video: from a response body, or from a result URL.

Three ways a remote provider hands over its video, one function each:

- ``save_video(response, path, ...)``: the body of a response we already hold
  (Stability's result ``GET``);
- ``save_base64_video(response, path, ...)``: a base64 video inside a JSON
  body (Pipelet's ``video.data_uri``), decoded as it streams in;
- ``download_video(url, path, ...)``: a URL the provider names (Pika's
  ``resultUrl``, Replicate's outputs), fetched through the safe fetch (public
  addresses only: the URL is the provider's word, and we do not let it point
  us inside our own network; ``SAFE_FETCH_ALLOW`` lets tests reach 127.0.0.1).

Each streams to a temporary file next to ``path`` under a byte cap, checks that
it is a playable MP4 (``video_problem``), and only then moves it into place,
so ``path`` is either absent or a whole video: a poll repeated after a crash
overwrites the same file and leaves no scraps. Every failure is a
``ProviderError`` a person can read, with what went wrong kept in ``detail``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import requests

from providers import data_uri, safe_fetch
from providers.base import ProviderError

CHUNK_BYTES = 64 * 1024
# A few-second clip is a few MB; anything far larger is not a result.
MAX_VIDEO_BYTES = 200 * 1024 * 1024
# Fetch statuses that a later try may cure: the host is down or slow, not the link dead.
_PASSING_FETCH_PROBLEMS = frozenset({"unreachable", "too_slow", "unresolvable"})


@contextlib.contextmanager
def _staged(path: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """A temporary file beside ``path``, removed unless the caller moved it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out, tmp
    finally:
        tmp.unlink(missing_ok=True)


def _check_and_place(tmp: Path, path: Path, *, label: str, what: str, received: int, whole: bool = False) -> None:
    problem = video_problem(tmp)
    if problem and whole:
        # The body arrived complete (its JSON closed): fetching again gives the same bytes.
        raise ProviderError(
            f"{label} sent a video that cannot be played. Nothing was charged; please try again.",
            code="bad_video",
            detail=f"{what}: {received} bytes decoded: {problem}",
            status=200,
        )
    if problem:
        # A copy cut short is cured by fetching again (results are kept a while).
        raise ProviderError(
            f"{label} sent a damaged video; we will fetch it again.",
            retryable=True,
            code="bad_video",
            detail=f"{what}: {received} bytes: {problem}",
            status=200,
        )
    os.replace(tmp, path)


def save_video(
    response: requests.Response, path: Path, *, label: str, what: str, max_bytes: int = MAX_VIDEO_BYTES
) -> int:
    """Stream ``response``'s body to ``path`` (capped, checked, atomic); closes
    the response. Returns the number of bytes saved."""
    path = Path(path)
    received = 0
    with _staged(path) as (out, tmp):
        try:
            for chunk in response.iter_content(CHUNK_BYTES):
                received += len(chunk)
                if received > max_bytes:
                    raise ProviderError(
                        f"{label} sent a video far larger than expected.",
                        code="provider_bad_response",
                        detail=f"{what}: more than {max_bytes} bytes",
                        status=200,
                    )
                out.write(chunk)
        except requests.RequestException as exc:
            raise ProviderError(
                f"The video download from {label} was interrupted; we will fetch it again.",
                retryable=True,
                code="bad_video",
                detail=f"{what}: interrupted after {received} bytes: {exc}",
                status=200,
            ) from exc
        finally:
            response.close()
        out.close()
        _check_and_place(tmp, path, label=label, what=what, received=received)
    return received


def save_base64_video(
    response: requests.Response,
    path: Path,
    *,
    label: str,
    what: str,
    max_bytes: int = MAX_VIDEO_BYTES,
    fields: tuple[tuple[str, ...], ...] = (("video", "data_uri"), ("video", "data_url")),
) -> data_uri.Found:
    """Decode the base64 video at ``fields`` of ``response``'s JSON body to
    ``path`` while the body streams in (``providers/data_uri.py``), then check
    it and move it into place; closes the response. When the field holds an
    http(s) link instead, nothing is written and ``Found.link`` is it: the
    caller downloads it (``download_video``)."""
    path = Path(path)
    with _staged(path) as (out, tmp):
        try:
            found = data_uri.extract(response.iter_content(CHUNK_BYTES), out, max_bytes=max_bytes, fields=fields)
        except data_uri.DataUriError as exc:
            raise _data_uri_error(exc, label=label, what=what) from exc
        except requests.RequestException as exc:
            raise ProviderError(
                f"The video download from {label} was interrupted; we will fetch it again.",
                retryable=True,
                code="bad_video",
                detail=f"{what}: interrupted after {out.tell()} bytes decoded: {exc}",
                status=200,
            ) from exc
        finally:
            response.close()
        if found.link:
            return found
        out.close()
        _check_and_place(tmp, path, label=label, what=what, received=found.size, whole=True)
    return found


def _data_uri_error(exc: data_uri.DataUriError, *, label: str, what: str) -> ProviderError:
    detail = f"{what}: {exc.message}; the body began {exc.body_start[:500]!r}"
    # A body cut short in transit raised a RequestException already (a retry);
    # one that arrived whole and still ends inside its JSON is simply malformed.
    if exc.problem == "bad_base64":
        message = f"{label} sent a video we could not decode. Nothing was charged; please try again."
        return ProviderError(message, code="bad_video", detail=detail, status=200)
    if exc.problem == "missing":
        message = f"{label} finished without sending the video. Nothing was charged; please try again."
    elif exc.problem == "too_large":
        message = f"{label} sent a video far larger than expected. Nothing was charged; please try again."
    else:
        message = f"{label} sent an answer we could not understand. Nothing was charged; please try again."
    return ProviderError(message, code="provider_bad_response", detail=detail, status=200)


def download_video(
    url: str,
    path: Path,
    *,
    max_bytes: int = MAX_VIDEO_BYTES,
    deadline: float = 120.0,
    label: str = "The provider",
) -> int:
    """Download the result at ``url`` to ``path`` and check it is a playable
    MP4; returns its size in bytes.

    Through the safe fetch: public addresses only, at most ``max_bytes``, all
    within ``deadline`` seconds. Raises ``ProviderError``: ``result_unavailable``
    for a link that is dead or refused (not retryable: the same link will not
    come back), retryable ``result_unreachable`` for a host that is down or
    slow, ``bad_video`` for something that is not a video (not retryable) or a
    damaged copy (retryable: fetch again).
    """
    path = Path(path)
    what = f"GET {url[:500]}"
    with _staged(path) as (out, tmp):
        try:
            fetched = safe_fetch.fetch(
                url, max_bytes=max_bytes, deadline=deadline, accept="video/*", field="the result URL", out=out
            )
        except safe_fetch.FetchRefused as exc:
            retryable = exc.code in _PASSING_FETCH_PROBLEMS or (exc.status or 0) >= 500
            if retryable:
                message = f"{label}'s result could not be downloaded just now; we will try again."
                code = "result_unreachable"
            else:
                message = (
                    f"{label} finished, but its video could not be downloaded ({exc.message}). Nothing was charged."
                )
                code = "result_unavailable"
            raise ProviderError(
                message, retryable=retryable, code=code, detail=f"{what}: {exc.code}: {exc.message} {exc.detail}"
            ) from exc
        received = out.tell()
        out.close()
        content_type = fetched.content_type.split(";")[0].strip().lower()
        if content_type and not content_type.startswith(("video/", "application/octet-stream", "binary/")):
            raise ProviderError(
                f"{label}'s result was not a video. Nothing was charged; please try again.",
                code="bad_video",
                detail=f"{what}: {content_type}, {received} bytes: {tmp.read_bytes()[:300]!r}",
            )
        _check_and_place(tmp, path, label=label, what=what, received=received)
    return received


def video_problem(path: Path) -> str:
    """Why the file at ``path`` is not a playable MP4, or "" when it is.

    Opens the container, requires an MP4 with a video stream, reads every
    packet the index promises (a file cut short after its index still opens,
    but its last packets come back short or missing) and decodes the first
    frame. Decoding every frame would cost ten times as much for little more.
    """
    import av

    try:
        with av.open(str(path), mode="r") as container:
            if "mp4" not in container.format.name.split(","):
                return f"not an MP4 ({container.format.name})"
            if not container.streams.video:
                return "no video stream"
            stream = container.streams.video[0]
            stream.thread_count = 1  # one frame: threads cost more than they save
            expected = stream.frames
            packets = 0
            decoded = False
            for packet in container.demux(stream):
                if packet.size == 0:  # the demuxer's end-of-stream marker
                    continue
                if packet.is_corrupt:
                    return f"packet {packets} is cut short or damaged"
                packets += 1
                if not decoded:
                    decoded = any(True for _frame in packet.decode())
            if not decoded:
                decoded = any(True for _frame in stream.codec_context.decode(None))
    except Exception as exc:  # PyAV raises FFmpegError subclasses, and others on junk
        return f"{type(exc).__name__}: {exc}"
    if not decoded:
        return "no decodable frame"
    if expected and packets < expected:
        return f"{packets} of {expected} frames present"
    return ""
