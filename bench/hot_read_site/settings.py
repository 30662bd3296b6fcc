"""The project's settings, plus the plain comparison view of bench/bench_hot_read.py."""

from i2v_site.settings import *  # noqa: F403

ROOT_URLCONF = "bench.hot_read_site.urls"
