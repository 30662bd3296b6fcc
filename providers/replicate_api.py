"""Replicate predictions through the ``replicate`` client: create, look, cancel.

Both users of Replicate (the CLIP prompt writer, ``providers.clip``, and the
video provider, ``providers.replicate``) go through these three calls, so the
client is configured and its errors are read in one place:

- the base URL is ``REPLICATE_BASE_URL`` (tests and demos point it at a fake);
- nothing waits: no ``Prefer: wait`` on create (with it the client takes any
  status but ``starting`` as final), and the client's own retry loop is turned
  off, because it sleeps for whatever ``Retry-After`` says (uncapped) inside the
  worker. A 429 or 5xx becomes a retryable ``ProviderError`` carrying the
  ``Retry-After`` instead, and the pipeline decides when to call again;
- outputs are read from the raw prediction (URLs as strings), never through the
  client's ``FileOutput``, which would send our token to whatever host the URL
  names; the callers download them with ``providers.safe_fetch``.

The create rule is the one the shared HTTP helper (``providers.http``) keeps:
a POST that Replicate may have acted on (a 5xx other than 503, a timeout or a
dropped connection after the request was sent, an answer we cannot read) is
an unknown outcome. It is never sent again (that could start, and bill, a
second prediction); the job fails with a message saying so, not charged.
A 429, a 503 or a refused connection cannot have started anything, so those
are retried.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import replicate
from django.conf import settings
from replicate.client import RetryTransport
from replicate.exceptions import ReplicateError

from providers.base import ProviderError
from providers.http import parse_retry_after, sending_work

# A prediction id goes into a URL path: accept only plain id characters.
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# "owner/name" or "owner/name:version"
_REF_RE = re.compile(r"^(?P<owner>[\w.-]+)/(?P<name>[\w.-]+)(?::(?P<version>[0-9a-f]{16,128}))?$")
TIMEOUT = httpx.Timeout(30.0, connect=5.0)

_transport: tuple[int, httpx.HTTPTransport] | None = None
_transport_lock = threading.Lock()


def _shared_transport() -> httpx.HTTPTransport:
    """One connection pool per process for every call: a client of its own
    per call built a new TLS context each time (about 25 ms of CPU, more than
    the rest of a poll) and never reused a connection. Made after the fork, so
    worker processes never share sockets."""
    global _transport
    with _transport_lock:
        if _transport is None or _transport[0] != os.getpid():
            _transport = (os.getpid(), httpx.HTTPTransport(limits=httpx.Limits(max_connections=64)))
        return _transport[1]


ACTIVE = frozenset({"starting", "processing"})
FINAL_FAILED = frozenset({"failed", "canceled", "aborted"})


@dataclass(frozen=True)
class Prediction:
    """The fields of a prediction we use, as Replicate sent them."""

    id: str
    status: str
    output: Any = None
    error: str = ""
    logs: str = ""


def parse_ref(ref: str) -> tuple[str, str, str]:
    """``(owner, name, version)`` of a model reference; version may be ""."""
    match = _REF_RE.match(ref.strip())
    if not match:
        raise ProviderError(
            "This server's Replicate model setting is malformed; an operator must fix it.",
            code="provider_misconfigured",
            detail=f"not owner/name[:version]: {ref!r}",
        )
    return match["owner"], match["name"], match["version"] or ""


class _Call:
    """One configured client, remembering the last response it received (for
    ``Retry-After`` and for the raw body when the client cannot parse it)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.response: httpx.Response | None = None
        token = settings.REPLICATE_API_TOKEN
        if not token:
            raise ProviderError(
                "Replicate is not configured here; an operator must set REPLICATE_API_TOKEN.",
                code="provider_auth",
            )
        self.client = replicate.Client(
            api_token=token,
            base_url=settings.REPLICATE_BASE_URL,
            timeout=TIMEOUT,
            event_hooks={"response": [self._seen]},
            transport=_shared_transport(),
            trust_env=False,  # calls go exactly where the settings say, never through an env proxy
        )
        transport = self.client._client._transport
        if isinstance(transport, RetryTransport):
            # The client would retry 429/503/504 itself, sleeping for any Retry-After.
            transport.max_attempts = 1

    def _seen(self, response: httpx.Response) -> None:
        self.response = response

    def raw_body(self, limit: int | None = 2000) -> str:
        """The last response's body (already in memory: the client read it), cut at ``limit``."""
        if self.response is None:
            return ""
        try:
            return self.response.read()[:limit].decode("utf-8", "replace")
        except httpx.HTTPError:
            return ""

    def retry_after(self) -> float | None:
        return parse_retry_after(self.response.headers.get("Retry-After")) if self.response is not None else None


def _unknown_outcome(what: str, detail: str) -> ProviderError:
    return ProviderError(
        "Replicate stopped answering after our request was sent, so we cannot tell whether it started. "
        "It has not been sent again, to avoid a duplicate; please try again.",
        code="provider_outcome_unknown",
        detail=f"{what}: {detail}",
    )


