"""What every provider behind an HTTP API with a bearer key shares.

A subclass names its settings (``key_setting``, ``base_url_setting``, and its
poll floor through ``SettingFloor``) and ``remote_name``, the word its
messages use ("Pika"); it is then unavailable, with the reason, while the key
is unset, and its calls go through the shared seam (``providers/http.py``)
with its timeouts, never retrying by themselves: the pipeline decides when to
call again, and a submit follows the seam's rule (never sent twice when the
provider may have taken it). A poll that meets a final answer (a refused key,
a job the provider no longer knows) is a failed state, so the job fails with
that reason; a passing trouble (429, 5xx, no connection) is raised, retryable.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import requests
from django.conf import settings

from providers import http
from providers.base import PollState, Provider, ProviderError

# A provider job id goes into a URL path: accept only plain id characters.
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")  # never "." or ".."


class RemoteProvider(Provider):
    remote_name: ClassVar[str] = ""
    key_setting: ClassVar[str] = ""
    base_url_setting: ClassVar[str] = ""
    timeout: ClassVar[tuple[float, float]] = (5.0, 60.0)  # (connect, read) seconds

    @classmethod
    def remote(cls) -> http.Remote:
        return http.Remote(cls.remote_name, cls.key_setting)

    @classmethod
    def unavailable_reason(cls) -> str:
        if not getattr(settings, cls.key_setting, ""):
            return f"{cls.remote_name} is not configured here: an operator must set {cls.key_setting}."
        return ""

    def url(self, path: str) -> str:
        return str(getattr(settings, self.base_url_setting)).rstrip("/") + path

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(settings, self.key_setting)}", **extra}

    def call(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> requests.Response:
        """One request to ``path`` under the base URL; a status outside ``ok``
        becomes the seam's ``ProviderError``."""
        headers = self.headers(**kwargs.pop("headers", {}))
        return http.request(
            method,
            self.url(path),
            headers=headers,
            timeout=self.timeout,
            retries=0,
            ok=ok,
            remote=self.remote(),
            **kwargs,
        )

    def look(self, provider_job_id: str, path: str, **kwargs: Any) -> requests.Response | PollState:
        """The poll's ``GET``: its response, or a failed state when the answer
        is final for this job (a malformed id, a refused key, a 404)."""
        if not ID_RE.match(provider_job_id or ""):
            return PollState(
                state="failed",
                error_code="provider_job_missing",
                error_message=f"{self.remote_name} no longer knows this job. Nothing was charged; please try again.",
                error_detail=f"malformed id {provider_job_id!r}",
            )
        try:
            return self.call("GET", path, **kwargs)
        except ProviderError as exc:
            if exc.retryable:
                raise
            return PollState(state="failed", error_code=exc.code, error_message=exc.message, error_detail=exc.detail)
