"""Reverse SQL: plain PostgreSQL for a plan, each statement guarded by the values the
shadow says its row holds now, so a write that landed since is never overwritten.

Values are PostgreSQL text with an explicit cast to the column's type
(``'9.90'::numeric(12,2)``), which reads back exactly what was captured.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from rowback.model import Text
from rowback.revert.plan import Action, Mode, Plan, RowPlan

LOCK_TIMEOUT = "2s"
STATEMENT_TIMEOUT = "30s"
DISABLE_TRIGGERS = "session_replication_role = replica"
"""What ``--disable-triggers`` sets for the reverting transaction."""
MESSAGE_PREFIX = "rowback.revert"
"""The prefix of the logical message that marks a reverting transaction."""

# types without an equality operator: compared through one that has one
_COMPARE_AS = {"json": "jsonb", "xml": "text", "point": "text"}


@dataclass(frozen=True)
class TargetCatalog:
    """What the target's catalog says that the statements must respect: foreign keys
    (child table -> the tables it references), generated columns (never written) and
    identity columns (``always`` ones need ``OVERRIDING SYSTEM VALUE``)."""

    parents: Mapping[str, frozenset[str]] = field(default_factory=dict)
    generated: Mapping[str, frozenset[str]] = field(default_factory=dict)
    identity_always: Mapping[str, frozenset[str]] = field(default_factory=dict)
    sequenced: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Columns filled from a sequence (identity or ``nextval`` default)."""


NO_CATALOG = TargetCatalog()


def table_order(tables: list[str], parents: Mapping[str, frozenset[str]]) -> list[str]:
    """``tables`` with every referenced table before the tables referencing it (a cycle
    keeps the rest in name order).

    >>> table_order(["a.child", "a.parent"], {"a.child": frozenset({"a.parent"})})
    ['a.parent', 'a.child']
    """
    left = sorted(set(tables))
    out: list[str] = []
    while left:
        ready = [t for t in left if not (parents.get(t, frozenset()) - {t}) & set(left)]
        take = ready[0] if ready else left[0]
        out.append(take)
        left.remove(take)
    return out


@dataclass(frozen=True)
class Statement:
    """One guarded statement; it must affect exactly one row. Its SQL is written when
    asked for: the apply sends most updates as batches, which never need it."""

    row: RowPlan
    catalog: TargetCatalog = field(default_factory=TargetCatalog, compare=False)

    @property
    def sql(self) -> str:
        return _sql(self.row, self.catalog)

    def describe(self) -> str:
        r = self.row
        shown = ", ".join("NULL" if k is None else k for k in r.key)
        return f"{r.action.value} {r.table} ({', '.join(r.key_columns)})=({shown})"


def ident(name: str) -> str:
    """A quoted identifier.

    >>> ident('we"ird')
    '"we""ird"'
    """
    return '"' + name.replace('"', '""') + '"'


def table_ident(qualified: str) -> str:
    """``schema.table`` quoted (the name splits at its first dot, as the store keeps it)."""
    schema, _, rel = qualified.partition(".")
    return f"{ident(schema)}.{ident(rel)}"


def literal(value: Text, pg_type: str) -> str:
    """An exact typed literal.

    >>> literal("it's", "text")
    "'it''s'::text"
    >>> literal(None, "integer")
    'NULL::integer'
    """
    if value is None:
        return f"NULL::{pg_type}"
    return "'" + value.replace("'", "''") + f"'::{pg_type}"


def same(column: str, value: Text, pg_type: str) -> str:
    """``column`` holds ``value`` (NULL included)."""
    other = _COMPARE_AS.get(pg_type)
    if other is None:
        return f"{ident(column)} IS NOT DISTINCT FROM {literal(value, pg_type)}"
    return f"{ident(column)}::{other} IS NOT DISTINCT FROM {literal(value, pg_type)}::{other}"


def _same_as(left: str, right: str, pg_type: str) -> str:
    """``left`` and ``right`` (SQL expressions of ``pg_type``) hold the same value."""
    other = _COMPARE_AS.get(pg_type)
    if other is None:
        return f"{left} IS NOT DISTINCT FROM {right}"
    return f"{left}::{other} IS NOT DISTINCT FROM {right}::{other}"


BATCH_ROWS = 50_000
"""Rows per set-based UPDATE: its values go to PostgreSQL by COPY (a few MB), so round
trips and parsing stop mattering; the guarded join then runs once per batch."""


