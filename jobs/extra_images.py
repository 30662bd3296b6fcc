"""The images a job may carry besides its photo: an end frame ("tail image")
and motion-brush masks, each for a provider that declares it takes them
(``Provider.accepts_tail_image``, ``accepts_masks``, ``max_dynamic_masks``,
``trajectory_points``).

Every one of them is checked by the same intake as the photo and fitted to
the photo's framing, so the end frame matches the first and a mask lies on
the frame it masks. The checks that need no image run first (which provider
takes what, how many masks, how many points), then the points are checked
against the frame's size, all before anything is stored, held or sent.
Messages name the field, the mask and the point (``dynamic_masks[1].
trajectories[3]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from jobs.input_errors import JobInputError
from providers.registry import PROVIDERS, provider_class


@dataclass(frozen=True)
class ExtraImage:
    """An image as given: its bytes (or a file), the name for people, the URL
    it came from; ``field`` names it in messages (``tail_image``)."""

    source: bytes | BinaryIO
    field: str
    filename: str = ""
    source_url: str = ""


@dataclass(frozen=True)
class MaskSpec:
    """A mask as given: its image and, for a dynamic mask, its trajectory as
    ``(x, y)`` pairs (empty for the static mask)."""

    image: ExtraImage
    trajectory: tuple[tuple[float, float], ...] = ()


def _takers(flag: str) -> str:
    names = [name for name in PROVIDERS if getattr(provider_class(name), flag)]
    return ", ".join(names) if names else "none on this install"


def check_extra_images(
    provider: str,
    *,
    tail: bool = False,
    static_mask: bool = False,
    dynamic_masks: Sequence[Sequence[tuple[float, float]]] = (),
    dynamic_field: str = "dynamic_masks",
    tail_field: str = "tail_image",
    static_field: str = "static_mask",
) -> None:
    """What can be refused before any image is read: a provider that does not
    take an end frame or masks, too many masks, a trajectory of too few or too
    many points, a point that is not a pair of whole numbers. Raises ``JobInputError``."""
    cls = provider_class(provider)
    label = cls.label or provider
    if tail and not cls.accepts_tail_image:
        raise JobInputError(
            tail_field,
            f"{label} does not take an end frame ({tail_field}); providers that do: {_takers('accepts_tail_image')}.",
            "not_supported",
        )
    if (static_mask or dynamic_masks) and not cls.accepts_masks:
        raise JobInputError(
            static_field if static_mask else dynamic_field,
            f"{label} does not take motion masks; providers that do: {_takers('accepts_masks')}.",
            "not_supported",
        )
    if len(dynamic_masks) > cls.max_dynamic_masks:
        raise JobInputError(
            dynamic_field,
            f"{label} takes at most {cls.max_dynamic_masks} dynamic masks; {len(dynamic_masks)} were given.",
            "too_many",
        )
    least, most = cls.trajectory_points
    for index, trajectory in enumerate(dynamic_masks):
        where = f"{dynamic_field}[{index}].trajectories"
        if not least <= len(trajectory) <= most:
            raise JobInputError(
                dynamic_field,
                f"{where} must have from {least} to {most} points; it has {len(trajectory)}.",
                "bad_trajectory",
            )
        for point, (x, y) in enumerate(trajectory):
            for value in (x, y):
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    raise JobInputError(
                        dynamic_field, f"{where}[{point}] must be whole pixel numbers; got ({x!r}, {y!r}).", "bad_point"
                    )
                if value != int(value):
                    raise JobInputError(
                        dynamic_field, f"{where}[{point}] must be whole pixel numbers; got ({x}, {y}).", "bad_point"
                    )


def check_points(
    dynamic_masks: Sequence[Sequence[tuple[float, float]]], width: int, height: int, *, field: str = "dynamic_masks"
) -> None:
    """Every trajectory point inside the job's frame (``width`` x ``height``,
    x from 0 to width - 1, y from 0 to height - 1)."""
    for index, trajectory in enumerate(dynamic_masks):
        for point, (x, y) in enumerate(trajectory):
            if not (0 <= x < width and 0 <= y < height):
                raise JobInputError(
                    field,
                    f"{field}[{index}].trajectories[{point}] is ({int(x)}, {int(y)}), outside the {width}x{height} "
                    f"frame: x must be from 0 to {width - 1} and y from 0 to {height - 1}.",
                    "point_outside",
                )
