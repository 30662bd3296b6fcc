"""Kept PostgreSQL connections are checked before each request's first query
without a round trip, and one the server has ended is still replaced.

PostgreSQL only: SQLite has no server to end a connection.
"""

from __future__ import annotations

import psycopg
import pytest
from django.db import close_old_connections, connection

from jobs.models import Job
from tests.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin():
    if connection.vendor != "postgresql":
        pytest.skip("a server that ends connections needs PostgreSQL")
    db = connection.settings_dict
    with psycopg.connect(
        host=db.get("HOST") or "127.0.0.1",
        port=int(db.get("PORT") or 5432),
        user=db.get("USER") or "postgres",
        dbname="postgres",
        autocommit=True,
    ) as conn:
        yield conn


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def last_query(admin, pid: int) -> str | None:
    row = admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    return row[0] if row else None


def test_a_kept_connection_passes_its_check_without_sending_a_query(admin):
    pid = backend_pid()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'the last thing said'")
    close_old_connections()  # a request ends; the next one's first query checks the connection

    with connection.cursor():  # what the first query does first, without the query
        pass

    assert connection.health_check_done
    assert last_query(admin, pid) == "SELECT 'the last thing said'"
    assert backend_pid() == pid  # the same connection, kept


def test_a_connection_the_server_ended_is_replaced_before_the_next_request_queries(admin):
    pid = backend_pid()
    close_old_connections()
    admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_until(lambda: last_query(admin, pid) is None, 10, f"backend {pid} outlived pg_terminate_backend")

    close_old_connections()  # the next request starts
    assert Job.objects.count() == 0  # no error reaches it

    assert backend_pid() != pid


def test_a_connection_in_a_transaction_is_checked_with_a_query(admin):
    # Inside a transaction the socket alone says too little; the server is asked.
    pid = backend_pid()
    connection.set_autocommit(False)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 'inside'")
        assert connection.is_usable()
        assert last_query(admin, pid) == "SELECT 1"
    finally:
        connection.rollback()
        connection.set_autocommit(True)
