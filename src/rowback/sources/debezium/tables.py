"""The decoder's view of each table: its current version, column types, and conversion plans.

A table version is built from the event's Kafka Connect schema when there is one, else
inferred from JSON values: int -> bigint, float -> double precision, bool -> boolean,
str -> text, object/array -> jsonb. A column seen only as null stays *undecided* (stored
as text) until a value decides it. A new ``TableSchema`` is made only when the columns
change, since the store caches each version by identity.

Rows are converted by a *plan* per row shape (the Python types of its values): which
function turns each value into PostgreSQL text. Checking the types once per shape keeps
the per-event work to one C-level call per column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, NoReturn

from rowback.errors import RowbackError
from rowback.model import Column, TableSchema
from rowback.sources.debezium import convert
from rowback.sources.debezium.connect import connect_column
from rowback.sources.debezium.convert import Converter

UNDECIDED = "?"
_INFERABLE = {"text", "bigint", "double precision", "boolean", "jsonb"}
_NONE = type(None)
_NULL: Converter = {}.get  # type: ignore[assignment]  # a C function returning None
_BOOLS: Converter = {True: "t", False: "f"}.__getitem__
_FLOAT8 = convert.floating("double precision")
_INFERRED: dict[tuple[str, type], Converter] = {
    ("text", str): str,
    ("bigint", int): str,  # range checked per row, in bulk
    ("double precision", float): _FLOAT8,
    ("double precision", int): _FLOAT8,
    ("double precision", str): _FLOAT8,  # NaN, Infinity, -Infinity
    ("boolean", bool): _BOOLS,
}
_AS_TEXT: dict[type, Converter] = {str: str, int: str, float: _FLOAT8, bool: _BOOLS}
_KIND_OF_TYPE = {str: "string", int: "integer", float: "number", bool: "boolean"}
_KIND_OF_TYPE |= {dict: "object", list: "array"}
MAX_PLANS = 4096

Plan = tuple[tuple[Converter, ...], Callable[[list[Any]], tuple[Any, ...]] | None]
"""A converter per column, and a getter of the bigint values whose range must be checked."""


class DecodeError(RowbackError):
    """An event that cannot become a change; ``field`` is its path, e.g. ``after.amount``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NoKey(RowbackError):
    """A table whose primary key is unknown (or was given wrongly with ``--key``).

    Not a ``DecodeError``: every event of the table would fail the same way, so ingest
    stops at its first event, before anything of it is stored, and a rerun with the
    setting continues from there instead of finding the table's events quarantined.
    """

    def __init__(self, table: str, fields: Sequence[str], problem: str = "no key known") -> None:
        listed = ", ".join(fields) or "no fields"
        suggest = fields[0] if fields else "COLUMN"
        super().__init__(f"{table}: {problem} (fields: {listed}); pass --key {table}={suggest}")
        self.table = table
        self.fields = tuple(fields)


def kind_of(v: object) -> str:
    """The JSON kind of a value, as error messages name it."""
    return "null" if v is None else _KIND_OF_TYPE.get(type(v), type(v).__name__)


@dataclass(slots=True)
class Table:
    """One version of a table as the decoder sees it."""

    schema: TableSchema
    names: tuple[str, ...]
    kinds: list[str] | None  # inferred types (UNDECIDED allowed); None when from a schema
    convs: list[Converter] | None  # from a Kafka Connect schema
    fields: object = None  # the raw schema fields this version was built from
    key_idx: tuple[int, ...] = ()
    undecided: tuple[int, ...] = ()
    plans: dict[tuple[type, ...], Plan] = field(default_factory=dict)

    def plan(self, sig: tuple[type, ...], path: str) -> Plan:
        """How to convert a row whose values have the Python types ``sig``."""
        convs: list[Converter] = []
        ints: list[int] = []
        for i, t in enumerate(sig):
            if t is _NONE:
                convs.append(_NULL)
            elif self.convs is not None:
                conv = self.convs[i]
                if conv is convert.INT64 and t is int:
                    ints.append(i)
                    conv = str
                convs.append(str if conv is convert.text and t is str else conv)
            elif self.kinds is None:
                # Restored from a schema-typed state and not yet seen again: only a key
                # record can reach here, whose values are kept as they come.
                convs.append(_AS_TEXT.get(t, convert.json_any))
            else:
                k = self.kinds[i]
                conv = convert.json_any if k == "jsonb" else _INFERRED.get((k, t), _NULL)
                if conv is _NULL:
                    want = "text" if k == UNDECIDED else k
                    got = _KIND_OF_TYPE.get(t, t.__name__)
                    raise DecodeError(f"{path}.{self.names[i]}", f"expected {want}, got {got}")
                if k == "bigint":
                    ints.append(i)
                convs.append(conv)
        getter = None
        if ints:
            getter = itemgetter(*ints) if len(ints) > 1 else itemgetter(ints[0], ints[0])
        plan = (tuple(convs), getter)
        if len(self.plans) < MAX_PLANS:
            self.plans[sig] = plan
        return plan