@dataclass(frozen=True)
class Batch:
    """Rows of one table and one shape as one guarded set-based statement over a
    temporary table that COPY filled with each row's key, expected and target values; it
    returns the position (in ``rows``) of each row it changed: a row it does not return
    changed since the plan. Updates (writing the same columns) are an ``UPDATE … FROM``,
    rows coming back an ``INSERT … SELECT`` of those whose key is free, rows going away a
    ``DELETE … USING`` guarded by their expected values. One statement per row costs a
    round trip and a plan each (~0.1 ms): 10 s for a 100,000-row revert; a VALUES list of
    literals (updates only, for a role without TEMPORARY) costs its parse."""

    rows: tuple[Statement, ...]
    table: str
    keys: tuple[tuple[str, str], ...]
    """(column, type) of the key."""
    cols: tuple[tuple[str, str], ...]
    """(column, type) of the cells written (update, insert) or guarded (delete)."""
    size: int = 0
    """How many rows, once ``rows`` is dropped (its values loaded already)."""
    action: Action = Action.update
    always: bool = False
    """An insert writes an ``identity ALWAYS`` column (``OVERRIDING SYSTEM VALUE``)."""

    @property
    def _expects(self) -> bool:
        return self.action is not Action.insert

    @property
    def _targets(self) -> bool:
        return self.action is not Action.delete

    def create(self, temp: str) -> str:
        """The temporary table for the values (dropped at commit)."""
        defs = ["_i integer"] + [f"k{j} {t}" for j, (_, t) in enumerate(self.keys)]
        if self._expects:
            defs += [f"e{j} {t}" for j, (_, t) in enumerate(self.cols)]
        if self._targets:
            defs += [f"g{j} {t}" for j, (_, t) in enumerate(self.cols)]
        return f"CREATE TEMPORARY TABLE {ident(temp)} ({', '.join(defs)}) ON COMMIT DROP"

    def copy(self, temp: str) -> str:
        return f"COPY {ident(temp)} FROM STDIN"

    def data(self) -> str:
        """The rows for :meth:`copy`, in COPY's text format (values are PostgreSQL text,
        read by each type's input function, as the literals' casts read them)."""
        lines = []
        names = [c for c, _ in self.cols]
        for i, st in enumerate(self.rows):
            r = st.row
            by_name = {c.column: c for c in r.cells}
            vals = [str(i), *map(_copy_text, r.key)]
            if self._expects:
                vals += [_copy_text(by_name[c].expected) for c in names]
            if self._targets:
                vals += [_copy_text(by_name[c].target) for c in names]
            lines.append("\t".join(vals))
        return "\n".join(lines) + "\n"

    def values(self) -> str:
        """The same update with its values as a VALUES list of literals: for a role that
        may not create temporary tables (it parses slower)."""
        assert self.action is Action.update, "only updates are batched without TEMPORARY"
        names = ["_i", *(f"k{j}" for j in range(len(self.keys)))]
        names += [f"e{j}" for j in range(len(self.cols))] + [f"g{j}" for j in range(len(self.cols))]
        values = []
        for i, st in enumerate(self.rows):
            r = st.row
            by_name = {c.column: c for c in r.cells}
            parts = [str(i)] + [literal(v, t) for v, t in zip(r.key, r.key_types, strict=True)]
            parts += [literal(by_name[c].expected, t) for c, t in self.cols]
            parts += [literal(by_name[c].target, t) for c, t in self.cols]
            values.append("(" + ", ".join(parts) + ")")
        return self.update(f"(VALUES {', '.join(values)}) AS _v({', '.join(names)})", raw=True)

    def update(self, temp: str, raw: bool = False) -> str:
        """The statement over ``temp`` (for every action, despite the name)."""
        t = table_ident(self.table)
        on = [f"_t.{ident(c)} = _v.k{j}" for j, (c, _) in enumerate(self.keys)]
        if self.action is Action.insert:
            cols = ", ".join(ident(c) for c, _ in self.cols)
            vals = ", ".join(f"_todo.g{j}" for j in range(len(self.cols)))
            over = " OVERRIDING SYSTEM VALUE" if self.always else ""
            # a data-modifying CTE runs once, whole: the rows it inserts are _todo's
            return (
                f"WITH _todo AS (SELECT * FROM {ident(temp)} AS _v WHERE NOT EXISTS "
                f"(SELECT 1 FROM {t} AS _t WHERE {' AND '.join(on)})), "
                f"_ins AS (INSERT INTO {t} ({cols}){over} SELECT {vals} FROM _todo) "
                "SELECT _i FROM _todo"
            )
        on += [_same_as(f"_t.{ident(c)}", f"_v.e{j}", ty) for j, (c, ty) in enumerate(self.cols)]
        src = temp if raw else ident(temp) + " AS _v"
        if self.action is Action.delete:
            return f"DELETE FROM {t} AS _t USING {src} WHERE {' AND '.join(on)} RETURNING _v._i"
        sets = ", ".join(f"{ident(c)} = _v.g{j}" for j, (c, _) in enumerate(self.cols))
        return f"UPDATE {t} AS _t SET {sets} FROM {src} WHERE {' AND '.join(on)} RETURNING _v._i"


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _copy_text(value: Text) -> str:
    """A value in COPY's text format.

    >>> _copy_text(None), _copy_text("a\\tb\\n"), _copy_text("c:\\\\x")
    ('\\\\N', 'a\\\\tb\\\\n', 'c:\\\\\\\\x')
    """
    return "\\N" if value is None else value.translate(_COPY_ESCAPES)


