"""Provider names to classes, and which of them settings enable."""

from __future__ import annotations

from functools import cache
from importlib import import_module

from django.conf import settings

from providers.base import Provider
from providers.params import Param, shown_values, specific

# Dotted paths, imported on first use so an unused provider costs nothing.
PROVIDERS: dict[str, str] = {
    "local": "providers.local.LocalProvider",
    "stability": "providers.stability.StabilityProvider",
    "pika": "providers.pika.PikaProvider",
    "replicate": "providers.replicate.ReplicateProvider",
    "kling": "providers.kling.KlingProvider",
}


class UnknownProvider(LookupError):
    pass


@cache
def provider_class(name: str) -> type[Provider]:
    try:
        dotted = PROVIDERS[name]
    except KeyError:
        raise UnknownProvider(f"Unknown provider {name!r}; choose one of {', '.join(PROVIDERS)}.") from None
    module, _, attr = dotted.rpartition(".")
    return getattr(import_module(module), attr)


def get_provider(name: str) -> Provider:
    """An instance of the named provider (enabled or not)."""
    return provider_class(name)()


def enabled_providers() -> list[type[Provider]]:
    return [provider_class(name) for name in PROVIDERS if provider_class(name).is_enabled()]


def cost_of(name: str) -> int:
    """Credits for one successful job; settings may override the registry."""
    override = settings.PROVIDER_COSTS.get(name)
    return int(override) if override not in (None, "") else provider_class(name).cost


def declared_parameters() -> dict[str, list[tuple[str, Param]]]:
    """Every provider's own parameters (beyond the common ones) by name, each
    with the providers that declare it: what the API's create fields and the
    dashboard's controls are made from."""
    found: dict[str, list[tuple[str, Param]]] = {}
    for name in PROVIDERS:
        for param in specific(provider_class(name).parameters):
            found.setdefault(param.name, []).append((name, param))
    return found


def provider_settings(job) -> list[tuple[str, str]]:
    """The job's values of its provider's own parameters, labelled from the
    provider's declaration (``[("Duration", "5 s"), ...]``)."""
    try:
        declared = provider_class(job.provider).parameters
    except UnknownProvider:
        return []
    return shown_values(declared, job.extra_params or {})
