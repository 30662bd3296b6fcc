"""The project's settings plus ``poison``, the bench-only provider of bench/bench_gauntlet.py.

Registered here, in the settings every process of the gauntlet loads, so no
product module knows about it.
"""

from i2v_site.settings import *  # noqa: F403
from providers import registry

registry.PROVIDERS["poison"] = "bench.gauntlet_site.poison.PoisonProvider"

# The gauntlet finds django-q2's worker processes by their "ready for work at <pid>" lines.
LOGGING["loggers"]["django-q"]["level"] = "INFO"  # noqa: F405