def _cells_of(row: RowPlan, catalog: TargetCatalog) -> tuple[tuple[str, str], ...]:
    """The (column, type) a batch of ``row``'s action carries: cells written (update),
    values inserted (insert, generated columns left out), values guarded (delete)."""
    generated = catalog.generated.get(row.table, frozenset())
    if row.action is Action.update:
        return tuple(
            (c.column, c.type) for c in row.cells if c.written and c.column not in generated
        )
    if row.action is Action.insert:
        return tuple((c.column, c.type) for c in row.cells if c.column not in generated)
    keys = set(row.key_columns)
    return tuple((c.column, c.type) for c in row.cells if c.column not in keys)


def update_batch(stmts: list[Statement], catalog: TargetCatalog = NO_CATALOG) -> Batch:
    """One guarded set-based statement for ``stmts`` (rows of one table and one action
    with the same cells; for updates, key columns not among them)."""
    first = stmts[0].row
    keys = tuple(zip(first.key_columns, first.key_types, strict=True))
    cols = _cells_of(first, catalog)
    always = catalog.identity_always.get(first.table, frozenset())
    over = first.action is Action.insert and any(c in always for c, _ in cols)
    return Batch(tuple(stmts), first.table, keys, cols, action=first.action, always=over)


def batched(
    stmts: Iterator[Statement], catalog: TargetCatalog = NO_CATALOG, sets: bool = True
) -> Iterator[Statement | Batch]:
    """``stmts`` in the same order, runs of one table, action and shape gathered into
    :class:`Batch`es: updates writing the same columns (none of them a key column), and
    with ``sets`` (a temporary table may be made) inserts and deletes too."""
    run: list[Statement] = []
    shape: object = None

    def flush() -> Iterator[Statement | Batch]:
        if len(run) > 1:
            yield update_batch(run, catalog)
        else:
            yield from run
        run.clear()

    for st in stmts:
        r = st.row
        this: object = None
        if r.action is Action.update or (sets and r.action in (Action.insert, Action.delete)):
            cells = _cells_of(r, catalog)
            if r.action is not Action.update or not {c for c, _ in cells} & set(r.key_columns):
                this = (r.action, r.table, cells, r.key_types) if cells else None
        if this is None or this != shape or len(run) >= BATCH_ROWS:
            yield from flush()
        shape = this
        if this is None:
            yield st
        else:
            run.append(st)
    yield from flush()


def _key(row: RowPlan) -> str:
    return " AND ".join(
        f"{ident(c)} = {literal(v, t)}"
        for c, v, t in zip(row.key_columns, row.key, row.key_types, strict=True)
    )


def statement(row: RowPlan, catalog: TargetCatalog = NO_CATALOG) -> Statement | None:
    """The guarded statement for one row (None when nothing is written to it)."""
    if row.action is Action.update:
        generated = catalog.generated.get(row.table, frozenset())
        if not any(c.written and c.column not in generated for c in row.cells):
            return None
    elif row.action not in (Action.delete, Action.insert):
        return None
    return Statement(row, catalog)


