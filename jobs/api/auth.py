"""Bearer API keys for integrators; the pages keep using the session."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.throttling import SimpleRateThrottle

from jobs.apikeys import authenticate_key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        raw = raw.strip()
        key = authenticate_key(raw) if raw else None
        if key is None:
            raise exceptions.AuthenticationFailed("The API key is missing, wrong or revoked.")
        return key.user, key

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 with WWW-Authenticate, not 403, when no key came.
        return 'Bearer realm="i2v"'


class PerKeyThrottle(SimpleRateThrottle):
    """A budget per API key (or per user for the session), answered with 429 and Retry-After."""

    scope = "api"

    def get_cache_key(self, request, view):
        if request.auth is not None and hasattr(request.auth, "prefix"):
            ident = f"key:{request.auth.prefix}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Tells the OpenAPI schema how the API key is sent."""

    target_class = ApiKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API key: `Authorization: Bearer i2v_…`"}
