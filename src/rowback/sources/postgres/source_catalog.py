"""What capture asks the source database: tables, keys, type names, publications, slots."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from rowback.errors import RowbackError
from rowback.model import Column, TableSchema

# Session settings that fix the text form of values, so that snapshot rows (``::text``)
# and streamed rows (pgoutput's output functions) print every value the same way.
SESSION_OPTIONS = (
    "-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=postgres "
    "-c extra_float_digits=3 -c bytea_output=hex"
)

_PK_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%%'
  AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
ORDER BY 1, 2
"""

_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod),
       coalesce(a.attnum = ANY(i.indkey), false), a.attnum
FROM pg_attribute a
LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


def connect(dsn: str, **kw: Any) -> psycopg2.extensions.connection:
    """A connection with the session settings capture relies on; one-line errors."""
    try:
        conn: psycopg2.extensions.connection = psycopg2.connect(dsn, options=SESSION_OPTIONS, **kw)
        return conn
    except psycopg2.OperationalError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "connection failed"
        raise RowbackError(f"cannot connect to the source: {first}") from None


def qualified(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


class SourceCatalog:
    """Catalog look-ups over one ordinary (non-replication) connection, cached."""

    def __init__(self, conn: psycopg2.extensions.connection, source: str) -> None:
        self.conn = conn
        self.source = source
        self._types: dict[tuple[int, int], str] = {}
        self._keys: dict[int, set[str]] = {}

    def query(self, q: str | sql.Composable, args: Any = None) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(q, args)
            return list(cur.fetchall()) if cur.description else []

    def output_text(self, conn: psycopg2.extensions.connection) -> None:
        """Make ``conn`` return every value as its type's output text, the form pgoutput
        sends (``col::text`` differs: char(n) loses its padding, inet gains ``/32``)."""
        psycopg2.extensions.register_type(self._output_text(), conn)

    def _output_text(self) -> Any:
        oids = tuple(int(r[0]) for r in self.query("SELECT oid FROM pg_type"))
        return psycopg2.extensions.new_type(oids, "ROWBACK_TEXT", lambda v, _cur: v)

    def pk_tables(self) -> list[str]:
        """Every table with a primary key, as ``schema.table``: ordinary tables and
        partitioned tables (whose partitions are captured as part of them)."""
        return [f"{s}.{t}" for s, t in self.query(_PK_TABLES)]

    def relids(self, names: Iterable[str], conn: Any = None) -> dict[str, int]:
        """The OIDs of the tables ``names`` (``schema.table``) that exist now (or in the
        snapshot ``conn`` reads): a table dropped or renamed and created again under the
        same name has another."""
        wanted = list(names)
        if not wanted:
            return {}
        q = (
            "SELECT n, to_regclass(format('%%I.%%I', split_part(n, '.', 1), "
            "substr(n, length(split_part(n, '.', 1)) + 2)))::oid FROM unnest(%s::text[]) n"
        )
        if conn is not None:
            with conn.cursor() as c:
                c.execute(q, [wanted])
                rows = c.fetchall()
        else:
            rows = self.query(q, [wanted])
        return {str(n): int(oid) for n, oid in rows if oid is not None}

    def schema_of(self, name: str) -> TableSchema:
        """The current columns of ``schema.table`` as a :class:`TableSchema`."""
        schema, _, table = name.partition(".")
        reg = self.query("SELECT to_regclass(format('%%I.%%I', %s, %s))::oid", [schema, table])
        if not reg or reg[0][0] is None:
            raise RowbackError(f"table {name} does not exist on the source")
        cols = self.query(_COLUMNS, [reg[0][0]])
        if not any(key for _, _, key, _ in cols):
            raise RowbackError(f"table {name} has no primary key: Rowback needs one to track rows")
        return TableSchema(
            self.source,
            schema,
            table,
            tuple(Column(n, t, bool(k), number=int(a)) for n, t, k, a in cols),
        )

    def column_numbers(self, relid: int) -> dict[str, int]:
        """Each live column's ``attnum``: name -> number."""
        rows = self.query(
            "SELECT attname, attnum FROM pg_attribute "
            "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped",
            [relid],
        )
        return {str(n): int(a) for n, a in rows}

    def missing_values(self, relid: int) -> dict[str, str]:
        """Columns whose value in rows older than them is not stored in those rows (``ADD
        COLUMN … DEFAULT x`` rewrites no row): name -> that value, as its type prints it."""
        rows = self.query(
            "SELECT attname, format_type(atttypid, atttypmod), attmissingval::text "
            "FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND atthasmissing "
            "AND NOT attisdropped",
            [relid],
        )
        out: dict[str, str] = {}
        if not rows:
            return out
        as_text = self._output_text()
        for name, pg_type, values in rows:
            with self.conn.cursor() as cur:
                psycopg2.extensions.register_type(as_text, cur)
                cur.execute(
                    sql.SQL("SELECT ({}::{}[])[1]").format(sql.Literal(values), sql.SQL(pg_type))
                )
                got = cur.fetchone()
            if got is not None and got[0] is not None:
                out[str(name)] = str(got[0])
        return out

    def partitioned(self, name: str) -> bool:
        """Whether ``schema.table`` is a partitioned table (its rows live in partitions)."""
        schema, _, table = name.partition(".")
        rows = self.query(
            "SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(format('%%I.%%I', %s, %s))",
            [schema, table],
        )
        return bool(rows and rows[0][0])

    def type_name(self, oid: int, typmod: int) -> str:
        got = self._types.get((oid, typmod))
        if got is None:
            got = str(self.query("SELECT format_type(%s, %s)", [oid, typmod])[0][0])
            self._types[(oid, typmod)] = got
        return got

    def key_columns(self, relid: int, refresh: bool = False) -> set[str]:
        """Primary-key column names of a relation (by oid)."""
        if refresh or relid not in self._keys:
            rows = self.query(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
                "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                "WHERE i.indrelid = %s AND i.indisprimary",
                [relid],
            )
            self._keys[relid] = {r[0] for r in rows}
        return self._keys[relid]

    def published(self, publication: str) -> set[str] | None:
        """Tables in ``publication``, or None when it does not exist."""
        if not self.query("SELECT 1 FROM pg_publication WHERE pubname = %s", [publication]):
            return None
        rows = self.query(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
            [publication],
        )
        return {f"{s}.{t}" for s, t in rows}

    def ensure_publication(self, publication: str, tables: list[str]) -> list[str]:
        """Create the publication or add missing tables to it; return the tables added."""
        have = self.published(publication)
        idents = [qualified(*t.split(".", 1)) for t in tables]
        # Changes to a partition are published as changes to its partitioned table, the
        # one that is captured; for ordinary tables the option changes nothing.
        if have is None:
            self.query(
                sql.SQL(
                    "CREATE PUBLICATION {} FOR TABLE {} WITH (publish_via_partition_root = true)"
                ).format(sql.Identifier(publication), sql.SQL(", ").join(idents))
            )
            return list(tables)
        via_root = self.query(
            "SELECT pubviaroot FROM pg_publication WHERE pubname = %s", [publication]
        )
        if via_root and not via_root[0][0]:
            self.query(
                sql.SQL("ALTER PUBLICATION {} SET (publish_via_partition_root = true)").format(
                    sql.Identifier(publication)
                )
            )
        missing = [t for t in tables if t not in have]
        if missing:
            self.query(
                sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                    sql.Identifier(publication),
                    sql.SQL(", ").join(qualified(*t.split(".", 1)) for t in missing),
                )
            )
        return missing

    def slot(self, name: str) -> tuple[str, int | None, bool] | None:
        """(plugin, confirmed_flush_lsn, active) of a replication slot, or None."""
        rows = self.query(
            "SELECT plugin, confirmed_flush_lsn - '0/0'::pg_lsn, active "
            "FROM pg_replication_slots WHERE slot_name = %s",
            [name],
        )
        if not rows:
            return None
        plugin, lsn, active = rows[0]
        return str(plugin), int(lsn) if lsn is not None else None, bool(active)

    def drop_slot(self, name: str) -> None:
        self.query("SELECT pg_drop_replication_slot(%s)", [name])

    def current_lsn(self) -> int:
        return int(self.query("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")[0][0])
