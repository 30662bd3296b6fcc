"""One POST to a callback URL, through the same checks as a fetched image URL.

The URL must be http(s) with every address public (``SAFE_FETCH_ALLOW`` for
tests and local demos); the connection is pinned to a vetted address, so a DNS
answer that changes after the check cannot move it. Redirects are never
followed (a 3xx is an answer, and a failed delivery): following one would
resend the body, and a callback's headers, to wherever it points. One deadline
bounds the whole attempt, and only the first ``BODY_CAP`` bytes of the answer
are read.

The pinned connection is ``providers.safe_fetch``'s own machinery, reused so
there is one implementation of the address checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from providers.safe_fetch import FetchRefused, _check, _Deadline, _Pin, _pool, _Refuser

BODY_CAP = 2048
USER_AGENT = "i2v-callback/1"
FIELD = "callback URL"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes  # at most BODY_CAP bytes


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> Answer:
    """POST ``body`` as JSON; the answer, whatever its status. Raises
    ``FetchRefused`` when the URL is refused or no answer came in time."""
    clock = _Deadline(timeout)
    refuse = _Refuser(FIELD, redirected=False)
    try:
        checked = _check(url, FIELD, redirected=False, timeout=max(clock.remaining(), 0.0))
        sent = {
            "Host": checked.host_header,
            "Content-Type": "application/json",
            "Accept": "*/*",
            "Accept-Encoding": "identity",
            "User-Agent": USER_AGENT,
            "Connection": "close",
            **headers,
        }
        problem: Exception | None = None
        for address in checked.addresses:
            remaining = clock.remaining()
            if remaining <= 0:
                break
            pool = _pool(checked, address, _Pin(address, checked.port, clock, refuse))
            try:
                response = pool.urlopen(
                    "POST",
                    checked.target,
                    body=body,
                    headers=sent,
                    retries=False,
                    redirect=False,
                    assert_same_host=False,
                    preload_content=False,
                    decode_content=False,
                    release_conn=False,
                    timeout=urllib3.Timeout(connect=remaining, read=remaining),
                )
            except (NewConnectionError, ConnectTimeoutError) as exc:
                pool.close()  # nothing was sent: another address may answer
                problem = exc
                continue
            except FetchRefused:
                pool.close()
                raise
            except (HTTPError, OSError) as exc:
                pool.close()
                if clock.fired or isinstance(exc, Urllib3Timeout | TimeoutError):
                    raise FetchRefused("too_slow", f"The {FIELD} did not answer within {timeout:g} s.") from exc
                raise FetchRefused(
                    "unreachable",
                    f"The server at the {FIELD} closed the connection without answering.",
                    detail=str(exc),
                ) from exc
            try:
                try:
                    data = response.read(BODY_CAP)
                except (HTTPError, OSError):
                    data = b""  # the status is the answer; a cut body does not change it
                return Answer(response.status, data or b"")
            finally:
                response.close()
                pool.close()
        if clock.fired or clock.remaining() <= 0:
            raise FetchRefused("too_slow", f"The {FIELD} did not answer within {timeout:g} s.", detail=str(problem))
        raise FetchRefused("unreachable", f"The server at the {FIELD} could not be reached.", detail=str(problem or ""))
    finally:
        clock.stop()
