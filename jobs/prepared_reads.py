"""One-row reads the hottest requests repeat, with their SQL built by the ORM once.

Every API call looks up its key, and every status poll its job. Building such
a query (filter, select_related, compile) cost several times the CPU of running
it: in a profile of the native poll the key lookup alone was 40 % of the
request, nearly all of it the ORM compiling SQL (bench/RESULTS.md, the hot
read). A ``PreparedRead`` asks the ORM for the queryset's SQL and row decoding
once per database connection, with stand-in values, and then only swaps in
each call's values: the instances it gives are what the queryset itself gives
(``from_db``, the database's converters, select_related objects, annotations).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Field, Model, QuerySet
from django.db.models.query import get_related_populators


def _stand_in(field: Field) -> Any:
    """A value of ``field``'s type that no real query parameter will have."""
    kind = getattr(field, "target_field", field).get_internal_type()
    if kind == "UUIDField":
        return uuid.uuid4()
    if kind in ("AutoField", "BigAutoField", "IntegerField", "BigIntegerField"):
        return -secrets.randbelow(2**31) - 1  # ids are positive
    if kind == "CharField":
        return f"\x01{secrets.token_hex(6)}"
    raise TypeError(f"no stand-in for a {kind} ({field.name}): add one here")


def preparing_cursor(connection):
    """A cursor for statements run again and again with other values: PostgreSQL's
    backend (i2v_site/postgresql) prepares them; SQLite's module keeps its own
    cache of them, by their text."""
    return getattr(connection, "prepared_cursor", connection.cursor)()


@dataclass(frozen=True)
class _Made:
    sql: str
    params: tuple[tuple[str | None, Any], ...]  # (role, or None with the fixed value)
    converters: dict[int, tuple[list, Any]]
    model: type[Model]
    start: int
    end: int
    init_list: list[str]
    populators: list
    annotations: dict[str, int]


class PreparedRead:
    """The first row of ``build(**values)``, the query built once, run for each call's values.

    ``roles`` name the fields of ``model`` (``pk`` for the primary key) whose
    values ``build`` takes; each prepares the values given for it as the
    database takes them. The query is built with a stand-in for each, a value
    no other parameter of it has, so that its place among the built query's
    parameters can be found.
    """

    def __init__(self, model: type[Model], build: Callable[..., QuerySet], *roles: str) -> None:
        self._fields = {name: model._meta.pk if name == "pk" else model._meta.get_field(name) for name in roles}
        self._stand_ins = {name: _stand_in(field) for name, field in self._fields.items()}
        self._build = build
        # Per connection object: its converters are bound to it, and each thread has its own.
        self._made: WeakKeyDictionary = WeakKeyDictionary()

    def first(self, **values: Any) -> Model | None:
        connection = connections[DEFAULT_DB_ALIAS]
        made = self._made.get(connection)
        if made is None:
            made = self._made[connection] = self._make(connection)
        given = self._prepare(connection, values)
        params = [given[role] if role else value for role, value in made.params]
        with preparing_cursor(connection) as cursor:
            cursor.execute(made.sql, params)
            row = cursor.fetchone()
        return None if row is None else self._decode(made, list(row), connection)

    def _make(self, connection) -> _Made:
        compiler = self._build(**self._stand_ins).query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()  # also fills compiler.select and klass_info
        roles = {value: role for role, value in self._prepare(connection, self._stand_ins).items()}
        missing = set(roles.values()) - {roles[value] for value in params if value in roles}
        if missing:  # the queryset dropped or changed a condition: fail loudly, never run it wrong
            raise LookupError(f"stand-ins not among the query's parameters: {sorted(missing)}")
        klass_info = compiler.klass_info
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        return _Made(
            sql=sql,
            params=tuple((roles.get(value), value) for value in params),
            converters=compiler.get_converters([column[0] for column in compiler.select[: compiler.col_count]]),
            model=klass_info["model"],
            start=start,
            end=end,
            init_list=[column[0].target.attname for column in compiler.select[start:end]],
            populators=get_related_populators(klass_info, compiler.select, connection.alias),
            annotations=dict(compiler.annotation_col_map or {}),
        )

    def _prepare(self, connection, values: dict[str, Any]) -> dict[str, Any]:
        return {name: self._fields[name].get_db_prep_value(value, connection) for name, value in values.items()}

    @staticmethod
    def _decode(made: _Made, row: list, connection) -> Model:
        for position, (converters, expression) in made.converters.items():
            value = row[position]
            for converter in converters:
                value = converter(value, expression, connection)
            row[position] = value
        obj = made.model.from_db(connection.alias, made.init_list, row[made.start : made.end])
        for populator in made.populators:
            populator.populate(row, obj)
        for name, position in made.annotations.items():
            setattr(obj, name, row[position])
        return obj