class Tables:
    """Every table's current version for one source; ``keys`` maps ``schema.table`` to
    primary-key columns for tables whose events carry no key record; ``notify`` hears
    of each key inferred rather than given (one line per table)."""

    def __init__(
        self,
        source: str,
        keys: Mapping[str, Sequence[str]] | None,
        placeholder: str,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.source = source
        self.keys = {k: tuple(v) for k, v in (keys or {}).items()}
        self.placeholder = placeholder
        self.notify = notify
        self.current: dict[tuple[str, str], Table] = {}

    def state(self) -> list[Any]:
        """The columns of every table, for ``restore`` after a restart."""
        out = []
        for (schema, name), t in self.current.items():
            undecided = set(t.undecided)
            cols = [[c.name, c.type, c.key, i in undecided] for i, c in enumerate(t.schema.columns)]
            out.append([schema, name, cols])
        return out

    def restore(self, state: Sequence[Any]) -> None:
        for schema, name, cols in state:
            columns = tuple(Column(str(n), str(t), bool(k)) for n, t, k, _ in cols)
            kinds: list[str] | None = [UNDECIDED if u else str(t) for _, t, _, u in cols]
            if kinds and not all(k in _INFERABLE or k == UNDECIDED for k in kinds):
                kinds = None  # typed by a schema: the next event re-derives its converters
            schema_obj = TableSchema(self.source, str(schema), str(name), columns)
            self.current[(str(schema), str(name))] = self._table(schema_obj, kinds, None, None)

    def known(self, q: tuple[str, str]) -> Table:
        """A table seen before (truncates and key-only deletes cannot describe one)."""
        tab = self.current.get(q)
        if tab is None:
            self._unknown(q)
        return tab

    def _unknown(self, q: tuple[str, str]) -> NoReturn:
        raise DecodeError("source.table", f"{q[0]}.{q[1]} has not been seen yet and has no schema")

    def _table(
        self,
        schema: TableSchema,
        kinds: list[str] | None,
        convs: list[Converter] | None,
        fields: object,
    ) -> Table:
        names = tuple(c.name for c in schema.columns)
        undecided = tuple(i for i, k in enumerate(kinds or ()) if k == UNDECIDED)
        return Table(schema, names, kinds, convs, fields, schema.key_indexes, undecided)

    def _install(
        self,
        q: tuple[str, str],
        columns: tuple[Column, ...],
        kinds: list[str] | None,
        convs: list[Converter] | None,
        fields: object,
    ) -> Table:
        """Make ``columns`` the current version, reusing the TableSchema if unchanged."""
        old = self.current.get(q)
        if old is not None and old.schema.columns == columns:
            schema = old.schema
        else:
            schema = TableSchema(self.source, q[0], q[1], columns)
        new = self._table(schema, kinds, convs, fields)
        self.current[q] = new
        return new

    def _key_names(
        self, q: tuple[str, str], names: Sequence[str], key_rec: Mapping[str, Any] | None
    ) -> tuple[str, ...]:
        """Key record, else the user's mapping, else the previous version's, else ``id``.

        Only ``id`` is inferred: Debezium's value schema does not mark key fields, and
        any other guess (``<table>_id``, the first column) could be wrong silently.
        """
        qual = f"{q[0]}.{q[1]}"
        if key_rec:
            keys = tuple(key_rec)
        elif qual in self.keys:
            keys = self.keys[qual]
            missing = [k for k in keys if k not in names]
            if missing:
                raise NoKey(qual, names, f"--key column {missing[0]!r} is not a field")
        elif (old := self.current.get(q)) is not None and old.key_idx:
            keys = tuple(old.names[i] for i in old.key_idx)
        elif "id" in names:
            keys = ("id",)
            if self.notify is not None and q not in self.current:
                self.notify(f"{qual}: key inferred as (id) from its field named id")
        else:
            raise NoKey(qual, names)
        for k in keys:
            if k not in names:
                raise DecodeError("key", f"key column {k!r} is not a column of {qual}")
        return keys

    # -- schemaless events -----------------------------------------------------------

    def inferred(
        self,
        q: tuple[str, str],
        after: dict[str, Any] | None,
        before: dict[str, Any] | None,
        key_rec: Mapping[str, Any] | None,
    ) -> Table:
        """The version for a schemaless event: a new one when columns appear or go, or
        when a value decides an undecided column."""
        tab = self.current.get(q)
        if tab is not None and tab.kinds is not None:
            same = after is None or tuple(after) == tab.names
            if same and not (tab.undecided and self._decides(tab, after, before)):
                return tab
        img = after if after is not None else before
        assert img is not None
        known: dict[str, str] = {}
        if tab is not None and tab.kinds is not None:
            known = dict(zip(tab.names, tab.kinds, strict=True))
        elif tab is not None:
            known = {c.name: c.type for c in tab.schema.columns if c.type in _INFERABLE}
        names = tuple(img) if after is not None or tab is None else tab.names
        kinds = []
        for n in names:
            k = known.get(n, UNDECIDED)
            kinds.append(_infer(self._sample(n, after, before)) if k == UNDECIDED else k)
        keys = set(self._key_names(q, names, key_rec))
        columns = tuple(
            Column(n, "text" if k == UNDECIDED else k, n in keys)
            for n, k in zip(names, kinds, strict=True)
        )
        return self._install(q, columns, kinds, None, None)

    def _sample(self, name: str, *imgs: dict[str, Any] | None) -> object:
        """The first informative value of column ``name`` (not null, not a placeholder)."""
        for img in imgs:
            v = img.get(name) if img is not None else None
            if v is not None and v != self.placeholder and v != [self.placeholder]:
                return v
        return None

    def _decides(
        self, tab: Table, after: dict[str, Any] | None, before: dict[str, Any] | None
    ) -> bool:
        return any(self._sample(tab.names[i], after, before) is not None for i in tab.undecided)

    # -- events with a Kafka Connect schema ------------------------------------------

    def wrapped(
        self, q: tuple[str, str], env_schema: object, key_rec: Mapping[str, Any] | None
    ) -> Table:
        """The version the event's Kafka Connect schema describes."""
        fields = row_fields(env_schema)
        tab = self.current.get(q)
        if tab is not None and (tab.fields is fields or tab.fields == fields):
            return tab
        names: list[str] = []
        types: list[str] = []
        convs: list[Converter] = []
        for i, f in enumerate(fields):
            name = f.get("field") if f.__class__ is dict else None
            if name.__class__ is not str or name in names:
                raise DecodeError(f"schema.after.fields[{i}]", "expected a unique field name")
            try:
                pg_type, conv = connect_column(f)
            except convert.BadValue as e:
                raise DecodeError(f"schema.after.{name}", str(e)) from None
            names.append(name)
            types.append(pg_type)
            convs.append(conv)
        keys = set(self._key_names(q, names, key_rec))
        columns = tuple(Column(n, t, n in keys) for n, t in zip(names, types, strict=True))
        return self._install(q, columns, None, convs, fields)


def _infer(v: object) -> str:
    """The column type a first non-null JSON value implies."""
    c = v.__class__
    if c is bool:
        return "boolean"
    if c is int:
        return "bigint"
    if c is float:
        return "double precision"
    if c is str:
        return "text"
    return UNDECIDED if v is None else "jsonb"


def row_fields(env_schema: object) -> list[Any]:
    """The field schemas of the row struct (``after``, else ``before``) of an envelope."""
    if env_schema.__class__ is not dict:
        raise DecodeError("schema", f"expected an object, got {kind_of(env_schema)}")
    fields = env_schema.get("fields")
    if fields.__class__ is not list:
        raise DecodeError("schema.fields", f"expected an array, got {kind_of(fields)}")
    for want in ("after", "before"):
        for f in fields:
            if f.__class__ is dict and f.get("field") == want:
                row = f.get("fields")
                if row.__class__ is not list or not row:
                    raise DecodeError(f"schema.{want}", "expected a struct with fields")
                return row
    raise DecodeError("schema", "no after or before struct in the envelope schema")