def _sql(row: RowPlan, catalog: TargetCatalog) -> str:
    t = table_ident(row.table)
    generated = catalog.generated.get(row.table, frozenset())
    if row.action is Action.update:
        cells = [c for c in row.cells if c.written and c.column not in generated]
        sets = ", ".join(f"{ident(c.column)} = {literal(c.target, c.type)}" for c in cells)
        guard = " AND ".join([_key(row)] + [same(c.column, c.expected, c.type) for c in cells])
        return f"UPDATE {t} SET {sets} WHERE {guard}"
    if row.action is Action.delete:
        keys = set(row.key_columns)
        guard = " AND ".join(
            [_key(row)]
            + [same(c.column, c.expected, c.type) for c in row.cells if c.column not in keys]
        )
        return f"DELETE FROM {t} WHERE {guard}"
    cells = [c for c in row.cells if c.column not in generated]
    cols = ", ".join(ident(c.column) for c in cells)
    vals = ", ".join(literal(c.target, c.type) for c in cells)
    always = catalog.identity_always.get(row.table, frozenset())
    over = " OVERRIDING SYSTEM VALUE" if any(c.column in always for c in cells) else ""
    return (
        f"INSERT INTO {t} ({cols}){over} SELECT {vals} "
        f"WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {_key(row)})"
    )


def statements(plan: Plan, catalog: TargetCatalog = NO_CATALOG) -> Iterator[Statement]:
    """Every guarded statement of ``plan``, along the foreign-key graph: rows coming back
    are inserted parents first, then the updates, then rows going away are deleted
    children first, so no statement meets a reference that is not there yet."""
    order = table_order(list(plan.tables), catalog.parents)
    passes = [(Action.insert, t) for t in order] + [(Action.update, t) for t in order]
    passes += [(Action.delete, t) for t in reversed(order)]
    for action, table in passes:  # one pass over the plan's chunks each: bounded memory
        if (table, action) not in plan.actions:
            continue
        for row in plan.rows.of(table, action):  # plan order within a table
            got = statement(row, catalog)
            if got is not None:
                yield got


def sequence_notes(plan: Plan, catalog: TargetCatalog) -> list[str]:
    """What a revert does not undo: sequences that the reverted inserts advanced."""
    tables = sorted({t for t, a in plan.actions if a is Action.delete})
    return [
        f"{t}.{c}: its sequence is not rewound (the values the reverted inserts took stay used)"
        for t in tables
        for c in sorted(catalog.sequenced.get(t, frozenset()))
    ]


def _dollar(body: str) -> str:
    tag = "rb"
    while f"${tag}$" in body:
        tag += "_"
    return f"${tag}$"


def script(
    plan: Plan,
    reversion: str,
    catalog: TargetCatalog = NO_CATALOG,
    disable_triggers: bool = False,
) -> Iterator[str]:
    """The reverse SQL file, line by line: one transaction, timeouts, the marking message,
    each statement in a DO block that checks it changed exactly one row: a mismatch
    aborts the transaction (nocascade, force) or is noticed and left (nonconflict)."""
    txids = ", ".join(str(x) for x in plan.txids)
    yield f"-- rowback revert of tx {txids}, mode {plan.mode.value}, reversion {reversion}\n"
    yield "-- every statement is guarded by the values the shadow holds for its row now\n"
    yield "BEGIN;\n"
    yield f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}';\n"
    yield f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}';\n"
    if disable_triggers:
        yield f"SET LOCAL {DISABLE_TRIGGERS};  -- triggers do not fire (needs a superuser)\n"
    mark = literal(reversion, "text")
    yield f"SELECT pg_logical_emit_message(true, '{MESSAGE_PREFIX}', {mark});\n"
    for note in sequence_notes(plan, catalog):
        yield f"-- {note}\n"
    for s in statements(plan, catalog):
        what = s.describe().replace("'", "''").replace("%", "%%")
        if plan.mode is Mode.nonconflict:
            miss = f"RAISE NOTICE 'rowback: changed since the plan, left as it is: {what}'"
        else:
            miss = f"RAISE EXCEPTION 'rowback: changed since the plan: {what}'"
        body = f"BEGIN {s.sql}; IF NOT FOUND THEN {miss}; END IF; END"
        q = _dollar(body)
        yield f"DO {q} {body} {q};\n"
    yield "COMMIT;\n"
