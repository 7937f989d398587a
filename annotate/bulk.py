"""Fast inserts of many rows of one model, for the two writers that add rows by the
hundred thousand: the documents import and a round's predictions.

`bulk_create` spends most of its time preparing each value of each row through the field
machinery (~60% of an import, profiled). Here the caller hands over the values it varies
already prepared for the database, and every other column is prepared once per batch from
a template instance, so a field added to the model later with a default is filled in
without touching the callers. PostgreSQL gets the rows through COPY; SQLite, in-process,
through one prepared INSERT re-run per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection
from django.db.models import Field, Model

__all__ = ["ANALYZE_AFTER_ROWS", "db_value", "row_insert_unless_conflict", "rows_insert",
           "rows_insert_select", "table_analyze"]

# A bulk write this large refreshes the table's planner statistics (table_analyze).
ANALYZE_AFTER_ROWS = 5000


def db_value(model: type[Model], attname: str, value: Any) -> Any:
    """`value` as the database takes it for `model.attname` (JSON fields need this)."""
    field: Field = model._meta.get_field(attname)  # type: ignore[assignment]
    return field.get_db_prep_save(value, connection)


def _columns(model: Model) -> tuple[list[Field], str, str]:
    """The model's concrete columns but the primary key, its quoted table name, and the
    quoted column list, in that order."""
    opts = model._meta
    fields = [f for f in opts.concrete_fields if not f.primary_key]
    qn = connection.ops.quote_name
    return fields, qn(opts.db_table), ", ".join(qn(f.column) for f in fields)


def _prepared(field: Field, instance: Model) -> Any:
    return field.get_db_prep_save(field.pre_save(instance, add=True), connection)


def row_insert_unless_conflict(instance: Model) -> bool:
    """Inserts `instance` as a new row unless that breaks a unique constraint; returns
    whether it did. INSERT ... ON CONFLICT DO NOTHING (PostgreSQL, SQLite) rather than
    catching the IntegrityError, which inside a transaction needs a savepoint around the
    insert: two more round trips. The instance's primary key is not set."""
    fields, table, names = _columns(instance)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(fields))}) "
            "ON CONFLICT DO NOTHING",
            [_prepared(f, instance) for f in fields],
        )
        return cursor.rowcount == 1


def rows_insert(
    template: Model, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Inserts one row per item of `rows`: the values of `columns` (attnames), prepared
    for the database (see `db_value`), in that order; every other concrete column takes
    `template`'s value. The primary key is left to the database."""
    fields, table, names = _columns(template)
    position = {name: i for i, name in enumerate(columns)}
    unknown = set(columns) - {f.attname for f in fields}
    if unknown:
        raise ValueError(f"{template._meta.label} has no column(s) {sorted(unknown)}")
    constant = {f.attname: _prepared(f, template) for f in fields if f.attname not in position}
    order = [(position.get(f.attname), constant.get(f.attname)) for f in fields]

    def full(row: Sequence[Any]) -> list[Any]:
        return [row[i] if i is not None else value for i, value in order]

    full_rows = (full(row) for row in rows)
    # wrap_database_errors: the driver's own errors become django.db ones (DataError...),
    # also for the COPY that bypasses Django's cursor wrapper.
    with connection.cursor() as cursor, connection.wrap_database_errors:
        if connection.vendor == "postgresql" and hasattr(cursor.cursor, "copy"):
            # COPY (psycopg 3) streams the rows in one command; row-by-row INSERTs cost
            # PostgreSQL a parse and plan each, several times the whole import (measured).
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in full_rows:
                    copy.write_row(row)
        else:
            # SQLite runs in-process: re-running one prepared statement is cheapest.
            # (Also the fallback elsewhere: slower, but correct.)
            placeholders = ", ".join(["%s"] * len(fields))
            cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({placeholders})",
                               full_rows)


def rows_insert_select(
    template: Model, columns: dict[str, str], source: str, params: Sequence[Any]
) -> int:
    """INSERT ... SELECT: one row of `template`'s table per row that `source` (the SQL
    after SELECT's column list: FROM, WHERE, taking `params`) yields, with the values of
    `columns` (attname -> SQL expression over `source`); every other concrete column takes
    `template`'s value, as in `rows_insert`. Returns the number of rows inserted."""
    fields, table, names = _columns(template)
    unknown = set(columns) - {f.attname for f in fields}
    if unknown:
        raise ValueError(f"{template._meta.label} has no column(s) {sorted(unknown)}")
    select, constants = [], []
    for f in fields:
        if f.attname in columns:
            select.append(columns[f.attname])
        else:
            # PostgreSQL types a SELECT's bare parameter as text, which a jsonb or
            # timestamp column refuses; SQLite's CAST would apply type affinity instead.
            cast = connection.vendor == "postgresql"
            select.append(f"CAST(%s AS {f.db_type(connection)})" if cast else "%s")
            constants.append(_prepared(f, template))
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({names}) SELECT {', '.join(select)} {source}",
                       [*constants, *params])
        return cursor.rowcount


def table_analyze(*models: type[Model]) -> None:
    """Refreshes the planner's statistics of the models' tables after a bulk write.

    A freshly imported pool or a round's fresh predictions are invisible to statistics
    until autovacuum gets round to them (and it may be off): PostgreSQL then estimates a
    handful of rows and picks nested loops over the whole table; the fast refresh's chunk
    query took 7 s instead of 0.1 s on a million documents. ANALYZE samples a fixed
    number of rows (about a second at a million) and, inside the writer's transaction,
    counts that transaction's own new rows. SQLite's ANALYZE is capped to a sample too."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA analysis_limit = 1000")
        for model in models:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
