"""The one HTTP helper for every outbound call.

Every call has a connect and a read timeout, failures become ``HttpError``
(a ``ProviderError``) that says whether a retry may help, and 429/5xx/timeouts
are retried a bounded number of times with backoff, honouring ``Retry-After``.
POSTs are retried only when the server cannot have acted on them (429, or a
refused connection), so a flaky network never submits a job twice.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from typing import Any

import requests

from providers.base import ProviderError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 60.0

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
        "It has not been sent again, to avoid a duplicate; please try again.",
        retryable=False,
        code="provider_outcome_unknown",
        detail=f"{method} {url}: {exc}",
    )


def request(
    method: str,
    url: str,
    *,
    timeout: tuple[float, float] | float = DEFAULT_TIMEOUT,
    retries: int = 2,
    backoff: float = 0.5,
    ok: tuple[int, ...] = (200, 201, 202, 204),
    **kwargs: Any,
) -> requests.Response:
    """Send one request; return the response when its status is in ``ok``.

    Raises ``HttpError`` otherwise, with ``status``, ``retryable``,
    ``retry_after`` and the start of the body in ``detail``.
    """
    method = method.upper()
    idempotent = method in {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}
    attempt = 0
    while True:
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
        retryable = response.status_code in RETRY_STATUSES
        can_retry = retryable and (idempotent or response.status_code == 429)
        if can_retry and attempt < retries:
            response.close()
            time.sleep(_backoff(attempt, retry_after, backoff))
            attempt += 1
            continue
        # Error bodies are small, but read a bounded piece in case one is not.
        body = next(response.iter_content(2000), b"").decode("utf-8", "replace")
        response.close()
        raise HttpError(
            f"The provider answered {response.status_code}.",
            retryable=retryable,
            code="rate_limited" if response.status_code == 429 else f"http_{response.status_code}",
            detail=f"{method} {url} -> {response.status_code}: {body}",
            retry_after=retry_after,
            status=response.status_code,
        )
