"""The project's URLs plus, under /bench/, the same balance read three more ways:

* ``/bench/plain-credits``: a plain Django view (key check and balance read, no DRF, no budget);
* ``/bench/credits-unthrottled``: the API's view with no budget counted (DRF's own cost);
* ``/bench/credits-before``: the API's view with the budget as it was counted before
  (``BeforeThrottle``: per API key, a list of timestamps in Django's file cache, no lock),
  and wrong keys checked as before (``BeforeAuthentication``: never throttled).

``/api/v1/credits`` itself counts with the current ``PerUserThrottle``.
"""

from __future__ import annotations

from django.http import JsonResponse
from django.urls import path
from rest_framework import authentication, exceptions
from rest_framework.throttling import SimpleRateThrottle

from i2v_site.urls import urlpatterns as project_urls
from jobs import ledger
from jobs.api.views import CreditBalance
from jobs.apikeys import authenticate_key


class BeforeThrottle(SimpleRateThrottle):
    """The budget before this change (jobs/api/auth.py PerKeyThrottle at a3f87c4)."""

    scope = "api"

    def get_cache_key(self, request, view):
        if request.auth is not None and hasattr(request.auth, "prefix"):
            ident = f"key:{request.auth.prefix}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class BeforeAuthentication(authentication.BaseAuthentication):
    """API keys as checked before: a wrong key is 401, however many come."""

    def authenticate(self, request):
        scheme, _, raw = authentication.get_authorization_header(request).decode("latin-1").partition(" ")
        if scheme.lower() != "bearer":
            return None
        key = authenticate_key(raw.strip()) if raw.strip() else None
        if key is None:
            raise exceptions.AuthenticationFailed("The API key is missing, wrong or revoked.")
        return key.user, key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="i2v"'


class CreditsBefore(CreditBalance):
    authentication_classes = [BeforeAuthentication]
    throttle_classes = [BeforeThrottle]


class CreditsUnthrottled(CreditBalance):
    throttle_classes = []


def plain_credits(request):
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    key = authenticate_key(raw.strip()) if scheme.lower() == "bearer" else None
    if key is None:
        return JsonResponse({"error": "The API key is missing, wrong or revoked."}, status=401)
    return JsonResponse({"balance": ledger.balance_of(key.user)})


urlpatterns = [
    path("bench/plain-credits", plain_credits),
    path("bench/credits-unthrottled", CreditsUnthrottled.as_view()),
    path("bench/credits-before", CreditsBefore.as_view()),
    *project_urls,
]
