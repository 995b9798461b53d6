"""Reverse SQL: plain PostgreSQL for a plan, each statement guarded by the values the
shadow says its row holds now, so a write that landed since is never overwritten.

Values are PostgreSQL text with an explicit cast to the column's type
(``'9.90'::numeric(12,2)``), which reads back exactly what was captured.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from rowback.model import Text
from rowback.revert.plan import Action, Mode, Plan, RowPlan

LOCK_TIMEOUT = "2s"
STATEMENT_TIMEOUT = "30s"
MESSAGE_PREFIX = "rowback.revert"
"""The prefix of the logical message that marks a reverting transaction."""

# types without an equality operator: compared through one that has one
_COMPARE_AS = {"json": "jsonb", "xml": "text", "point": "text"}


@dataclass(frozen=True)
class Statement:
    """One guarded statement; it must affect exactly one row."""

    row: RowPlan
    sql: str

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


def _key(row: RowPlan) -> str:
    return " AND ".join(
        f"{ident(c)} = {literal(v, t)}"
        for c, v, t in zip(row.key_columns, row.key, row.key_types, strict=True)
    )


def statement(row: RowPlan) -> Statement | None:
    """The guarded statement for one row (None when nothing is written to it)."""
    t = table_ident(row.table)
    if row.action is Action.update:
        cells = [c for c in row.cells if c.written]
        sets = ", ".join(f"{ident(c.column)} = {literal(c.target, c.type)}" for c in cells)
        guard = " AND ".join([_key(row)] + [same(c.column, c.expected, c.type) for c in cells])
        return Statement(row, f"UPDATE {t} SET {sets} WHERE {guard}")
    if row.action is Action.delete:
        keys = set(row.key_columns)
        guard = " AND ".join(
            [_key(row)]
            + [same(c.column, c.expected, c.type) for c in row.cells if c.column not in keys]
        )
        return Statement(row, f"DELETE FROM {t} WHERE {guard}")
    if row.action is Action.insert:
        cols = ", ".join(ident(c.column) for c in row.cells)
        vals = ", ".join(literal(c.target, c.type) for c in row.cells)
        return Statement(
            row,
            f"INSERT INTO {t} ({cols}) SELECT {vals} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {_key(row)})",
        )
    return None


def statements(plan: Plan) -> Iterator[Statement]:
    """Every guarded statement of ``plan``, in plan order."""
    for row in plan.rows:
        got = statement(row)
        if got is not None:
            yield got


def _dollar(body: str) -> str:
    tag = "rb"
    while f"${tag}$" in body:
        tag += "_"
    return f"${tag}$"


def script(plan: Plan, reversion: str) -> Iterator[str]:
    """The reverse SQL file, line by line: one transaction, timeouts, the marking message,
    each statement in a DO block that checks it changed exactly one row: a mismatch
    aborts the transaction (nocascade, force) or is noticed and left (nonconflict)."""
    txids = ", ".join(str(x) for x in plan.txids)
    yield f"-- rowback revert of tx {txids}, mode {plan.mode.value}, reversion {reversion}\n"
    yield "-- every statement is guarded by the values the shadow holds for its row now\n"
    yield "BEGIN;\n"
    yield f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}';\n"
    yield f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}';\n"
    mark = literal(reversion, "text")
    yield f"SELECT pg_logical_emit_message(true, '{MESSAGE_PREFIX}', {mark});\n"
    for s in statements(plan):
        what = s.describe().replace("'", "''").replace("%", "%%")
        if plan.mode is Mode.nonconflict:
            miss = f"RAISE NOTICE 'rowback: changed since the plan, left as it is: {what}'"
        else:
            miss = f"RAISE EXCEPTION 'rowback: changed since the plan: {what}'"
        body = f"BEGIN {s.sql}; IF NOT FOUND THEN {miss}; END IF; END"
        q = _dollar(body)
        yield f"DO {q} {body} {q};\n"
    yield "COMMIT;\n"
