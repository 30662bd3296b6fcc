"""Provider parameters, declared once as data.

Each provider lists what it takes as a tuple of ``Param`` (``Provider.parameters``).
Everything else reads that one declaration: validation (``jobs.creation``), the
providers listing and the create fields of the API, the dashboard's controls and
``manage.py animate``. Adding a parameter, or a provider with its own, touches
no form, serializer or template.

``COMMON`` names the settings that keep one meaning across providers and have a
column of their own on the job (seed, cfg_scale, motion_bucket_id); every other
parameter is provider-specific, stored in ``Job.extra_params`` and handed to the
provider as ``GenerationRequest.extra``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

ParamKind = Literal["int", "float", "choice"]

SEED_MAX = 4294967294


class ParamError(ValueError):
    """A value a person must correct; the message names the parameter and its range."""

    def __init__(self, name: str, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.name = name
        self.message = message
        self.code = code


def format_number(value: float) -> str:
    # Whole numbers in full: ":g" would print the seed's 4294967294 as 4.29497e+09.
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Param:
    """One parameter: its name as the API and the listing spell it, its type,
    range (``int``/``float``) or ``choices``, default, a one-line meaning, and
    the label and unit people see."""

    name: str
    kind: ParamKind
    default: int | float | str
    meaning: str
    label: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[int | float | str, ...] = ()
    unit: str = ""  # "s", "fps": shown after numbers
    step: float | None = None  # the dashboard slider's step
    required: bool = False

    def __post_init__(self) -> None:
        if self.kind == "choice":
            if not self.choices or self.default not in self.choices:
                raise ValueError(f"{self.name}: a choice needs choices including its default")
        elif self.minimum is None or self.maximum is None or not self.minimum <= self.default <= self.maximum:
            raise ValueError(f"{self.name}: a number needs a range that holds its default")

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    @property
    def span(self) -> str:
        """The allowed values as a person reads them: "from 1 to 10 s", "24, 25 or 30"."""
        unit = f" {self.unit}" if self.unit else ""
        if self.kind == "choice":
            shown = [format_number(c) if isinstance(c, int | float) else str(c) for c in self.choices]
            return (", ".join(shown[:-1]) + " or " + shown[-1] if len(shown) > 1 else shown[0]) + unit
        return f"from {format_number(self.minimum)} to {format_number(self.maximum)}{unit}"

    def parse(self, value) -> int | float | str:
        """``value`` (from JSON, a form or a command line) as this parameter's
        type, checked; the default when it is missing. Raises ``ParamError``."""
        said = self.name.replace("_", " ")
        if value is None or value == "":
            if self.required:
                raise ParamError(self.name, f"{said} is required: {self.span}.", "required")
            return self.default
        if self.kind == "choice":
            for choice in self.choices:
                if value == choice or str(value) == str(choice) or _same_number(value, choice):
                    return choice
            raise ParamError(self.name, f"{said} must be {self.span}; got {value!r}.", "invalid_choice")
        whole = self.kind == "int"
        kind = "a whole number" if whole else "a number"
        if isinstance(value, bool):
            raise ParamError(self.name, f"{said} must be {kind} {self.span}; got {value!r}.")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ParamError(self.name, f"{said} must be {kind} {self.span}; got {value!r}.") from None
        shown = format_number(number) if math.isfinite(number) else str(value)
        if not math.isfinite(number) or not self.minimum <= number <= self.maximum:
            raise ParamError(self.name, f"{said} must be {self.span}; got {shown}.", "out_of_range")
        if whole:
            if number != int(number):
                raise ParamError(self.name, f"{said} must be {kind} {self.span}; got {shown}.")
            return int(number)
        return number

    def describe(self) -> dict:
        """The parameter as ``GET /api/v1/providers`` lists it; whole-number
        parameters stay whole numbers."""
        number = int if self.kind == "int" else float
        row: dict = {"type": self.kind, "default": self.default}
        if self.kind == "choice":
            row["choices"] = list(self.choices)
        else:
            row.update(minimum=number(self.minimum), maximum=number(self.maximum), default=number(self.default))
        row.update(meaning=self.meaning, required=self.required)
        if self.unit:
            row["unit"] = self.unit
        return row


# The common settings: one meaning across providers (each maps them onto its own scale).
SEED = Param(
    "seed",
    "int",
    0,
    "The same photo, settings and seed make the same video again; 0 picks one at random.",
    label="Seed",
    minimum=0,
    maximum=SEED_MAX,
)
CFG_SCALE = Param(
    "cfg_scale",
    "float",
    1.8,
    "How closely the video keeps to your photo: low lets it drift, high keeps it faithful (about 2 suits most photos).",
    label="Fidelity (cfg_scale)",
    minimum=0.0,
    maximum=10.0,
    step=0.1,
)
MOTION_BUCKET_ID = Param(
    "motion_bucket_id",
    "int",
    127,
    "How far the camera moves: 1 is almost still, 255 is a big, sweeping move.",
    label="Motion",
    minimum=1,
    maximum=255,
    step=1,
)
COMMON: tuple[Param, ...] = (SEED, CFG_SCALE, MOTION_BUCKET_ID)
COMMON_NAMES = frozenset(param.name for param in COMMON)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same_number(value, choice) -> bool:
    """Whether ``value`` (5.0, "10") is the numeric ``choice`` (5, 10): a form
    or a field shared with a float parameter sends numbers as it likes."""
    if not _is_number(choice) or isinstance(value, bool):
        return False
    try:
        return float(value) == float(choice)
    except (TypeError, ValueError):
        return False


def _number_kind(param: Param) -> str:
    """A choice among numbers (Kling's duration: 5 or 10) counts as a number
    when its name is shared with a numeric parameter."""
    if param.kind == "choice" and all(_is_number(choice) for choice in param.choices):
        return "int" if all(isinstance(choice, int) for choice in param.choices) else "float"
    return param.kind


def shared_kind(params: Iterable[Param]) -> str:
    """The one kind of input field that accepts every provider's values of a
    parameter several providers declare under one name (``motion``, say):
    their kind when they agree, ``float`` for whole and fractional numbers
    (a choice among numbers counts as numbers), ``text`` when other choices
    meet numbers. ``validate_parameters`` then checks
    the value against the chosen provider's declaration."""
    params = list(params)
    kinds = {param.kind for param in params}
    if len(kinds) == 1:
        return kinds.pop()
    kinds = {_number_kind(param) for param in params}
    if len(kinds) == 1:
        return kinds.pop()
    return "float" if "choice" not in kinds else "text"


def by_name(params: Iterable[Param]) -> dict[str, Param]:
    return {param.name: param for param in params}


def specific(params: Iterable[Param]) -> tuple[Param, ...]:
    """The parameters that are not common ones (they go in ``Job.extra_params``)."""
    return tuple(param for param in params if param.name not in COMMON_NAMES)


def shown_values(params: Iterable[Param], values: dict) -> list[tuple[str, str]]:
    """``values`` of a provider's own parameters as people read them, in the
    order the provider declares them: ``[("Duration", "5 s"), ...]``. What the
    job page and the admin show; values no longer declared are left out."""
    rows = []
    for param in specific(params):
        if param.name not in values:
            continue
        value = values[param.name]
        text = format_number(value) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)
        rows.append((param.title, f"{text} {param.unit}" if param.unit else text))
    return rows
