"""The project's settings, plus the comparison endpoints of bench/bench_throttle.py."""

from i2v_site.settings import *  # noqa: F403

ROOT_URLCONF = "bench.throttle_site.urls"
