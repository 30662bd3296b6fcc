"""The dashboard's job forms. They parse and label input; the rules stay in
``jobs.creation`` (``validate_parameters``), which the create form calls."""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.conf import settings

from jobs.creation import JobInputError, validate_parameters
from jobs.intake import FRAMINGS
from jobs.models import Job
from providers.base import Provider
from providers.params import CFG_SCALE, MOTION_BUCKET_ID, SEED_MAX, Param, format_number, shared_kind, specific
from providers.registry import PROVIDERS, cost_of, declared_parameters, model_costs, provider_class

FRAMING_LABELS = {"landscape": "Landscape", "portrait": "Portrait", "square": "Square"}


@dataclass(frozen=True)
class ProviderOption:
    """What the create page tells about one provider."""

    name: str
    label: str
    cost: int
    available: bool
    models: tuple[str, ...]
    needs_prompt: bool
    parameters: tuple[Param, ...] = ()  # its own, beyond the common ones
    accepts_tail_image: bool = False
    unavailable_reason: str = ""  # why it cannot be chosen here ("" when it can)
    model_costs: dict[str, int] | None = None  # each model's cost, when they differ
    takes: tuple[str, ...] = ()  # every parameter it declares, the common ones included

    @property
    def cost_label(self) -> str:
        costs = sorted(set((self.model_costs or {}).values()))
        if len(costs) > 1:
            return f"{costs[0]}–{costs[-1]} credits by model"
        return credits_label(self.cost)

    def cost_of(self, model: str | None) -> int:
        return (self.model_costs or {}).get(model or "", self.cost)

    def cost_label_for(self, model: str | None) -> str:
        return credits_label(self.cost_of(model))

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "cost": self.cost,
            "model_costs": dict(self.model_costs or {}),
            "available": self.available,
            "unavailable_reason": self.unavailable_reason,
            "models": list(self.models),
            "needs_prompt": self.needs_prompt,
            "accepts_tail_image": self.accepts_tail_image,
            "parameters": [control_data(param) for param in self.parameters],
            "takes": list(self.takes),
        }


def credits_label(cost: int) -> str:
    return f"{cost} credit{'s' if cost != 1 else ''}"


def control_data(param: Param) -> dict:
    """What the page's script needs to set a control up for ``param``."""
    return {
        "name": param.name,
        "type": param.kind,
        "label": param.title,
        "meaning": param.meaning,
        "minimum": param.minimum,
        "maximum": param.maximum,
        "step": param.step or (1 if param.kind == "int" else 0.1),
        "default": param.default,
        "choices": list(param.choices),
        "unit": param.unit,
    }


@dataclass(frozen=True)
class ParameterControl:
    """One provider parameter's control on the create page, set up for the
    chosen provider (``param`` is None when that provider does not take it:
    the control is then hidden and disabled)."""

    field: forms.BoundField
    param: Param | None

    @property
    def name(self) -> str:
        return self.field.name

    @property
    def value(self):
        given = self.field.value()
        if given not in (None, ""):
            return given
        return self.param.default if self.param else ""

    @property
    def is_choice(self) -> bool:
        """A list to pick from, also while hidden for a provider that does not
        take it (the page's script fills the options in when one that does is chosen)."""
        return self.param.kind == "choice" if self.param else isinstance(self.field.field, forms.ChoiceField)

    @property
    def choices(self) -> list[str]:
        if self.param:
            return [str(choice) for choice in self.param.choices]
        return [str(value) for value, _ in self.field.field.choices] if self.is_choice else []

    @property
    def low(self) -> str:
        return format_number(self.param.minimum) if self.param and self.param.minimum is not None else ""

    @property
    def high(self) -> str:
        return format_number(self.param.maximum) if self.param and self.param.maximum is not None else ""

    @property
    def step(self) -> str:
        if not self.param:
            return "1"
        return format_number(self.param.step or (1 if self.param.kind == "int" else 0.1))


def provider_options() -> list[ProviderOption]:
    """Every provider this build knows, available or not (the page says which
    and why). The page takes uploads, which have no URL of their own: a
    provider that fetches the image by URL needs PUBLIC_BASE_URL here."""
    options = []
    for name in PROVIDERS:
        cls: type[Provider] = provider_class(name)
        reason = cls.upload_unavailable_reason()
        options.append(
            ProviderOption(
                name=name,
                label=cls.label or name,
                cost=cost_of(name),
                model_costs=model_costs(name),
                available=not reason,
                models=tuple(cls.models),
                needs_prompt=cls.needs_prompt,
                parameters=specific(cls.parameters),
                takes=tuple(param.name for param in cls.parameters),
                accepts_tail_image=cls.accepts_tail_image,
                unavailable_reason=reason,
            )
        )
    return options


def provider_labels() -> dict[str, str]:
    return {name: provider_class(name).label or name for name in PROVIDERS}


def default_provider() -> str:
    available = [o.name for o in provider_options() if o.available]
    if settings.DEFAULT_PROVIDER in available:
        return settings.DEFAULT_PROVIDER
    return available[0] if available else settings.DEFAULT_PROVIDER


