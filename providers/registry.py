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
    "pipelet": "providers.pipelet.PipeletProvider",
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


def cost_of(name: str, model: str | None = None) -> int:
    """Credits for one successful job of ``model`` (the provider's first when
    not given). ``PROVIDER_COSTS`` overrides the declaration: a
    ``provider/model`` entry for that model, else a ``provider`` entry for all
    its models; without either, the model's own cost (``model_costs``), else
    the provider's ``cost``."""
    cls = provider_class(name)
    model = model or cls.models[0]
    for key in (f"{name}/{model}", name):
        override = settings.PROVIDER_COSTS.get(key)
        if override not in (None, ""):
            return int(override)
    return int(cls.model_costs.get(model, cls.cost))


def model_costs(name: str) -> dict[str, int]:
    """Each model's cost (``cost_of``), in the order the provider lists them."""
    return {model: cost_of(name, model) for model in provider_class(name).models}


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
