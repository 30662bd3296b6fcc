"""One POST to a callback URL, through the same checks as a fetched image URL.

The URL must be http(s) with every address public (``SAFE_FETCH_ALLOW`` for
tests and local demos); the connection is pinned to a vetted address, so a DNS
answer that changes after the check cannot move it. Redirects are never
followed (a 3xx is an answer, and a failed delivery): following one would
resend the body, and a callback's headers, to wherever it points. One deadline
bounds the whole attempt, and only the first ``BODY_CAP`` bytes of the answer
are read. The checks and the pinned connection are ``providers.safe_fetch``'s,
so there is one implementation of them.
"""

from __future__ import annotations

from providers import safe_fetch
from providers.safe_fetch import FetchRefused
from providers.safe_fetch import PostAnswer as Answer

BODY_CAP = 2048
USER_AGENT = "i2v-callback/1"
FIELD = "callback URL"

__all__ = ["BODY_CAP", "Answer", "FetchRefused", "post"]


def post(
    url: str, body: bytes, headers: dict[str, str], *, timeout: float, connect_timeout: float | None = None
) -> Answer:
    """POST ``body`` as JSON; the answer, whatever its status. Raises
    ``FetchRefused`` when the URL is refused or no answer came in time."""
    sent = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
    try:
        return safe_fetch.post(
            url,
            body,
            headers=sent,
            timeout=timeout,
            field=f"the {FIELD}",
            body_cap=BODY_CAP,
            connect_timeout=connect_timeout,
        )
    except FetchRefused as exc:
        if exc.code == "too_slow":
            raise FetchRefused(
                "too_slow", f"The {FIELD} did not answer within {timeout:g} s.", detail=exc.detail
            ) from exc
        raise
