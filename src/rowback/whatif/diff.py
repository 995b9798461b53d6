"""The pure half of ``whatif``: row images in, the changes and their summary out.

Images are PostgreSQL text (``{column: text or None}``), keyed by the table's primary
key (its ctid when it has none). A row the statement wrote has an after image; its
before image is what the statement's snapshot held under that key (none: inserted). A
row that only lost its snapshot version (deleted) has a before image and no after one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Row = Mapping[str, str | None]
Key = tuple[str | None, ...]

DIRECT = "direct"
"""``via`` of a row in a table the statement itself writes."""
CASCADE = "cascade"
"""``via`` of a row in a table a foreign-key action of a written table reaches."""
TRIGGER = "trigger"
"""``via`` of a row in any other table: a trigger wrote it."""


class Op(StrEnum):
    insert = "insert"
    update = "update"
    delete = "delete"


@dataclass(frozen=True)
class Change:
    """One row the statement would insert, update or delete, and what it would hold."""

    table: str
    op: Op
    key: dict[str, str | None]
    before: Row | None
    after: Row | None
    changed: list[str]
    """Columns whose value differs (all of them for an insert or a delete)."""
    via: str = DIRECT


@dataclass(frozen=True)
class Failure:
    """How the statement would fail: PostgreSQL's own error."""

    sqlstate: str | None
    message: str
    constraint: str | None = None
    table: str | None = None


@dataclass
class Outcome:
    """Everything a whatif found: the changes, the failure if any, and the time taken."""

    changes: list[Change] = field(default_factory=list)
    failure: Failure | None = None
    elapsed_ms: float = 0.0
    rowcount: int | None = None
    """What PostgreSQL reported for the statement itself (its own rows only)."""


def table_changes(
    table: str,
    key_columns: Sequence[str],
    after: Mapping[Key, Row],
    before: Mapping[Key, Row],
    gone: Mapping[Key, Row],
    via: str = DIRECT,
) -> list[Change]:
    """The changes to one table: ``after`` the rows the statement wrote, ``before`` the
    snapshot's rows under those keys, ``gone`` snapshot rows absent afterwards.

    >>> after = {("1",): {"id": "1", "price": "0"}, ("9",): {"id": "9", "price": "5"}}
    >>> before = {("1",): {"id": "1", "price": "2"}}
    >>> [(c.op.value, c.changed) for c in table_changes("s.t", ["id"], after, before, {})]
    [('update', ['price']), ('insert', ['id', 'price'])]
    """
    out: list[Change] = []
    for k, a in after.items():
        b = before.get(k)
        keyd = dict(zip(key_columns, k, strict=True))
        if b is None:
            out.append(Change(table, Op.insert, keyd, None, a, list(a), via))
        else:
            diff = [c for c in a if b.get(c) != a[c]]
            out.append(Change(table, Op.update, keyd, b, a, diff, via))
    for k, b in gone.items():
        keyd = dict(zip(key_columns, k, strict=True))
        out.append(Change(table, Op.delete, keyd, b, None, list(b), via))
    return out


def via_of(table: str, direct: set[str], actions: Mapping[str, frozenset[str]]) -> str:
    """How a touched table was reached: written by the statement, by a foreign-key
    action (``actions``: child -> parents whose delete or update acts on it), or else by
    a trigger.

    >>> via_of("a.line", {"a.order"}, {"a.line": frozenset({"a.order"})})
    'cascade'
    """
    if table in direct:
        return DIRECT
    return CASCADE if actions.get(table, frozenset()) & direct else TRIGGER


CELL_COLUMNS = ["table", "key", "op", "via", "column", "before", "after", "changed"]
CELL_TYPES = {"key": "row"}
JSON_COLUMNS = ["table", "op", "key", "before", "after", "changed", "via"]
JSON_TYPES = {"key": "row", "before": "row", "after": "row", "changed": "changed"}


def cell_rows(changes: Sequence[Change]) -> Iterator[tuple[object, ...]]:
    """Changes as lines for a table or CSV, one per cell, as ``revert --dry-run`` prints
    a plan: an update shows its changed cells, an insert or delete every cell;
    ``changed`` marks a cell whose value the statement changes."""
    for c in changes:
        cols = c.changed if c.op is Op.update else list((c.after or c.before or {}).keys())
        if not cols:
            yield (c.table, c.key, c.op.value, c.via, None, None, None, "no value changed")
        for col in cols:
            b = c.before.get(col) if c.before is not None else None
            a = c.after.get(col) if c.after is not None else None
            yield (c.table, c.key, c.op.value, c.via, col, b, a, "*")


def json_rows(changes: Sequence[Change]) -> Iterator[tuple[object, ...]]:
    """Changes as ``--format json``'s objects: whole before and after images."""
    for c in changes:
        before = dict(c.before) if c.before is not None else None
        after = dict(c.after) if c.after is not None else None
        yield (c.table, c.op.value, c.key, before, after, c.changed, c.via)


def to_doc(c: Change) -> dict[str, Any]:
    """A change as a JSON-ready object (what the service answers)."""
    return dict(zip(JSON_COLUMNS, next(json_rows([c])), strict=True))


def from_doc(d: Mapping[str, Any]) -> Change:
    """The change a :func:`to_doc` object describes."""
    return Change(
        d["table"], Op(d["op"]), d["key"], d["before"], d["after"], d["changed"], d["via"]
    )


def summary(o: Outcome, shown: int) -> dict[str, Any]:
    """The last ``--format json`` object: counts of every change (not only those shown),
    per table, the failure, and the time the statement took.

    >>> summary(Outcome(), 0)["summary"]
    True
    """
    ops = {op.value: 0 for op in Op}
    tables: dict[str, dict[str, Any]] = {}
    for c in o.changes:
        ops[c.op.value] += 1
        t = tables.setdefault(c.table, {"via": c.via, **{op.value: 0 for op in Op}})
        t[c.op.value] += 1
    f = o.failure
    return {
        "summary": True,
        "rows": len(o.changes),
        "shown": shown,
        "inserted": ops["insert"],
        "updated": ops["update"],
        "deleted": ops["delete"],
        "tables": tables,
        "statement_rows": o.rowcount,
        "elapsed_ms": round(o.elapsed_ms, 3),
        "would_fail": f is not None,
        "error": None
        if f is None
        else {
            "sqlstate": f.sqlstate,
            "message": f.message,
            "constraint": f.constraint,
            "table": f.table,
        },
        "rolled_back": True,
    }


def summary_line(s: Mapping[str, Any]) -> str:
    """The summary in one line for people (stderr under ``--format table``).

    >>> summary_line(summary(Outcome(elapsed_ms=1.5), 0)).endswith("1.5 ms; rolled back")
    True
    """
    head = (
        f"whatif: {s['rows']} row(s) would change ({s['inserted']} inserted, "
        f"{s['updated']} updated, {s['deleted']} deleted) in {len(s['tables'])} table(s)"
    )
    indirect = sum(1 for t in s["tables"].values() if t["via"] != DIRECT)
    if indirect:
        head += f", {indirect} reached by cascade or trigger"
    if s["shown"] < s["rows"]:
        head += f"; {s['shown']} shown (--max-rows)"
    head += f", {s['elapsed_ms']:g} ms; rolled back"
    e = s["error"]
    if e is not None:
        where = f" (constraint {e['constraint']})" if e["constraint"] else ""
        head = f"whatif: the statement would fail: {e['message']}{where} [SQLSTATE {e['sqlstate']}]"
        head += f", {s['elapsed_ms']:g} ms; rolled back"
    return head
