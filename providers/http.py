"""The one HTTP seam for every outbound call to a provider.

Every call has a connect and a read timeout, failures become ``HttpError``
(a ``ProviderError``) that says whether a retry may help, and 429/5xx/timeouts
are retried a bounded number of times with backoff, honouring ``Retry-After``.

The submit rule, for every provider, written here once: **a POST the provider
may have acted on is never sent again.** A POST is retried (here, or later by
the pipeline) only when the provider cannot have started the work: a refused
connection, 429 (rate limited) or 503 (not taking work). Any other 5xx, a
timeout or a connection cut after sending is an unknown outcome: a gateway's
502 or 504 can arrive after the provider accepted the job, so sending it again
could make (and bill) two videos. Such a submit fails, uncharged, with
``provider_outcome_unknown``.

``Remote`` turns the statuses every provider shares into errors a person can
act on (a refused key is the operator's problem and says which setting; a
poll's 404 says the provider no longer knows the job), keeping the provider's
words for staff. ``read_capped`` and ``json_object`` read bounded bodies.
Saving a video (a response body, or a result URL through the safe fetch) is
``providers/results.py``.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import requests

from providers.base import ProviderError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Statuses that say the provider did not take the request: a POST may be sent again.
NOT_TAKEN_STATUSES = frozenset({429, 503})
MAX_RETRY_AFTER = 60.0
ERROR_BODY_BYTES = 16 * 1024
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

_session = requests.Session()
# The session must not pick up proxies or .netrc from the environment: calls
# go exactly where the settings say.
_session.trust_env = False
# Many jobs polled at once by one worker's threads would overflow urllib3's
# default pool of 10 and reconnect every time.
for _scheme in ("http://", "https://"):
    _session.mount(_scheme, requests.adapters.HTTPAdapter(pool_connections=16, pool_maxsize=64))


class HttpError(ProviderError):
    """An HTTP call that failed; ``status`` is None when no response came."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _backoff(attempt: int, retry_after: float | None, base: float) -> float:
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER)
    return base * (2**attempt) * (0.5 + random.random() / 2)


def _outcome_unknown(method: str, url: str, exc: Exception) -> HttpError:
    # The request was sent and no answer came: the provider may have acted on
    # it. Sending it again could start (and bill) the same work twice, so the
    # caller must not retry blindly.
    return HttpError(
        "The provider stopped answering after our request was sent, so we cannot tell whether it was accepted. "
        "It has not been sent again, to avoid a duplicate; nothing was charged, please try again.",
        retryable=False,
        code="provider_outcome_unknown",
        detail=f"{method} {url}: {exc}",
    )


def may_resend(method: str, status: int) -> bool:
    """Whether a request answered ``status`` may be sent again: any idempotent
    call that met 429/5xx, a POST only when the provider did not take it."""
    if method.upper() in IDEMPOTENT_METHODS:
        return status in RETRY_STATUSES
    return status in NOT_TAKEN_STATUSES


_before_sending_work: ContextVar[Callable[[], object] | None] = ContextVar("before_sending_work", default=None)


@contextmanager
def before_sending_work(note: Callable[[], object] | None) -> Iterator[None]:
    """Have ``note`` called once, just before the first request in this block
    that may start work at a provider (a POST) goes out. The pipeline records
    there that a submit's outcome is unknown until its answer is stored: a
    worker that dies before that must not send the job again, while one that
    dies before anything was sent (building the request) may."""
    token = _before_sending_work.set(note)
    try:
        yield
    finally:
        _before_sending_work.reset(token)


def sending_work() -> None:
    """Every sender calls this just before a request that may start work goes out."""
    note = _before_sending_work.get()
    if note is not None:
        _before_sending_work.set(None)
        note()


def request(
    method: str,
    url: str,
    *,
    timeout: tuple[float, float] | float = DEFAULT_TIMEOUT,
    retries: int = 2,
    backoff: float = 0.5,
    ok: tuple[int, ...] = (200, 201, 202, 204),
    remote: Remote | None = None,
    **kwargs: Any,
) -> requests.Response:
    """Send one request; return the response when its status is in ``ok``.

    Raises ``HttpError`` otherwise, made by ``remote`` (the provider's name and
    key setting, for the message), with ``status``, ``retryable``,
    ``retry_after`` and the start of the body in ``detail``. A POST follows
    the submit rule above.
    """
    method = method.upper()
    idempotent = method in IDEMPOTENT_METHODS
    attempt = 0
    while True:
        if not idempotent:
            sending_work()
        try:
            response = _session.request(method, url, timeout=timeout, **kwargs)
        except requests.ConnectionError as exc:
            # A refused connection never reached the server; a reset after
            # sending might have, so only idempotent calls retry those.
            refused = isinstance(exc, requests.exceptions.ConnectTimeout) or "refused" in str(exc).lower()
            if attempt < retries and (idempotent or refused):
                time.sleep(_backoff(attempt, None, backoff))
                attempt += 1
                continue
            if idempotent or refused:
                raise HttpError(
                    "The provider could not be reached.",
                    retryable=True,
                    code="provider_unreachable",
                    detail=f"{method} {url}: {exc}",
                ) from exc
            raise _outcome_unknown(method, url, exc) from exc
        except requests.Timeout as exc:
            if attempt < retries and idempotent:
                time.sleep(_backoff(attempt, None, backoff))
                attempt += 1
                continue
            if idempotent:
                raise HttpError(
                    "The provider did not answer in time.",
                    retryable=True,
                    code="provider_timeout",
                    detail=f"{method} {url}: {exc}",
                ) from exc
            raise _outcome_unknown(method, url, exc) from exc
        except requests.RequestException as exc:
            raise HttpError(
                "The request to the provider failed.",
                retryable=False,
                code="provider_request_failed",
                detail=f"{method} {url}: {exc}",
            ) from exc

        if response.status_code in ok:
            return response

        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        status = response.status_code
        if may_resend(method, status) and attempt < retries:
            response.close()
            time.sleep(_backoff(attempt, retry_after, backoff))
            attempt += 1
            continue
        raise (remote or GENERIC).error_from(response, f"{method} {url}", method=method)


