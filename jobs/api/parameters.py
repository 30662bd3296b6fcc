"""The providers' parameters in the API, made from their declarations (providers/params.py).

The create inputs get one top-level field per provider parameter (``duration``,
``fps``...), named as ``GET /api/v1/providers`` lists them, and the listing
describes each; a new provider's parameters appear in both by themselves.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from providers.params import Param, shared_kind
from providers.registry import declared_parameters


def _parameter_field(declared: list[tuple[str, Param]]) -> serializers.Field:
    """A create field for one provider parameter, read from the declarations.

    Ranges differ between providers, so the field checks only the type;
    ``validate_parameters`` checks the value against the chosen provider's range.
    """
    first = declared[0][1]
    help_text = f"{first.meaning} " + "; ".join(
        f"{provider}: {param.span}, default {param.default}" for provider, param in declared
    )
    # The same name from two providers may differ in kind: take one that fits both.
    kind = shared_kind(param for _, param in declared)
    if kind == "choice":
        choices = list(dict.fromkeys(choice for _, param in declared for choice in param.choices))
        return serializers.ChoiceField(choices=choices, required=False, help_text=help_text)
    if kind == "int":
        return serializers.IntegerField(required=False, help_text=help_text)
    if kind == "text":
        return serializers.CharField(required=False, help_text=help_text)
    return serializers.FloatField(required=False, help_text=help_text)


PROVIDER_PARAMETERS = declared_parameters()
# A base for the create inputs (and the job's parameters output): one field per provider parameter.
ProviderParameterFields = type(
    "ProviderParameterFields",
    (serializers.Serializer,),
    {name: _parameter_field(declared) for name, declared in PROVIDER_PARAMETERS.items()},
)


def provider_parameter_values(validated: dict) -> dict:
    """The provider parameters a create request gave, for ``create_job(extra_params=...)``."""
    return {name: validated[name] for name in PROVIDER_PARAMETERS if name in validated}


@extend_schema_field({"anyOf": [{"type": "number"}, {"type": "string"}]})
class DeclaredValueField(serializers.Field):
    """A bound, default or choice as the provider declares it: whole-number
    parameters stay integers (``127``, not ``127.0``)."""

    def to_representation(self, value):
        return value


class ParameterOutput(serializers.Serializer):
    type = serializers.ChoiceField(choices=["int", "float", "choice"])
    minimum = DeclaredValueField(required=False, help_text="For int and float parameters.")
    maximum = DeclaredValueField(required=False, help_text="For int and float parameters.")
    choices = serializers.ListField(child=DeclaredValueField(), required=False, help_text="For choice parameters.")
    default = DeclaredValueField()
    meaning = serializers.CharField()
    required = serializers.BooleanField()
    unit = serializers.CharField(required=False)
