"""Django's PostgreSQL backend, with two changes for the requests clients repeat most.

A kept connection is checked by looking at its socket rather than by sending
``SELECT 1``. Kept connections are health-checked before each request's or
task's first query (settings: CONN_HEALTH_CHECKS). Django's check is a
``SELECT 1`` round trip, about a fifth of a status poll's database time on
PostgreSQL (bench/bench_health_check.py; bench/RESULTS.md). An idle connection
has nothing to read: when its socket is readable, the server has said
something on its own, which for a kept connection means it is going away (a
restart, an administrator's ``pg_terminate_backend``, a cut link: the message,
then end of file). Only then is ``SELECT 1`` sent, to let the server's answer
decide. A silent link that drops packets is seen by neither check until TCP
gives up; the query's own error then reaches the caller, as it did before.

The hottest reads (jobs/prepared_reads.py: every key lookup, every status
poll's job) run as prepared statements, parsed and planned once per
connection: that took about 110 µs of CPU off each such query, most of it the
server's (bench/RESULTS.md, the hot read). Django leaves prepared statements
off so that connection poolers in transaction mode keep working;
``DATABASE_URL=…?prepared_statements=false`` turns ours off for them too.
"""

from __future__ import annotations

import select

import psycopg
from django.db.backends.postgresql import base, operations
from django.db.backends.postgresql.psycopg_any import register_tzloader
from django.utils.asyncio import async_unsafe
from psycopg import pq

# psycopg prepares nothing, not even on request, while a connection's threshold
# is None (Django's default). Django's own cursors bind on the client and never
# prepare whatever the threshold; with this one, only ``PreparingCursor`` does.
_ONLY_WHEN_ASKED = 2**31 - 1


class PreparingCursor(psycopg.Cursor):
    """Binds its values on the server and has each statement prepared the first time it runs."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=True, binary=binary)


class DatabaseOperations(operations.DatabaseOperations):
    def last_executed_query(self, cursor, sql, params):
        # Shown in query logs and captured by tests: the statement with its values,
        # as Django writes it for cursors that bind on the server.
        if isinstance(cursor, PreparingCursor):
            return self.compose_sql(sql, params)
        return super().last_executed_query(cursor, sql, params)


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    def get_connection_params(self) -> dict:
        params = super().get_connection_params()
        params.pop("prepared_statements", None)
        if self.prepares_statements and params.get("prepare_threshold") is None:
            params["prepare_threshold"] = _ONLY_WHEN_ASKED
        return params

    @property
    def prepares_statements(self) -> bool:
        return self.settings_dict["OPTIONS"].get("prepared_statements", True) is not False

    @async_unsafe
    def prepared_cursor(self):
        """A cursor whose statements are prepared, or the usual one when they are turned off."""
        if not self.prepares_statements:
            return self.cursor()
        # What BaseDatabaseWrapper._cursor does, with another kind of cursor.
        self.close_if_health_check_failed()
        self.ensure_connection()
        with self.wrap_database_errors:
            cursor = PreparingCursor(self.connection)
            # As create_cursor: the connection's time zone, unless its loader already has it.
            loader = self.connection.adapters.get_loader(base.TIMESTAMPTZ_OID, pq.Format.TEXT)
            if self.timezone != loader.timezone:
                register_tzloader(self.timezone, cursor)
            return self._prepare_cursor(cursor)

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
