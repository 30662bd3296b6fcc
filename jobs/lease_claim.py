"""The lease's compare-and-set as one statement: ``UPDATE … RETURNING``.

Through the ORM a claim was an UPDATE and then a read of the rows it took,
each built by the ORM: two round trips on a connection that has often slept
since the last job, and most of the time from a job's enqueue to its first
step on the Redis broker (bench/RESULTS.md, enqueue to start). Here the rows
come back from the update itself. PostgreSQL and SQLite 3.35+ both return
rows from an UPDATE; elsewhere ``pipeline.claim_many`` keeps the ORM's two
statements.

The job's upload is not read with it: the first step and the polls, which are
most claims, never touch it, and the submit step loads it when it needs it.

On PostgreSQL the statement is prepared, like the hot reads
(jobs/prepared_reads.py), and its rows are decoded here with the converters
the ORM would use, worked out once per connection. Through ``Job.objects.raw``
a claim cost twice the client's CPU (about 380 µs against 200) and 0.5 ms more
of a job's start on an idle worker (bench/RESULTS.md, enqueue to start).
"""

from __future__ import annotations

from datetime import datetime
from weakref import WeakKeyDictionary

from django.db import DEFAULT_DB_ALIAS, connection, connections

from jobs.models import Job
from jobs.prepared_reads import preparing_cursor


def can_claim_in_one_statement() -> bool:
    # The same engine support as RETURNING on INSERT, which Django tracks.
    return bool(connection.features.can_return_columns_from_insert)


def claim_rows(job_ids: list, now: datetime, lease_until: datetime) -> list[Job]:
    """Take the lease of each job in ``job_ids`` not final and not leased at
    ``now``: it runs to ``lease_until`` (also the job's next look, should the
    worker die), and its attempt counter grows. Answers the jobs taken, as
    stored after the update."""
    if not job_ids:
        return []
    sql = _statement(len(job_ids))
    ops = connection.ops
    pk = Job._meta.pk
    until = ops.adapt_datetimefield_value(lease_until)
    params = [
        until,
        until,
        *(pk.get_db_prep_value(job_id, connection) for job_id in job_ids),
        *Job.FINAL_STATES,
        ops.adapt_datetimefield_value(now),
    ]
    with preparing_cursor(connection) as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [_job(row, connections[DEFAULT_DB_ALIAS]) for row in rows]


# Per connection object, as their converters are bound to it.
_decoders: WeakKeyDictionary = WeakKeyDictionary()


def _job(row: tuple, db) -> Job:
    """The Job a returned row is, as the ORM would make it (each field's database
    converters: SQLite's text times, UUIDs, JSON)."""
    decoder = _decoders.get(db)
    if decoder is None:
        fields = Job._meta.concrete_fields
        decoder = _decoders[db] = (
            [field.attname for field in fields],
            [
                (position, col, converters)
                for position, field in enumerate(fields)
                for col in [field.get_col(Job._meta.db_table)]
                if (converters := db.ops.get_db_converters(col) + field.get_db_converters(db))
            ],
        )
    names, converting = decoder
    values = list(row)
    for position, col, converters in converting:
        for converter in converters:
            values[position] = converter(values[position], col, db)
    return Job.from_db(db.alias, names, values)


_statements: dict[tuple[str, int], str] = {}


def _statement(count: int) -> str:
    key = (connection.vendor, count)
    if key not in _statements:
        quote = connection.ops.quote_name
        meta = Job._meta

        def column(name: str) -> str:
            return quote(meta.get_field(name).column)

        ids = ", ".join(["%s"] * count)
        finals = ", ".join(["%s"] * len(Job.FINAL_STATES))
        returned = ", ".join(quote(field.column) for field in meta.concrete_fields)
        lease, attempts = column("lease_until"), column("attempts")
        _statements[key] = (
            f"UPDATE {quote(meta.db_table)} SET {lease} = %s, {column('next_poll_at')} = %s, "
            f"{attempts} = {attempts} + 1 "
            f"WHERE {quote(meta.pk.column)} IN ({ids}) AND {column('status')} NOT IN ({finals}) "
            f"AND ({lease} IS NULL OR {lease} < %s) "
            f"RETURNING {returned}"
        )
    return _statements[key]