def _parameter_field(declared: list[tuple[str, Param]]) -> forms.Field:
    # No range here: providers may differ, and validate_parameters gives the
    # chosen provider's range in its message. Two providers may declare the
    # same name with different kinds: the field takes what fits both.
    param = declared[0][1]
    common = {"required": False, "label": param.title, "help_text": param.meaning}
    kind = shared_kind(p for _, p in declared)
    if kind == "choice":
        choices = dict.fromkeys(str(c) for _, p in declared for c in p.choices)
        return forms.TypedChoiceField(choices=[(c, c) for c in choices], **common)
    if kind == "int":
        return forms.IntegerField(**common)
    if kind == "text":
        return forms.CharField(**common)
    return forms.FloatField(**common)


# A base for the create form: one field per provider parameter (duration, fps...),
# from the declarations, so they are among CreateJobForm.base_fields.
ProviderParameterFields = type(
    "ProviderParameterFields",
    (forms.Form,),
    {name: _parameter_field(declared) for name, declared in declared_parameters().items()},
)


class CreateJobForm(ProviderParameterFields):
    image = forms.FileField(
        label="Photo",
        help_text=f"JPEG or PNG, {settings.MAX_UPLOAD_BYTES / (1024 * 1024):g} MB at most.",
        error_messages={"required": "Choose a photo (JPEG or PNG) to animate."},
    )
    tail_image = forms.FileField(
        label="End frame",
        required=False,
        help_text="Optional: a second photo (JPEG or PNG) where the video should end; it is framed like the first.",
    )
    framing = forms.ChoiceField(
        choices=[("auto", "Automatic")] + [(name, FRAMING_LABELS[name]) for name in FRAMINGS],
        initial="auto",
        required=False,
    )
    provider = forms.ChoiceField(choices=[(name, name) for name in PROVIDERS])
    model = forms.CharField(required=False, max_length=128)
    motion_bucket_id = forms.IntegerField(
        label=MOTION_BUCKET_ID.title,
        min_value=MOTION_BUCKET_ID.minimum,
        max_value=MOTION_BUCKET_ID.maximum,
        initial=MOTION_BUCKET_ID.default,
        help_text=MOTION_BUCKET_ID.meaning,
    )
    cfg_scale = forms.FloatField(
        label=CFG_SCALE.title,
        min_value=CFG_SCALE.minimum,
        max_value=CFG_SCALE.maximum,
        initial=CFG_SCALE.default,
        help_text=CFG_SCALE.meaning,
    )
    seed_mode = forms.ChoiceField(choices=[("random", "Random"), ("fixed", "Fixed")], required=False)
    seed = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=SEED_MAX,
        help_text="The same photo, settings and seed make the same video again.",
    )
    prompt = forms.CharField(
        required=False, max_length=2000, help_text="What should happen in the video. Leave blank to have one written."
    )
    negative_prompt = forms.CharField(required=False, max_length=2000, help_text="What to avoid (optional).")
    # "Run again with changes": the id of the user's job whose photo is used
    # again when no new file is chosen (the view checks it is theirs).
    photo_from = forms.UUIDField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["provider"].initial = default_provider()
        # Ranges are the chosen provider's, checked in clean(); a provider
        # registered after this module was loaded gets its controls here.
        for name, declared in declared_parameters().items():
            if name not in self.fields:
                self.fields[name] = _parameter_field(declared)

    @property
    def parameter_controls(self) -> list[ParameterControl]:
        chosen = self["provider"].value()
        try:
            own = {param.name: param for param in specific(provider_class(chosen).parameters)}
        except LookupError:
            own = {}
        return [ParameterControl(self[name], own.get(name)) for name in declared_parameters()]

    @property
    def seed_mode_value(self) -> str:
        """The seed choice to show: as sent, else "fixed" when a seed was given."""
        mode = self["seed_mode"].value()
        if mode in ("random", "fixed"):
            return mode
        return "fixed" if str(self["seed"].value() or "0").strip() not in ("", "0") else "random"

    def clean_framing(self) -> str:
        return self.cleaned_data.get("framing") or "auto"

    def clean(self):
        data = super().clean()
        mode = data.get("seed_mode") or ("fixed" if data.get("seed") else "random")
        data["seed_mode"] = mode
        if mode == "random":
            data["seed"] = 0
        elif not data.get("seed") and "seed" not in self.errors:
            self.add_error("seed", f"Enter a seed from 1 to {SEED_MAX}, or choose Random.")
        own = (
            [param.name for param in specific(provider_class(data["provider"]).parameters)]
            if "provider" in data
            else []
        )
        params = ("provider", "model", "seed", "cfg_scale", "motion_bucket_id", *own)
        if any(name in self.errors for name in params):
            return data
        try:
            data.update(
                validate_parameters(
                    provider=data.get("provider"),
                    model=data.get("model"),
                    seed=data.get("seed"),
                    cfg_scale=data.get("cfg_scale"),
                    motion_bucket_id=data.get("motion_bucket_id"),
                    # Only the chosen provider's: controls of the others are not its business.
                    extra_params={name: data.get(name) for name in own},
                )
            )
        except JobInputError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return data


class HistoryFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Job.STATUS_CHOICES])
    provider = forms.ChoiceField(required=False, choices=())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = [("", "Any provider"), *provider_labels().items()]

    def filter(self, jobs):
        """``jobs`` narrowed by the valid filters (invalid ones are ignored)."""
        if not self.is_valid():
            return jobs
        if self.cleaned_data["status"]:
            jobs = jobs.filter(status=self.cleaned_data["status"])
        if self.cleaned_data["provider"]:
            jobs = jobs.filter(provider=self.cleaned_data["provider"])
        return jobs

    @property
    def active(self) -> bool:
        return self.is_valid() and any(self.cleaned_data.values())
