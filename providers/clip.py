"""The prompt writer: Replicate's CLIP interrogator describes the photo.

Providers that need a prompt (``Provider.needs_prompt``) get one from here when
the user gave none, as the original I2V API did (``REPLICATE_MODEL_ID`` with
the inputs ``image``, ``clip_model_name`` and ``mode``). It is split into
``start`` and ``check`` so the pipeline can store the prediction id between
them and never wait: ``start`` is called once per job, ``check`` as often as
``REPLICATE_POLL_INTERVAL`` allows, and both may be repeated safely (``check``
only looks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from django.conf import settings

from providers import replicate_api
from providers.base import ProviderError


@dataclass(frozen=True)
class Description:
    """One look at a CLIP prediction: running, or final with the prompt or a failure."""

    state: Literal["running", "succeeded", "failed"]
    prompt: str = ""
    error_code: str = ""
    error_message: str = ""
    error_detail: str = ""


def is_configured() -> bool:
    return bool(settings.REPLICATE_API_TOKEN)


def start(image_ref: str, *, webhook_url: str = "") -> str:
    """Start describing the image at ``image_ref`` (a URL Replicate can fetch,
    or a ``data:`` URI); returns the prediction id to store. ``webhook_url``,
    when given, is where Replicate says the prediction has finished."""
    prediction = replicate_api.create(
        settings.REPLICATE_MODEL_ID,
        {"image": image_ref, "clip_model_name": settings.CLIP_MODEL_NAME, "mode": settings.CLIP_MODE},
        webhook=webhook_url,
    )
    return prediction.id


def check(prediction_id: str) -> Description:
    """Look at the prediction once. Raises ``ProviderError`` for trouble
    reaching Replicate (``retryable`` says whether to try again)."""
    try:
        prediction = replicate_api.get(prediction_id)
    except ProviderError as exc:
        if exc.code == "provider_job_missing":
            return Description(
                state="failed",
                error_code="prompt_failed",
                error_message="The prompt could not be written from your photo (Replicate lost the request). "
                "You have not been charged; please try again, or give a prompt yourself.",
                error_detail=exc.detail,
            )
        raise
    return describe(prediction)


def describe(prediction: replicate_api.Prediction) -> Description:
    """What a prediction says, as a ``Description``."""
    if prediction.status in replicate_api.ACTIVE:
        return Description(state="running")
    if prediction.status == "succeeded":
        text = prediction.output if isinstance(prediction.output, str) else ""
        if isinstance(prediction.output, list) and all(isinstance(part, str) for part in prediction.output):
            text = "".join(prediction.output)  # a model that streams its text answers in pieces
        text = text.strip()
        if not text:
            return Description(
                state="failed",
                error_code="prompt_empty",
                error_message="CLIP returned no description of your photo, so there is no prompt to send. "
                "You have not been charged; please give a prompt yourself.",
                error_detail=f"prediction {prediction.id} succeeded with output {prediction.output!r}",
            )
        return Description(state="succeeded", prompt=text)
    said = prediction.error or prediction.status
    return Description(
        state="failed",
        error_code="prompt_failed",
        error_message="The prompt could not be written from your photo (Replicate's CLIP interrogator failed). "
        "You have not been charged; please try again, or give a prompt yourself.",
        error_detail=f"prediction {prediction.id} {prediction.status}: {said}"[:10000],
    )


def cancel(prediction_id: str) -> bool:
    """Ask Replicate to stop the prediction; True when it is stopped or over."""
    prediction = replicate_api.cancel(prediction_id)
    return prediction.status not in replicate_api.ACTIVE
