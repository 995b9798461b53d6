"""The embedded store's catalog: tables, their column versions and physical layout.

Every captured table gets two DuckDB tables:

- ``h_<id>``, its history: one row per change, typed columns ``c<phys>`` holding only
  what changed, bit masks ``_m<w>`` saying which columns were written (so a written
  NULL differs from "unchanged"), and ``_pos`` (the store's global order), ``_lsn``,
  ``_seq``, ``_txid``, ``_ts``, ``_op``;
- ``s_<id>``, its head: the current row per key as PostgreSQL text (typed key), to diff the
  next change, fill TOAST-unchanged values, and answer recent as-of queries backwards,
  with a hash of its values (``_h``, see ``digest``) that bulk writes compare with;
- ``k_<id>``, its checkpoints (``checkpoints.py``): the whole table, typed, as of a few
  store positions, so older states fold only the history since the nearest one.

A column added, dropped or retyped gets a new physical column; old ones stay, so
history written under any schema version stays readable. A typed column that meets a
value its type cannot hold (``numeric`` NaN in a DECIMAL) is *widened* to PostgreSQL text
in place, in all three tables, and ``_rb_widened`` remembers it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import duckdb

from rowback.model import Column, Op, TableSchema
from rowback.store.duckdb.types import Physical, physical

CATALOG_DDL = """
CREATE TABLE IF NOT EXISTS _rb_meta (k VARCHAR, v VARCHAR);
CREATE TABLE IF NOT EXISTS _rb_tables (
    id INTEGER, source VARCHAR, schema_name VARCHAR, table_name VARCHAR, created_pos UBIGINT);
CREATE TABLE IF NOT EXISTS _rb_columns (
    table_id INTEGER, phys INTEGER, name VARCHAR, pg_type VARCHAR, is_key BOOLEAN,
    added_pos UBIGINT, dropped_pos UBIGINT);
