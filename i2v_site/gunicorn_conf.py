"""gunicorn hooks for ``manage.py serve`` (the rest is on its command line).

Each web worker dies with the gunicorn master: after a ``kill -9`` of the
master (or of ``serve``, whose death takes the master) nothing keeps the port.
"""

from __future__ import annotations

import signal

from jobs.lifelines import set_death_signal


def post_fork(server, worker) -> None:
    set_death_signal(signal.SIGTERM, server.pid)
