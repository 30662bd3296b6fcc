"""Django's PostgreSQL backend, but a kept connection is checked by looking at
its socket rather than by sending ``SELECT 1``.

Kept connections are health-checked before each request's or task's first
query (settings: CONN_HEALTH_CHECKS). Django's check is a ``SELECT 1`` round
trip, about a fifth of a status poll's database time on PostgreSQL
(bench/bench_health_check.py; bench/RESULTS.md). An idle connection has nothing to read:
when its socket is readable, the server has said something on its own, which
for a kept connection means it is going away (a restart, an administrator's
``pg_terminate_backend``, a cut link: the message, then end of file). Only then
is ``SELECT 1`` sent, to let the server's answer decide. A silent link that
drops packets is seen by neither check until TCP gives up; the query's own
error then reaches the caller, as it did before.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg import pq


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        conn = self.connection
        if conn is None or conn.closed or conn.broken:
            return False
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            return super().is_usable()
        try:
            readable, _, _ = select.select([conn.fileno()], [], [], 0)
        except (OSError, ValueError):  # the socket is gone
            return False
        return not readable or super().is_usable()