CREATE TABLE IF NOT EXISTS _rb_positions (source VARCHAR, position VARCHAR, updated TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS _rb_tx (
    pos_lo UBIGINT, pos_hi UBIGINT, lsn UBIGINT, txid UBIGINT, ts TIMESTAMPTZ, source VARCHAR);
-- the reversion whose revert the transaction is (NULL for every other writer's)
ALTER TABLE _rb_tx ADD COLUMN IF NOT EXISTS reversion VARCHAR;
CREATE TABLE IF NOT EXISTS _rb_checkpoints (table_id INTEGER, pos UBIGINT, rows UBIGINT);
CREATE TABLE IF NOT EXISTS _rb_missing (table_id INTEGER, phys INTEGER, value VARCHAR);
CREATE TABLE IF NOT EXISTS _rb_numbers (table_id INTEGER, phys INTEGER, number INTEGER);
CREATE TABLE IF NOT EXISTS _rb_widened (table_id INTEGER, phys INTEGER);
CREATE TABLE IF NOT EXISTS _rb_quarantine (
    id BIGINT, source VARCHAR, location VARCHAR, line BIGINT, error VARCHAR, raw BLOB,
    quarantined_at TIMESTAMPTZ);
"""

MASK_BITS = 64


def unregister(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop a registered Arrow view; after a failed statement DuckDB refuses even this, and
    that refusal must not hide the error that caused it."""
    with contextlib.suppress(duckdb.Error):
        con.unregister(name)


def first(rows: list[tuple[Any, ...]]) -> tuple[Any, ...] | None:
    """The first row, or None: DuckDB 2 wants every result read to its end."""
    return rows[0] if rows else None


@dataclass
class PhysColumn:
    """A physical column: one (name, type) lifetime of a logical column."""

    phys: int
    name: str
    pg_type: str
    key: bool
    added_pos: int
    dropped_pos: int | None = None
    missing: str | None = None
    """What rows that existed when the column was added hold in it without a version
    saying so (``Column.missing``); a fold that finds no version writing it gives this."""
    widened: bool = False
    """Held as PostgreSQL text since a value its DuckDB type cannot hold arrived."""
    number: int | None = None
    """The source's column number (``Column.number``), when it has them."""

    @property
    def physical(self) -> Physical:
        got = physical(self.pg_type)
        return got.widened() if self.widened else got

    def missing_sql(self) -> str | None:
        """``missing`` as a typed SQL literal, or None."""
        if self.missing is None:
            return None
        return self.physical.cast("'" + self.missing.replace("'", "''") + "'")

    def alive_at(self, pos: int) -> bool:
        return self.added_pos <= pos and (self.dropped_pos is None or self.dropped_pos > pos)


@dataclass(frozen=True)
class Checkpoint:
    """The table's whole state as of store position ``pos`` (inclusive): ``rows`` live rows."""

    pos: int
    rows: int


@dataclass
class Table:
    """A captured table and where each of its schema versions' columns live."""

    id: int
    source: str
    schema: str
    name: str
    created_pos: int
    columns: list[PhysColumn] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)  # by position
    truncates: list[int] = field(default_factory=list)  # positions of TRUNCATEs, in order
    # changes since the last checkpoint; None until this process first writes the table
    since_checkpoint: int | None = None
    # id(TableSchema) -> physical index of each of its columns; a source reuses one
    # TableSchema object per relation version, so this is a cheap identity cache.
    _layouts: dict[int, tuple[int, ...]] = field(default_factory=dict)
    _schemas: dict[int, TableSchema] = field(default_factory=dict)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def hist(self) -> str:
        return f"h_{self.id}"

    @property
    def head(self) -> str:
        return f"s_{self.id}"

    @property
    def ckpt(self) -> str:
        return f"k_{self.id}"

    @property
    def alive(self) -> list[PhysColumn]:
        return [c for c in self.columns if c.dropped_pos is None]

    @property
    def key_columns(self) -> list[PhysColumn]:
        return [c for c in self.alive if c.key] or [c for c in self.columns if c.key]

    def mask_words(self) -> int:
        return max(1, (len(self.columns) + MASK_BITS - 1) // MASK_BITS)

    def layout(self, schema: TableSchema) -> tuple[int, ...] | None:
        """Physical positions of ``schema``'s columns, or None if it is a new version."""
        got = self._layouts.get(id(schema))
        if got is not None and self._schemas[id(schema)] is schema:
            return got
        alive = {(c.name, c.pg_type): c.phys for c in self.alive}
        try:
            found = tuple(alive[(c.name, c.type)] for c in schema.columns)
        except KeyError:
            return None
        if len(found) != len(alive):
            return None
        self._layouts[id(schema)] = found
        self._schemas[id(schema)] = schema
        return found


def evolve(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    schema: TableSchema,
    pos: int,
    new_table: bool = False,
) -> list[tuple[PhysColumn, PhysColumn]]:
    """Bring ``table`` to ``schema``'s columns at ``pos``: drop what is gone, add what is
    new. An added column with a ``missing`` value gives it to every current row (the
    head) and keeps it for folds over older versions; a new table has no older rows.
    Returns the (old, new) physical columns of each retyped column, for ``retype``."""
    wanted = {(c.name, c.type): c for c in schema.columns}
    dropped: dict[str, PhysColumn] = {}
    retyped: list[tuple[PhysColumn, PhysColumn]] = []
    for col in table.alive:
        if (col.name, col.pg_type) not in wanted:
            dropped[col.name] = col
            col.dropped_pos = pos
            con.execute(
                "UPDATE _rb_columns SET dropped_pos = ? WHERE table_id = ? AND phys = ?",
                [pos, table.id, col.phys],
            )
    have = {(c.name, c.pg_type) for c in table.alive}
    for c in schema.columns:
        if (c.name, c.type) in have:
            continue
        words_before = table.mask_words()
        new = PhysColumn(len(table.columns), c.name, c.type, c.key, pos)
        table.columns.append(new)
        con.execute(
            "INSERT INTO _rb_columns VALUES (?, ?, ?, ?, ?, ?, NULL)",
            [table.id, new.phys, c.name, c.type, c.key, pos],
        )
        con.execute(f"ALTER TABLE {table.hist} ADD COLUMN c{new.phys} {new.physical.duck}")
        head_type = new.physical.duck if new.key else "VARCHAR"  # typed keys join fast
        con.execute(f"ALTER TABLE {table.head} ADD COLUMN c{new.phys} {head_type}")
        if table.mask_words() > words_before:
            con.execute(f"ALTER TABLE {table.hist} ADD COLUMN _m{words_before} UBIGINT DEFAULT 0")
        if c.missing is not None and not c.key and not new_table:
            if new.physical.overflows(c.missing):
                widen(con, table, [new])
            new.missing = c.missing
            con.execute("INSERT INTO _rb_missing VALUES (?, ?, ?)", [table.id, new.phys, c.missing])
            con.execute(f"UPDATE {table.head} SET c{new.phys} = ?", [c.missing])
        if c.number is not None:
            new.number = c.number
            con.execute("INSERT INTO _rb_numbers VALUES (?, ?, ?)", [table.id, new.phys, c.number])
        old = None if new_table else _same_column(c, dropped)
        if old is not None:
            retyped.append((old, new))
    table._layouts.clear()
    table._schemas.clear()
    return retyped


def _same_column(c: Column, dropped: dict[str, PhysColumn]) -> PhysColumn | None:
    """The dropped physical column that ``c`` continues, if any: the rows keep their values.

    The source's column number says it best: the same number is the same column, renamed
    (``RENAME COLUMN`` sends no row either) and/or retyped; another number under the same
    name is DROP COLUMN a, ADD COLUMN a. Without numbers (Debezium) a name dropped and
    added in one version is a retype, unless PostgreSQL gave the column a stored default
    (attmissingval): ALTER ... TYPE rewrites the table, which leaves no missing value."""
    if c.number is not None:
        for col in dropped.values():
            if col.number == c.number:
                return col
    old = dropped.get(c.name)
    if old is None or c.missing is not None:
        return None
    if old.number is not None and c.number is not None:
        return None  # same name, another column
    return old


def widen(con: duckdb.DuckDBPyConnection, table: Table, cols: list[PhysColumn]) -> None:
    """Turn ``cols`` of ``table`` into PostgreSQL text for good: history, checkpoints and
    the head's typed key columns are converted in place (DuckDB rewrites the column), so a
    value its type cannot hold can be written next, and every fold reads one type."""
    have = {
        (r[0], r[1])
        for r in con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() "
            "WHERE table_name IN (?, ?) AND database_name = current_database()",
            [table.head, table.ckpt],
        ).fetchall()
    }
    for c in cols:
        if c.widened:
            continue
        was = c.physical
        name = f"c{c.phys}"
        targets = [table.hist] + [t for t in (table.head, table.ckpt) if (t, name) in have]
        for target in targets:
            if target == table.head and not c.key:
                continue  # the head holds values as text already
            con.execute(
                f"ALTER TABLE {target} ALTER COLUMN {name} TYPE VARCHAR USING {was.text(name)}"
            )
        con.execute("INSERT INTO _rb_widened VALUES (?, ?)", [table.id, c.phys])
        c.widened = True


def digest(table: Table, layout: tuple[int, ...], prefix: str = "c") -> str:
    """SQL hashing a row's values (not its key) in ``layout``, in physical order. The head keeps it
    per row (``_h``), so a bulk write compares before images with the head's rows without
    reading their values: reading every value column of the head for each batch was most
    of a bulk write's diff. A stale or missing ``_h`` only sends the batch down the exact
    path that compares values (``vector._work_sql``)."""
    # in physical order, whatever the layout's: a head hashed under one field order must not
    # match a before image whose values moved between columns under another
    values = sorted(p for p in layout if not table.columns[p].key)
    return f"hash({', '.join(f'{prefix}{p}' for p in values)})" if values else "NULL::UBIGINT"


def rehash(con: duckdb.DuckDBPyConnection, table: Table, layout: tuple[int, ...]) -> None:
    """Recompute the head's ``_h`` for ``layout`` (after a schema change, or for a head
    written before ``_h`` existed)."""
    con.execute(f"UPDATE {table.head} SET _h = {digest(table, layout)}")


def create(con: duckdb.DuckDBPyConnection, table_id: int, schema: TableSchema, pos: int) -> Table:
    """Register a new captured table and create its history and head tables."""
    t = Table(table_id, schema.source, schema.schema, schema.name, pos)
    con.execute(
        "INSERT INTO _rb_tables VALUES (?, ?, ?, ?, ?)",
        [table_id, schema.source, schema.schema, schema.name, pos],
    )
    con.execute(
        f"CREATE TABLE {t.hist} (_pos UBIGINT, _lsn UBIGINT, _seq UINTEGER, _txid UBIGINT, "
        "_ts TIMESTAMPTZ, _op UTINYINT, _m0 UBIGINT)"
    )
    con.execute(f"CREATE TABLE {t.head} (_pos UBIGINT, _h UBIGINT)")
    evolve(con, t, schema, pos, new_table=True)
    return t


def _rows(con: duckdb.DuckDBPyConnection, query: str) -> list[tuple[Any, ...]]:
    """``query``'s rows; none when its table does not exist."""
    try:
        return con.execute(query).fetchall()
    except duckdb.CatalogException:
        return []


def load(con: duckdb.DuckDBPyConnection) -> dict[int, Table]:
    """Read the whole catalog."""
    tables = {
        r[0]: Table(r[0], r[1], r[2], r[3], r[4])
        for r in con.execute(
            "SELECT id, source, schema_name, table_name, created_pos FROM _rb_tables"
        ).fetchall()
    }
    rows = con.execute(
        "SELECT table_id, phys, name, pg_type, is_key, added_pos, dropped_pos "
        "FROM _rb_columns ORDER BY table_id, phys"
    ).fetchall()
    for tid, phys, name, pg_type, key, added, dropped in rows:
        tables[tid].columns.append(PhysColumn(phys, name, pg_type, key, added, dropped))
    # per-column facts kept beside _rb_columns (added by later versions: a store written
    # before one of them, opened read-only, has not got that table)
    for tid, phys, value in _rows(con, "SELECT table_id, phys, value FROM _rb_missing"):
        if tid in tables:
            tables[tid].columns[phys].missing = value
    for tid, phys, number in _rows(con, "SELECT table_id, phys, number FROM _rb_numbers"):
        if tid in tables:
            tables[tid].columns[phys].number = int(number)
    for tid, phys in _rows(con, "SELECT table_id, phys FROM _rb_widened"):
        if tid in tables:
            tables[tid].columns[phys].widened = True
    try:
        cps = con.execute(
            "SELECT table_id, pos, rows FROM _rb_checkpoints ORDER BY table_id, pos"
        ).fetchall()
    except duckdb.CatalogException:  # a store written before checkpoints, opened read-only
        cps = []
    for tid, pos, n in cps:
        if tid in tables:
            tables[tid].checkpoints.append(Checkpoint(int(pos), int(n)))
    for t in tables.values():
        # zone maps on _op answer this without a scan when there is no TRUNCATE
        t.truncates = [
            int(r[0])
            for r in con.execute(
                f"SELECT _pos FROM {t.hist} WHERE _op = {Op.TRUNCATE} ORDER BY _pos"
            ).fetchall()
        ]
    return tables


def current_schema(t: Table) -> TableSchema | None:
    """``t``'s live version: in the source's column order when every column has a number,
    else in the store's."""
    alive = t.alive
    if not alive:
        return None
    numbered = all(c.number is not None for c in alive)
    cols = sorted(alive, key=lambda c: c.number or 0) if numbered else alive
    return TableSchema(
        t.source,
        t.schema,
        t.name,
        tuple(Column(c.name, c.pg_type, c.key, c.missing, c.number) for c in cols),
    )


def reverting(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, int], str]:
    """(source, txid) -> reversion id of every transaction that is one of Rowback's own
    reverts. A store opened read-only that was never opened for writing since the column
    was added has none."""
    has = con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE table_name = '_rb_tx' "
        "AND column_name = 'reversion' AND database_name = current_database()"
    ).fetchall()
    if not has[0][0]:
        return {}
    rows = con.execute(
        "SELECT source, txid, max(reversion) FROM _rb_tx WHERE reversion IS NOT NULL "
        "GROUP BY source, txid"
    ).fetchall()
    return {(str(r[0]), int(r[1])): str(r[2]) for r in rows}
