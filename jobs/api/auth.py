"""Bearer API keys for integrators (the pages keep using the session), and the
request budgets that guard them.

Two budgets, both counted atomically across web processes by
``jobs.api.ratelimit``:

* ``API_RATE`` per user: one budget shared by all of a user's keys and their
  session, so five keys do not make five budgets.
* ``API_AUTH_FAILURE_RATE`` per client address for failed key checks (a wrong,
  unknown or revoked key). Once an address has used it up, every key it sends
  is answered 429 until the window ends, a valid one too: otherwise a guesser
  would still learn which guess was right. The address is ``REMOTE_ADDR``, or,
  behind ``API_TRUSTED_PROXIES`` proxies, the address the outermost trusted
  proxy put into ``X-Forwarded-For``; IPv6 clients are counted per /64, the
  block one subscriber usually gets.

A key is looked up before its address's budget is looked at, so that for a
right key on a throttled API view the look and the user's count are one round
trip (``check_key``); the user's budget is thus counted before DRF's
permission checks, which a right key always passes here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.throttling import SimpleRateThrottle

from jobs.api import ratelimit
from jobs.apikeys import find_key, note_use
from jobs.models import ApiKey

HOW_TO_SEND = "Send your API key as 'Authorization: Bearer <key>'."


def client_address(request) -> str:
    """The address a budget is counted against (see the module's docstring)."""
    meta = request.META
    address = meta.get("REMOTE_ADDR") or ""
    proxies = settings.API_TRUSTED_PROXIES
    forwarded = [part.strip() for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if proxies and forwarded:
        # Each trusted proxy appends the address it saw; anything further left was written by the client.
        address = forwarded[-min(proxies, len(forwarded))]
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 6:
        if parsed.ipv4_mapped:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def _failure_budget() -> tuple[int, int]:
    num, period = SimpleRateThrottle.parse_rate(None, settings.API_AUTH_FAILURE_RATE)
    return num, period


class TooManyFailedKeys(exceptions.Throttled):
    default_detail = "Too many wrong API keys were sent from your address."


def check_key(raw: str, request, *, then_count: Callable[[ApiKey], tuple[str, int]] | None = None) -> ApiKey | None:
    """The active key ``raw`` names, or None. Every endpoint that takes a key checks it here.

    A wrong key spends the client address's failure budget; once that is used
    up, every key from the address is refused with ``TooManyFailedKeys``, a
    right one too. The key is looked up before the address's budget is looked
    at: the answer is the same either way, and a right key's look can then go
    together with the count of its user's budget (``then_count`` names the
    bucket and period): one round trip to a shared cache instead of two. That
    count is left on the request for ``PerUserThrottle``.
    """
    bucket = f"auth-failure:{client_address(request)}"
    limit, period = _failure_budget()
    counter = ratelimit.counter()
    key = find_key(raw)
    if key is None:
        failed = counter.hit(bucket, period)
        if failed.count > limit:
            raise TooManyFailedKeys(wait=failed.resets_in)
        return None
    if then_count is None:
        seen = counter.peek(bucket, period)
        spent = seen if seen.count >= limit else None
    else:
        user_bucket, user_period = then_count(key)
        outcome = counter.hit_unless_spent(bucket, period, limit, user_bucket, user_period)
        spent = outcome.spent
        if outcome.counted is not None:
            request.i2v_budget_counted = (user_bucket, outcome.counted)
    if spent is not None:
        raise TooManyFailedKeys(wait=spent.resets_in)
    note_use(key)  # only for a request the key is let through with
    return key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer":
            if getattr(request._request, "user", None) is not None and request._request.user.is_authenticated:
                return None  # a signed-in page behind a proxy that adds its own Authorization
            if raw or (scheme.isalpha() and len(scheme) <= 20):
                problem = f"The Authorization header uses the {scheme[:20]!r} scheme, which this API does not take."
            else:
                problem = "The Authorization header holds a bare value without the 'Bearer' scheme."
            raise exceptions.AuthenticationFailed(f"{problem} {HOW_TO_SEND}")
        raw = raw.strip()
        if not raw:
            raise exceptions.AuthenticationFailed(f"The Authorization header has no key after 'Bearer'. {HOW_TO_SEND}")
        throttle = PerUserThrottle.of_view((request.parser_context or {}).get("view"))
        then_count = throttle and (lambda key: (throttle.bucket(key.user), throttle.duration))
        key = check_key(raw, request, then_count=then_count)
        if key is None:
            raise exceptions.AuthenticationFailed("The API key is missing, wrong or revoked.")
        return key.user, key

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 with WWW-Authenticate, not 403, when no key came.
        return 'Bearer realm="i2v"'


class PerUserThrottle(SimpleRateThrottle):
    """``API_RATE`` per user across all their keys and their session (per client
    address for the few endpoints open without one), answered with 429 and
    Retry-After. Fixed windows of one period: a client can spend its budget at
    the end of one window and again at the start of the next."""

    scope = "api"

    @classmethod
    def of_view(cls, view) -> PerUserThrottle | None:
        """The view's own budget, when it counts one: a key's check counts it
        then (``check_key``), and ``allow_request`` reads that count."""
        if view is None:
            return None
        return next((t for t in view.get_throttles() if isinstance(t, cls) and t.rate is not None), None)

    def bucket(self, user) -> str:
        return f"{self.scope}:user:{user.pk}"

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        user = request.user
        if user is not None and user.is_authenticated:
            bucket = self.bucket(user)
        else:
            bucket = f"{self.scope}:ip:{client_address(request)}"
        already = request.__dict__.pop("i2v_budget_counted", None)
        if already is not None and already[0] == bucket:
            counted = already[1]
        else:
            counted = ratelimit.counter().hit(bucket, self.duration)
        self._resets_in = counted.resets_in
        return counted.count <= self.num_requests

    def wait(self) -> float:
        return self._resets_in


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Tells the OpenAPI schema how the API key is sent."""

    target_class = ApiKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API key: `Authorization: Bearer i2v_…`"}
