"""Turn pgoutput row messages into :class:`~rowback.model.Change` objects.

Relation messages describe a table version; one :class:`TableSchema` object is kept per
version so the store can recognise it by identity. Old-row tuples are used two ways: the
old key tells a key change apart (stored as delete + insert), and a full old row
(REPLICA IDENTITY FULL) becomes ``before`` so the store can verify it against history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple
from typing import cast

from rowback.model import Change, Column, Op, TableSchema, Text
from rowback.sources.postgres import pgoutput as po

TypeName = Callable[[int, int], str]
KeyNames = Callable[[int], set[str]]
MissingValues = Callable[[int], dict[str, str]]
ColumnNumbers = Callable[[int], dict[str, int]]


class Decoder:
    """Keeps the relation cache and builds changes for one source."""

    def __init__(
        self,
        source: str,
        type_name: TypeName,
        key_names: KeyNames,
        missing_values: MissingValues | None = None,
        column_numbers: ColumnNumbers | None = None,
        known: dict[tuple[str, str], TableSchema] | None = None,
    ) -> None:
        self.source = source
        self.known = known or {}
        """Per (schema, table): the version the store holds, for the first relation message
        of a session (a version that renamed a column since it can then carry its number)."""
        self.type_name = type_name
        self.key_names = key_names
        self.missing_values = missing_values
        self.column_numbers = column_numbers
        self.relations: dict[int, TableSchema] = {}
        self.skip_before: dict[str, int] = {}
        """Per ``schema.table``: drop changes committed before this LSN (its snapshot)."""

    def relation(self, msg: po.Relation, into: dict[int, TableSchema] | None = None) -> None:
        target = self.relations if into is None else into
        old = (
            target.get(msg.relid)
            or self.relations.get(msg.relid)
            or self.known.get((msg.namespace, msg.name))
        )
        keys = self.key_names(msg.relid)
        names = {c.name for c in msg.columns}
        if not keys or not keys <= names:
            # The catalog is ahead of this version (the table dropped, or a key renamed
            # since): the relation's own flags mark the replica identity, the key unless it
            # is FULL; else the key of the version before.
            flagged = {c.name for c in msg.columns if c.key}
            if flagged and len(flagged) < len(msg.columns):
                keys = flagged
            elif old is not None:
                keys = {c.name for c in old.columns if c.key} & names or keys
        cols = tuple(
            Column(c.name, self.type_name(c.type_oid, c.typmod), c.name in keys)
            for c in msg.columns
        )
        if (
            old is not None
            and [(c.name, c.type, c.key) for c in old.columns] == [astuple(c)[:3] for c in cols]
            and (old.schema, old.name) == (msg.namespace, msg.name)
        ):
            target[msg.relid] = old
            return
        # a new version: ask which columns rows older than them read as a default
        missing = self.missing_values(msg.relid) if self.missing_values else {}
        numbers = self.column_numbers(msg.relid) if self.column_numbers else {}
        cols = tuple(
            Column(c.name, c.type, c.key, prev.missing, prev.number)
            if c.name not in numbers and prev is not None
            else Column(c.name, c.type, c.key, missing.get(c.name), numbers.get(c.name))
            for c, prev in zip(cols, _carried(old, cols), strict=True)
        )
        target[msg.relid] = TableSchema(self.source, msg.namespace, msg.name, cols)

    def wanted(self, t: TableSchema, lsn: int) -> bool:
        """Is ``t`` captured, and was this change committed after its snapshot?"""
        start = self.skip_before.get(t.qualified)
        return start is not None and lsn >= start

    def changes(
        self,
        msg: po.Insert | po.Update | po.Delete | po.Truncate,
        lsn: int,
        commit_us: int,
        xid: int,
        seq: int,
        overlay: dict[int, TableSchema] | None = None,
    ) -> list[Change]:
        """The changes one row message stands for, numbered from ``seq``."""
        if isinstance(msg, po.Insert | po.Update) and (msg.xid is None or not overlay):
            # the hot path (every plain insert and update): no closures, no copies
            t = self.relations[msg.relid]
            start = self.skip_before.get(t.qualified)
            if start is None or lsn < start:
                return []
            if (isinstance(msg, po.Insert) or msg.old is None) and po.UNCHANGED not in msg.new:
                op = Op.INSERT if isinstance(msg, po.Insert) else Op.UPDATE
                row = cast(list[Text], msg.new)
                return [Change(t, op, t.key_of(row), row, None, commit_us, xid, lsn, seq + 1)]

        def table(relid: int) -> TableSchema:
            if overlay and relid in overlay:
                return overlay[relid]
            return self.relations[relid]

        def make(
            t: TableSchema,
            op: Op,
            key: tuple[Text, ...] | None,
            after: list[Text] | None,
            before: list[Text] | None = None,
            unchanged: frozenset[int] = frozenset(),
        ) -> Change:
            nonlocal seq
            seq += 1
            return Change(t, op, key, after, before, commit_us, xid, lsn, seq, unchanged)

        if isinstance(msg, po.Truncate):
            out = []
            for relid in msg.relids:
                t = table(relid)
                if self.wanted(t, lsn):
                    out.append(make(t, Op.TRUNCATE, None, None))
            return out
        t = table(msg.relid)
        if not self.wanted(t, lsn):
            return []
        if isinstance(msg, po.Insert):
            row = _plain(msg.new)
            return [make(t, Op.INSERT, t.key_of(row), row)]
        if isinstance(msg, po.Delete):
            old = _plain(msg.old)
            before = old if msg.old_kind == "O" and po.UNCHANGED not in msg.old else None
            return [make(t, Op.DELETE, t.key_of(old), None, before)]
        new = _plain(msg.new)
        unchanged = frozenset(i for i, v in enumerate(msg.new) if v is po.UNCHANGED)
        key = t.key_of(new)
        before = None
        if msg.old is not None:
            old = _plain(msg.old)
            old_key = t.key_of(old)
            if old_key != key:  # the store fills ``unchanged`` from the deleted row
                return [
                    make(t, Op.DELETE, old_key, None),
                    make(t, Op.INSERT, key, new, None, unchanged),
                ]
            if msg.old_kind == "O" and po.UNCHANGED not in msg.old:
                before = old
        return [make(t, Op.UPDATE, key, new, before, unchanged)]


def _plain(values: po.Tuple) -> list[Text]:
    return [None if v is po.UNCHANGED else v for v in values]  # type: ignore[misc]


def _carried(old: TableSchema | None, cols: tuple[Column, ...]) -> list[Column | None]:
    """The columns of the previous version of the relation that ``cols`` continue, by
    position (their numbers and stored defaults), for names the catalog no longer has.

    The catalog is read *now*: a capture behind several renames finds only the last name
    there. pgoutput sends columns in ``attnum`` order and an added column comes last, so
    with as many columns as before, a column where one of the same type was, under a name
    the catalog does not know, is that column renamed. (Where the catalog knows the name
    it is asked: dropping the last column and adding another of its type also keeps the
    place.)"""
    if old is None or len(old.columns) != len(cols):
        return [None] * len(cols)
    return [
        o if o.type == c.type and o.number is not None else None
        for o, c in zip(old.columns, cols, strict=True)
    ]
