"""The one small interface every video provider implements.

A provider is driven by the job pipeline in three calls: ``submit`` once (its
answer, the provider's job id, is stored before anything else happens),
``poll`` as often as the provider allows until the state is final, and
``cancel`` when the provider supports it. Every call must be safe to repeat:
the pipeline runs at least once per step, never exactly once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from providers.params import COMMON, SEED_MAX, Param

# The three framings every provider in this product accepts (Stability's list).
SIZES: tuple[tuple[int, int], ...] = ((1024, 576), (576, 1024), (768, 768))

PollStateName = Literal["queued", "running", "succeeded", "failed"]


class ProviderError(Exception):
    """A provider call that did not work.

    ``retryable`` says whether trying the same call later may succeed (429,
    5xx, timeouts); ``code`` is a short machine-readable reason stored on the
    job; ``message`` is written for the person who owns the job; ``detail``
    keeps what the provider said, for staff.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        code: str = "provider_error",
        detail: str = "",
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.code = code
        self.detail = detail
        self.retry_after = retry_after
        self.status = status

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class MotionMask:
    """One motion-brush mask (Kling): an image the size of the job's frame
    (white marks the area) and, for a dynamic mask, the path that area follows
    as ``(x, y)`` pixels of the frame. ``image_url`` is a signed link to it
    when the install is public, else "" (send the file inline)."""

    image_path: Path
    image_url: str = ""
    trajectory: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class GenerationRequest:
    """What a provider needs to start one generation.

    ``image_path`` is the normalised image (already fitted to ``width`` x
    ``height``, one of ``SIZES``). ``seed`` is never 0 here: the pipeline picks
    the seed before submitting so the seed used is known and stored.
    ``source_path`` is the image as uploaded, given only to providers that
    ask for it (``uses_original``): a camera move that zooms in can take the
    pixels the normalised frame no longer has. ``extra`` holds the values of
    the provider's own parameters (``Provider.parameters`` beyond the common
    ones), already checked.
    """

    job_id: str
    image_path: Path
    width: int
    height: int
    seed: int
    cfg_scale: float
    motion_bucket_id: int
    prompt: str = ""
    negative_prompt: str = ""
    extra: dict = field(default_factory=dict)
    model: str = ""  # the job's model, one of the provider's ``models``
    source_path: Path | None = None
    # A URL the provider can fetch the image from (a signed link under
    # PUBLIC_BASE_URL, else the URL the image came from), or "" when there is none.
    image_url: str = ""
    # A second image to end the video on (the last frame), for a provider that
    # ``accepts_tail_image``: the normalised image (fitted to width x height) and a
    # signed link to it when the install is public.
    tail_image_path: Path | None = None
    tail_image_url: str = ""
    # Motion-brush masks, for a provider that ``accepts_masks``.
    static_mask: MotionMask | None = None
    dynamic_masks: tuple[MotionMask, ...] = ()
    # Where the provider may tell us the job changed (under PUBLIC_BASE_URL), or
    # "" when the install has no public address or the provider cannot call back.
    webhook_url: str = ""


@dataclass(frozen=True)
class PollState:
    """One look at a provider job.

    When ``state`` is ``succeeded`` the provider has written the MP4 to the
    ``video_path`` the pipeline passed in (and may have written the poster).
    """

    state: PollStateName
    progress: float | None = None  # 0..1 when the provider says
    queue_position: int | None = None
    message: str = ""
    retry_after: float | None = None  # seconds the provider asked us to wait
    finish_reason: str = ""
    seed: int | None = None
    error_code: str = ""
    error_message: str = ""
    error_detail: str = ""
    # What the provider reported that staff should see (Kling's credits used):
    # merged into the job's ``provider_response``.
    provider_data: dict = field(default_factory=dict)


@dataclass
class PollContext:
    """Where a poll may write its result, and how it reports progress.

    Inline providers (the local one) do their work inside ``poll`` and report
    progress through ``report``; remote providers only download into
    ``video_path`` once the provider says the video is ready.
    """

    video_path: Path
    poster_path: Path
    report: Callable[[float, str], None] = lambda fraction, message: None


