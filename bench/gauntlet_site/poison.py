"""A provider whose submit kills the process that runs it, every time: a
poison job for bench/bench_gauntlet.py (a step that always takes its worker
down, as a crashing native library would)."""

from __future__ import annotations

import os

from providers.base import GenerationRequest
from providers.stability import StabilityProvider


class PoisonProvider(StabilityProvider):
    name = "poison"
    label = "Poison (bench only)"

    def submit(self, request: GenerationRequest) -> str:
        os._exit(70)  # no clean-up, no answer: like a segfault in the worker