@contextmanager
def _errors(call: _Call, *, creates: bool) -> Iterator[None]:
    """Turn the client's exceptions into ``ProviderError`` with a readable message."""
    what = call.what
    try:
        yield
    except ReplicateError as exc:
        status = exc.status or 0
        detail = f"{what} -> {status}: {exc.title or ''} {exc.detail or ''}".strip()
        if status in (401, 403):
            raise ProviderError(
                "The server's Replicate token was refused — an operator problem: check REPLICATE_API_TOKEN. "
                "You have not been charged.",
                code="provider_auth",
                detail=detail,
                status=status,
            ) from exc
        if status == 429 or (status >= 500 and not (creates and status != 503)):
            raise ProviderError(
                "Replicate is busy (it asked us to slow down or had a server error); we will try again shortly.",
                retryable=True,
                code="rate_limited" if status == 429 else "provider_unavailable",
                detail=detail,
                retry_after=call.retry_after(),
                status=status,
            ) from exc
        if status >= 500:
            raise _unknown_outcome(what, f"{status}: {exc.detail or exc.title or ''}") from exc
        if status == 404:
            raise ProviderError(
                "Replicate does not know this model or prediction; an operator must check the Replicate settings."
                if creates
                else "Replicate no longer has this prediction.",
                code="provider_misconfigured" if creates else "provider_job_missing",
                detail=detail,
                status=status,
            ) from exc
        raise ProviderError(
            f"Replicate refused the request: {exc.detail or exc.title or status}"[:300],
            code="invalid_request",
            detail=detail,
            status=status,
        ) from exc
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        # Nothing reached Replicate: safe to try again, even a create.
        raise ProviderError(
            "Replicate could not be reached; we will try again shortly.",
            retryable=True,
            code="provider_unreachable",
            detail=f"{what}: {type(exc).__name__}: {exc}",
        ) from exc
    except httpx.HTTPError as exc:
        if creates:
            raise _unknown_outcome(what, f"{type(exc).__name__}: {exc}") from exc
        raise ProviderError(
            "Replicate did not answer in time; we will try again shortly.",
            retryable=True,
            code="provider_timeout",
            detail=f"{what}: {type(exc).__name__}: {exc}",
        ) from exc
    except ValueError as exc:  # not JSON, or a body the client's model refuses
        if creates:
            raise _unknown_outcome(what, f"unreadable answer {call.raw_body()!r}: {exc}") from exc
        raise ProviderError(
            "Replicate sent an answer we could not understand.",
            code="provider_bad_response",
            detail=f"{what}: {call.raw_body()!r}: {exc}",
        ) from exc


def _prediction(prediction: Any) -> Prediction:
    return Prediction(
        id=str(prediction.id),
        status=str(prediction.status),
        output=prediction.output,
        error=str(prediction.error or ""),
        logs=str(prediction.logs or ""),
    )


def create(ref: str, inputs: dict[str, Any], *, webhook: str = "") -> Prediction:
    """Start a prediction of ``ref`` (by version when it names one, else on the
    model's own endpoint, as Replicate's official models want). With
    ``webhook``, Replicate posts the prediction there once it is final (only
    that event: the poll that follows reads everything else)."""
    owner, name, version = parse_ref(ref)
    path = "/v1/predictions" if version else f"/v1/models/{owner}/{name}/predictions"
    call = _Call(f"POST {settings.REPLICATE_BASE_URL}{path}")
    hook: dict[str, Any] = {"webhook": webhook, "webhook_events_filter": ["completed"]} if webhook else {}
    with _errors(call, creates=True):
        sending_work()
        if version:
            prediction = call.client.predictions.create(version=version, input=inputs, **hook)
        else:
            prediction = call.client.models.predictions.create(model=f"{owner}/{name}", input=inputs, **hook)
    found = _prediction(prediction)
    if not _ID_RE.match(found.id):
        raise _unknown_outcome(call.what, f"prediction id {found.id!r}")
    return found


def get(prediction_id: str) -> Prediction:
    """The prediction as Replicate has it now."""
    _check_id(prediction_id)
    call = _Call(f"GET {settings.REPLICATE_BASE_URL}/v1/predictions/{prediction_id}")
    try:
        with _errors(call, creates=False):
            return _prediction(call.client.predictions.get(prediction_id))
    except ProviderError as exc:
        # The client's model does not know "aborted" (a Cancel-After deadline
        # passed): read that one from the raw body.
        aborted = _aborted(call)
        if exc.code == "provider_bad_response" and aborted is not None:
            return aborted
        raise


def cancel(prediction_id: str) -> Prediction:
    """Ask Replicate to stop a prediction; answers it as it is afterwards."""
    _check_id(prediction_id)
    call = _Call(f"POST {settings.REPLICATE_BASE_URL}/v1/predictions/{prediction_id}/cancel")
    with _errors(call, creates=False):
        return _prediction(call.client.predictions.cancel(prediction_id))


def _aborted(call: _Call) -> Prediction | None:
    try:
        body = json.loads(call.raw_body(limit=None))
    except ValueError:
        return None
    if isinstance(body, dict) and body.get("status") == "aborted" and isinstance(body.get("id"), str):
        return Prediction(id=body["id"], status="aborted", error=str(body.get("error") or ""))
    return None


def _check_id(prediction_id: str) -> None:
    if not _ID_RE.match(prediction_id or ""):
        raise ProviderError(
            "Replicate no longer has this prediction.",
            code="provider_job_missing",
            detail=f"malformed prediction id {prediction_id!r}",
        )