class SettingFloor:
    """A ``min_poll_interval`` read from the named setting at each access, on
    the class or an instance, so a test (or a reloaded setting) changes it
    without a restart. Every remote provider's poll floor is a setting."""

    def __init__(self, setting: str) -> None:
        self.setting = setting

    def __get__(self, instance: object, owner: type | None = None) -> float:
        from django.conf import settings

        return float(getattr(settings, self.setting))


class Provider(ABC):
    """Base class: capability flags plus the three calls."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    models: ClassVar[tuple[str, ...]] = ("default",)
    supports_cancel: ClassVar[bool] = False
    supports_webhook: ClassVar[bool] = False
    needs_prompt: ClassVar[bool] = False
    sizes: ClassVar[tuple[tuple[int, int], ...]] = SIZES
    # What the provider takes, declared once (see providers/params.py): the
    # common settings first, then its own.
    parameters: ClassVar[tuple[Param, ...]] = COMMON
    seed_max: ClassVar[int] = SEED_MAX
    # Credits per successful video; ``model_costs`` prices models that differ
    # from ``cost`` (read through ``registry.cost_of``, which settings may override).
    cost: ClassVar[int] = 1
    model_costs: ClassVar[dict[str, int]] = {}
    # The least time between two polls of one job, in seconds.
    min_poll_interval: ClassVar[float] = 0.0
    # Whether poll() does the work itself (renders on this machine) rather than
    # asking a remote service: such polls are long and never batched.
    renders_inline: ClassVar[bool] = False
    # Whether submit() wants the upload's original file (GenerationRequest.source_path).
    uses_original: ClassVar[bool] = False
    # Whether the provider fetches the image itself, by URL (GenerationRequest.image_url).
    needs_image_url: ClassVar[bool] = False
    # Whether a cancel can only stop a job the provider has not started (our
    # ``running``): pages then stop offering it once the provider says it started.
    cancels_only_queued: ClassVar[bool] = False
    # Whether the provider takes the image by URL when there is one but also
    # inline: the pipeline gives it a signed link to the normalised frame (and
    # to the end frame and masks) when PUBLIC_BASE_URL is set, "" otherwise,
    # and uploads are never refused for want of a public address.
    accepts_image_url: ClassVar[bool] = False
    # Whether a job may give an end frame (GenerationRequest.tail_image_path).
    accepts_tail_image: ClassVar[bool] = False
    # Motion brush: whether a job may give a static mask and up to
    # ``max_dynamic_masks`` dynamic masks, each with a trajectory of
    # ``trajectory_points`` (least, most) points.
    accepts_masks: ClassVar[bool] = False
    max_dynamic_masks: ClassVar[int] = 0
    trajectory_points: ClassVar[tuple[int, int]] = (2, 77)

    @classmethod
    def is_enabled(cls) -> bool:
        """Whether settings give this provider what it needs (keys, URLs)."""
        return not cls.unavailable_reason()

    @classmethod
    def unavailable_reason(cls) -> str:
        """Why this provider cannot be used here, for the people choosing one
        (the dashboard and ``GET /api/v1/providers`` show it); "" when it can."""
        return ""

    @classmethod
    def upload_unavailable_reason(cls) -> str:
        """Why an uploaded image (which has no URL of its own) cannot go to this
        provider, "" when it can: the dashboard's reason."""
        from django.conf import settings

        reason = cls.unavailable_reason()
        if not reason and cls.needs_image_url and not settings.PUBLIC_BASE_URL:
            reason = (
                f"{cls.label or cls.name} fetches the image by URL and this server has no public address: "
                "an operator must set PUBLIC_BASE_URL (API jobs made from an image_url can still use it)."
            )
        return reason

    @classmethod
    def check_values(cls, values: dict) -> None:
        """Rules between parameters (each already checked on its own): raise
        ``ParamError`` naming the parameter and what would work. ``values``
        holds every declared parameter by name, defaults filled in."""
        return None  # no rules between parameters unless a provider has some

    @abstractmethod
    def submit(self, request: GenerationRequest) -> str:
        """Start a generation and return the provider's job id."""

    @abstractmethod
    def poll(self, provider_job_id: str, context: PollContext) -> PollState:
        """Look at a job once; on success write the video to ``context``."""

    def cancel(self, provider_job_id: str) -> bool:
        """Ask the provider to stop; True when it agreed."""
        return False
