"""Selecting rows, not transactions: bring one row (``--key``) or the rows matching a
filter (``--where``) of one table back to a point (``--to``).

The transactions are those that changed the chosen rows after the point; the plan then
keeps only the chosen rows of what they touched (``prepare(keys=...)``), so the other
rows they wrote keep their values. Rows are named by their key's text, as
``touched_versions`` gives it (``Physical.text``): the typed values the reads answer
with are turned into that text by :func:`key_text`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from rowback.errors import RowbackError
from rowback.filters import Filter
from rowback.model import Text
from rowback.store.base import Image, Reader, TableInfo
from rowback.timetravel import resolve
from rowback.when import AtLsn, Point, parse_lsn, point_text

Key = tuple[Text, ...]


@dataclass(frozen=True)
class Rows:
    """What a row selection found: the transactions, the table and its chosen rows."""

    txids: list[int]
    source: str
    table: str
    keys: set[Key]


def key_text(value: object) -> Text:
    """A key value as a read gives it, in the text ``touched_versions`` names rows by
    (DuckDB's text of the stored value: UTC with ``+00`` for a timestamptz, fractions of
    seconds without trailing zeros, ``\\x`` hex for bytea).

    >>> from decimal import Decimal
    >>> key_text(3), key_text("a"), key_text(True), key_text(Decimal("1.50"))
    ('3', 'a', 'true', '1.50')
    >>> key_text(dt.datetime(2026, 1, 2, 3, 4, 5, 120000))
    '2026-01-02 03:04:05.12'
    >>> key_text(dt.datetime(2026, 1, 2, 4, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=1))))
    '2026-01-02 03:04:05+00'
    >>> key_text(b"\\x01\\xff")
    '\\\\x01ff'
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            utc = value.astimezone(dt.UTC).replace(tzinfo=None)
            return _trim(utc.isoformat(sep=" ")) + "+00"
        return _trim(value.isoformat(sep=" "))
    if isinstance(value, dt.time):
        return _trim(value.isoformat())
    return str(value)  # int, float, Decimal, UUID, date, and text as it is


def _trim(text: str) -> str:
    """``03:04:05.120000`` as DuckDB writes it: ``03:04:05.12``."""
    if "." not in text:
        return text
    return text.rstrip("0").rstrip(".")


def _key_of(image: Image | dict[str, object], columns: Sequence[str]) -> Key:
    return tuple(key_text(image.get(c)) for c in columns)


def where_text(where: Sequence[Filter]) -> str:
    """The filters as one line, for messages: ``status:eq:paid AND id:gt:3``."""
    return " AND ".join(f.as_param() for f in where)


def select_rows(
    reader: Reader,
    table: str,
    key: Sequence[str],
    where: Sequence[Filter],
    since: Point,
    until: Point | None = None,
) -> Rows:
    """The rows of ``table`` chosen by ``key`` (one row) or ``where`` (the rows that
    matched it at ``since``, and the rows inserted after ``since`` that matched it as the
    transaction that inserted them left them), and the transactions that changed them
    in (``since``, ``until``]."""
    info = resolve(reader.tables(), table)
    name = info.qualified
    changes = _changes(reader, info, since, until)
    if key:
        keys = {_history_key(reader, info, key)}
        what = f"row ({', '.join(info.key)})=({', '.join(str(k) for k in key)}) of {name}"
    else:
        keys = _matching(reader, info, where, since, changes)
        what = f"the {len(keys)} row(s) of {name} matching --where {where_text(where)}"
        if not keys:
            raise RowbackError(
                f"no row of {name} matches --where {where_text(where)} at "
                f"{point_text(since)} (nor does a row inserted after it)"
            )
    txids = list(dict.fromkeys(t for t, _, k, _ in changes if k in keys))
    if not txids:
        upto = f" up to {point_text(until)}" if until is not None else ""
        raise RowbackError(
            f"nothing to revert: the {what} has no change after {point_text(since)}{upto}"
            if key
            else f"nothing to revert: {what} have no change after {point_text(since)}{upto}"
        )
    return Rows(txids, info.source, name, keys)


Change = tuple[int, str, Key, str]
"""(txid, op, key text, LSN text) of one change."""


def _changes(reader: Reader, info: TableInfo, since: Point, until: Point | None) -> list[Change]:
    got = reader.changes(info.qualified, since, until)
    idx = {c: i for i, c in enumerate(got.columns)}
    out = []
    for r in got.rows:
        op = str(r[idx["op"]])
        if op in ("snapshot", "truncate"):
            continue
        key = r[idx["key"]]
        assert isinstance(key, dict)
        out.append((int(str(r[idx["txid"]])), op, _key_of(key, info.key), str(r[idx["lsn"]])))
    return out


def _history_key(reader: Reader, info: TableInfo, key: Sequence[str]) -> Key:
    """The text of the row ``key`` names (as ``rowback history --key`` reads it)."""
    got = reader.history(info.qualified, key)
    idx = {c: i for i, c in enumerate(got.columns)}
    for r in got.rows:
        image = r[idx["after"]] or r[idx["before"]]
        if isinstance(image, dict):
            return _key_of(image, info.key)
    shown = ", ".join(key)
    raise RowbackError(
        f"{info.qualified} has no row ({', '.join(info.key)})=({shown}) in its history"
    )


def _matching(
    reader: Reader, info: TableInfo, where: Sequence[Filter], since: Point, changes: list[Change]
) -> set[Key]:
    """The rows matching ``where`` at ``since``, and those inserted after it that matched
    it as their inserting transaction left them."""
    got = reader.asof(info.qualified, since, where)
    idx = {c: i for i, c in enumerate(got.columns)}
    keys = {tuple(key_text(r[idx[c]]) for c in info.key) for r in got.rows}
    # a row whose first change after ``since`` is an insert did not exist then
    inserted: dict[str, set[Key]] = {}  # LSN of the inserting transaction -> keys
    seen: set[Key] = set()
    for _, op, k, lsn in changes:
        if k in seen:
            continue
        seen.add(k)
        if op == "insert" and k not in keys:
            inserted.setdefault(lsn, set()).add(k)
    for lsn, born in inserted.items():
        then = reader.asof(info.qualified, AtLsn(parse_lsn(lsn)), where)
        at = {c: i for i, c in enumerate(then.columns)}
        keys |= born & {tuple(key_text(r[at[c]]) for c in info.key) for r in then.rows}
    return keys