# --- Reading bodies ------------------------------------------------------------


def read_capped(response: requests.Response, limit: int = ERROR_BODY_BYTES) -> bytes:
    """At most ``limit`` bytes of a response body, then close it. An error or
    status body is small, but a broken server may send anything."""
    data = b""
    try:
        for chunk in response.iter_content(8192):
            data += chunk
            if len(data) >= limit:
                break
    except requests.RequestException:
        pass
    finally:
        response.close()
    return data[:limit]


def text(raw: bytes, limit: int = 2000) -> str:
    return raw[:limit].decode("utf-8", "replace")


def json_object(raw: bytes, *, label: str, what: str, status: int = 200) -> dict:
    """``raw`` as a JSON object, or a ``provider_bad_response`` error that
    keeps what the provider sent for staff."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise bad_response(label, f"{what} -> {status}: {text(raw)}", status=status)
    return body


def bad_response(label: str, detail: str, *, status: int | None = 200) -> HttpError:
    return HttpError(
        f"{label} sent an answer we could not understand. Nothing was charged; please try again.",
        code="provider_bad_response",
        detail=detail,
        status=status,
    )


def error_summary(raw: bytes) -> str:
    """The provider's own words from an error body, whatever its shape:
    ``{"errors": [...]}``, ``{"error": "..."}``, ``{"error": {"message": ...}}``,
    ``{"message": ...}`` or ``{"detail": ...}``; "" when there are none."""
    try:
        body = json.loads(raw)
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    for key in ("errors", "error", "message", "detail"):
        value = body.get(key)
        if isinstance(value, dict):
            value = value.get("message") or value.get("detail") or ""
        if isinstance(value, list):
            value = "; ".join(str(item) for item in value)
        if isinstance(value, str) and value.strip():
            return value.strip()[:300]
    return ""


def error_name(raw: bytes) -> str:
    """``name`` of a JSON error body (Stability's ``content_moderation``), or ""."""
    try:
        body = json.loads(raw)
    except ValueError:
        return ""
    name = body.get("name") if isinstance(body, dict) else None
    return name if isinstance(name, str) else ""


# --- Statuses as errors a person can act on ---------------------------------------


@dataclass(frozen=True)
class Remote:
    """A provider as the error messages name it: ``label`` ("Stability") and
    the setting an operator fixes when the key is refused."""

    label: str = "The provider"
    key_setting: str = ""

    def error_from(self, response: requests.Response, what: str, *, method: str = "GET") -> HttpError:
        """The error for a response whose status is not one the caller handles
        (reads a capped piece of the body, then closes it)."""
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raw = read_capped(response)
        return self.error(response.status_code, raw, what, method=method, retry_after=retry_after)

    def error(
        self, status: int, raw: bytes, what: str, *, method: str = "GET", retry_after: float | None = None
    ) -> HttpError:
        """What ``status`` (with body ``raw``) means for the person who owns the
        job; the provider's words stay in ``detail``."""
        label = self.label
        detail = f"{what} -> {status}: {text(raw)}"
        said = error_summary(raw)
        submit = method.upper() not in IDEMPOTENT_METHODS

        def error(message: str, code: str, retryable: bool = False) -> HttpError:
            return HttpError(
                message, retryable=retryable, code=code, detail=detail, retry_after=retry_after, status=status
            )

        if status in (401, 403):
            setting = f"{self.key_setting}" if self.key_setting else "its API key"
            return error(
                f"{label} refused our API key, so the video could not be made: an operator must check "
                f"{setting}. Nothing was charged.",
                "provider_auth",
            )
        if status == 402:
            return error(
                f"The {label} account has run out of credit: an operator must top it up. Nothing was charged.",
                "provider_credits",
            )
        if status == 404 and not submit:
            return error(
                f"{label} no longer knows this job (its result may have expired, or the API key was changed "
                "since it was submitted). Nothing was charged; please try again.",
                "provider_job_missing",
            )
        if status == 413:
            return error(f"{label} refused the image as too large.", "invalid_request")
        if status in (400, 404, 405, 409, 422):
            return error(f"{label} rejected the request" + (f": {said}" if said else "."), "invalid_request")
        if status == 429:
            return error(f"{label} is rate-limiting us; we will try again shortly.", "rate_limited", True)
        if status >= 500 and submit and status not in NOT_TAKEN_STATUSES:
            # The rule of this module: the provider may have taken the job.
            return error(
                f"{label} answered {status} (a server error) to our request, so we cannot tell whether it "
                "started the video. It has not been sent again, to avoid paying twice; nothing was charged, "
                "please try again.",
                "provider_outcome_unknown",
            )
        if status >= 500:
            return error(
                f"{label} had a server error ({status}); we will try again shortly.", "provider_unavailable", True
            )
        return error(f"{label} answered {status} unexpectedly" + (f": {said}" if said else "."), "provider_error")


GENERIC = Remote()
