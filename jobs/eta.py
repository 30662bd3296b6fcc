"""How long a new job is likely to take, from the last jobs of its provider."""

from __future__ import annotations

import math
import statistics

from jobs.models import Job

RECENT = 20  # completed jobs looked at
MIN_SAMPLES = 3  # fewer than this is no history
DEFAULT_MINUTES = (5, 7)  # the original I2V API's fixed "5-7"


def estimate_minutes(provider: str) -> tuple[int, int]:
    """(low, high) whole minutes: the median and the 90th percentile of the time
    from creation to the video for the provider's last ``RECENT`` completed jobs,
    the high end always above the low one; the original's 5-7 without history."""
    spans = [
        (finished - created).total_seconds()
        for created, finished in Job.objects.filter(
            provider=provider, status__in=(Job.COMPLETED, Job.EXPIRED), finished_at__isnull=False
        )
        .order_by("-finished_at")
        .values_list("created_at", "finished_at")[:RECENT]
    ]
    if len(spans) < MIN_SAMPLES:
        return DEFAULT_MINUTES
    deciles = statistics.quantiles(spans, n=10, method="inclusive")
    low = max(1, round(statistics.median(spans) / 60))
    high = max(low + 1, math.ceil(deciles[8] / 60))
    return low, high
