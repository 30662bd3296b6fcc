"""Rules about accounts that every way of making or editing one shares."""

from __future__ import annotations

from django.contrib.auth import get_user_model


def email_taken(email: str, *, excluding=None) -> bool:
    """Whether another account has ``email``, capitals aside (``excluding``: the
    account being edited, for a staff form that checks the same rule)."""
    others = get_user_model().objects.filter(email__iexact=email.strip())
    if excluding is not None:
        others = others.exclude(pk=excluding.pk)
    return bool(email.strip()) and others.exists()
