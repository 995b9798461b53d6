"""Row filters in a structured form: (column, operator, value), never SQL text.

The API takes them as ``filter=column:op:value`` and the CLI's ``--where`` is read into the
same form, so no caller's text is ever pasted into a query: a backend binds each value
as a parameter, cast to the column's type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import orjson

from rowback.errors import BadParameter


class Op(StrEnum):
    eq = "eq"
    ne = "ne"
    lt = "lt"
    le = "le"
    gt = "gt"
    ge = "ge"
    like = "like"
    isnull = "isnull"
    notnull = "notnull"
    in_ = "in"


UNARY = frozenset({Op.isnull, Op.notnull})

SQL_SYMBOL = {
    Op.eq: "=",
    Op.ne: "<>",
    Op.lt: "<",
    Op.le: "<=",
    Op.gt: ">",
    Op.ge: ">=",
    Op.like: "LIKE",
}


@dataclass(frozen=True)
class Filter:
    """``column op value``; ``value`` is text (cast to the column's type by the store),
    a list of texts for ``in``, None for ``isnull``/``notnull``."""

    column: str
    op: Op
    value: str | tuple[str, ...] | None = None

    def as_param(self) -> str:
        """The API's ``filter=`` form of this filter.

        >>> Filter("status", Op.eq, "paid").as_param()
        'status:eq:paid'
        >>> Filter("id", Op.in_, ("1", "2")).as_param()
        'id:in:["1","2"]'
        """
        if self.op in UNARY:
            return f"{self.column}:{self.op.value}"
        value = self.value
        text = orjson.dumps(list(value)).decode() if isinstance(value, tuple) else value
        return f"{self.column}:{self.op.value}:{text}"


def parse_param(text: str, param: str = "filter") -> Filter:
    """Read one ``column:op[:value]`` (``in`` takes a JSON array of values).

    >>> parse_param("price:gt:10")
    Filter(column='price', op=<Op.gt: 'gt'>, value='10')
    >>> parse_param("note:isnull")
    Filter(column='note', op=<Op.isnull: 'isnull'>, value=None)
    """
    column, sep, rest = text.partition(":")
    op_text, _, value = rest.partition(":")
    if not column or not sep:
        raise BadParameter(param, f"{param} {text!r}: expected column:op:value")
    try:
        op = Op(op_text)
    except ValueError:
        ops = ", ".join(o.value for o in Op)
        raise BadParameter(
            param, f"{param} {text!r}: unknown operator {op_text!r} ({ops})"
        ) from None
    if op in UNARY:
        if value:
            raise BadParameter(param, f"{param} {text!r}: {op.value} takes no value")
        return Filter(column, op)
    if op is Op.in_:
        try:
            items = orjson.loads(value)
        except orjson.JSONDecodeError:
            items = None
        if not isinstance(items, list) or not all(_scalar(v) for v in items):
            raise BadParameter(param, f"{param} {text!r}: in takes a JSON array of values")
        return Filter(column, op, tuple(_text(v) for v in items))
    if not rest.count(":"):
        raise BadParameter(param, f"{param} {text!r}: {op.value} needs a value")
    return Filter(column, op, value)


def from_parts(
    column: str, op: Op, value: str | list[str] | tuple[str, ...] | None, param: str = "where"
) -> Filter:
    """A filter from its structured parts (an API body's ``{column, op, value}``),
    checked as :func:`parse_param` checks its text.

    >>> from_parts("id", Op.in_, ["1", "2"])
    Filter(column='id', op=<Op.in_: 'in'>, value=('1', '2'))
    """
    shown = f"{param} {column} {op.value}"
    if not column:
        raise BadParameter(param, f"{param}: a condition needs a column")
    if op in UNARY:
        if value is not None:
            raise BadParameter(param, f"{shown}: {op.value} takes no value")
        return Filter(column, op)
    if op is Op.in_:
        if not isinstance(value, list | tuple):
            raise BadParameter(param, f"{shown}: in takes a list of values")
        return Filter(column, op, tuple(str(v) for v in value))
    if not isinstance(value, str):
        raise BadParameter(param, f"{shown}: {op.value} needs one value")
    return Filter(column, op, value)


def _scalar(v: object) -> bool:
    return isinstance(v, str | int | float | bool)


def _text(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# --- the CLI's --where: a small SQL-like form read into filters --------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^']|'')*')
      | (?P<ident>"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)
      | (?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<op><>|!=|<=|>=|=|<|>|\(|\)|,)
    )""",
    re.VERBOSE,
)
_SYMBOLS = {"=": Op.eq, "<>": Op.ne, "!=": Op.ne, "<": Op.lt, "<=": Op.le, ">": Op.gt}
_SYMBOLS[">="] = Op.ge


def parse_where(text: str, param: str = "--where") -> list[Filter]:
    """Read ``a = 1 AND b > 'x' AND c IS NULL AND d IN (1, 2) AND e LIKE 'a%'``.

    Only conjunctions of comparisons: what an operator narrowing a table needs, and
    nothing a query could be smuggled through.

    >>> parse_where("status = 'paid' and amount >= 10.5")
    [Filter(column='status', op=<Op.eq: 'eq'>, value='paid'), \
Filter(column='amount', op=<Op.ge: 'ge'>, value='10.5')]
    """
    tokens = _tokens(text, param)
    out: list[Filter] = []
    i = 0

    def fail(why: str) -> BadParameter:
        return BadParameter(param, f"{param} {text!r}: {why}")

    def value_at(j: int) -> str:
        if j >= len(tokens) or tokens[j][0] not in ("str", "num", "ident"):
            raise fail("expected a value" + (f" after {tokens[j - 1][1]!r}" if j else ""))
        kind, tok = tokens[j]
        if kind == "ident" and tok.lower() in ("true", "false"):
            return tok.lower()
        if kind == "ident":
            raise fail(f"{tok!r} is not a value (quote text: '{tok}')")
        return _unquote(tok) if kind == "str" else tok

    while True:
        if i >= len(tokens) or tokens[i][0] != "ident":
            raise fail("expected a column name")
        column = _ident(tokens[i][1])
        i += 1
        word = tokens[i][1].lower() if i < len(tokens) else ""
        if word == "is":
            neg = i + 1 < len(tokens) and tokens[i + 1][1].lower() == "not"
            j = i + 1 + neg
            if j >= len(tokens) or tokens[j][1].lower() != "null":
                raise fail("expected IS NULL or IS NOT NULL")
            out.append(Filter(column, Op.notnull if neg else Op.isnull))
            i = j + 1
        elif word == "in":
            if i + 1 >= len(tokens) or tokens[i + 1][1] != "(":
                raise fail("expected ( after IN")
            j, items = i + 2, []
            while True:
                items.append(value_at(j))
                j += 1
                if j < len(tokens) and tokens[j][1] == ",":
                    j += 1
                    continue
                if j < len(tokens) and tokens[j][1] == ")":
                    break
                raise fail("expected , or ) in the IN list")
            out.append(Filter(column, Op.in_, tuple(items)))
            i = j + 1
        elif word == "like":
            out.append(Filter(column, Op.like, value_at(i + 1)))
            i += 2
        elif word in _SYMBOLS:
            out.append(Filter(column, _SYMBOLS[word], value_at(i + 1)))
            i += 2
        else:
            raise fail(f"expected an operator after {column!r} (=, <>, <, <=, >, >=, LIKE, IN, IS)")
        if i == len(tokens):
            return out
        if tokens[i][1].lower() != "and":
            raise fail(f"expected AND, found {tokens[i][1]!r} (only AND joins conditions)")
        i += 1


def _tokens(text: str, param: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            where = text[pos:].strip()[:20]
            raise BadParameter(param, f"{param} {text!r}: cannot read {where!r}")
        kind = m.lastgroup
        assert kind is not None
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


def _unquote(tok: str) -> str:
    return tok[1:-1].replace("''", "'")


def _ident(tok: str) -> str:
    """A quoted name as written; an unquoted one folded to lower case, as PostgreSQL does."""
    return tok[1:-1].replace('""', '"') if tok.startswith('"') else tok.lower()
