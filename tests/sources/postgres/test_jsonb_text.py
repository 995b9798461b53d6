"""``pgcasts.jsonb_text`` against PostgreSQL's own ``json::jsonb`` output."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pgcap import pg_connect

from rowback.store.duckdb.pgcasts import jsonb_text

# JSON as people write it, spacing and all: duplicate keys, keys of equal length, escapes,
# non-ASCII, numbers with exponents, trailing zeros and negative zero
_KEYS = st.text(alphabet='abé"\\\n\t\x01 ', max_size=4)
_NUMBERS = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.sampled_from(
        ["-0", "0.0", "-0.0e3", "1e2", "1.50E+2", "2.5e-4", "1E0", "12345678901234567890.5"]
    ),
)
_STRINGS = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=6)
_SCALARS = st.one_of(
    _NUMBERS,
    _STRINGS.map(lambda s: json.dumps(s, ensure_ascii=False)),
    _STRINGS.map(lambda s: json.dumps(s, ensure_ascii=True)),
    st.sampled_from(["true", "false", "null"]),
)
_SPACE = st.sampled_from(["", " ", "\n  ", "\t"])


def _doc() -> st.SearchStrategy[str]:
    def objects(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        pair = st.tuples(_KEYS.map(json.dumps), _SPACE, children)
        return st.lists(pair, max_size=4).map(
            lambda ps: "{" + ",".join(f"{k}{sp}:{sp}{v}" for k, sp, v in ps) + "}"
        )

    def arrays(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.tuples(st.lists(children, max_size=4), _SPACE).map(
            lambda t: "[" + f",{t[1]}".join(t[0]) + "]"
        )

    return st.recursive(_SCALARS, lambda c: st.one_of(objects(c), arrays(c)), max_leaves=12)


@pytest.fixture
def cur(pg_dsn: str):  # type: ignore[no-untyped-def]
    conn = pg_connect(pg_dsn)
    with conn.cursor() as c:
        yield c
    conn.close()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=_doc())
def test_jsonb_text_is_postgresql_s(cur, doc: str) -> None:  # type: ignore[no-untyped-def]
    cur.execute("SELECT %s::json::jsonb::text", (doc,))
    assert jsonb_text(doc) == cur.fetchone()[0]


@pytest.mark.parametrize(
    "doc",
    ['{"a": 1, "a": 2}', '"\\u00e9\\ud83d\\ude00"', "1e-7", "-0.00", '{"\\u0061": [[]]}', "[{}]"],
)
def test_jsonb_text_examples(cur, doc: str) -> None:  # type: ignore[no-untyped-def]
    cur.execute("SELECT %s::json::jsonb::text", (doc,))
    assert jsonb_text(doc) == cur.fetchone()[0]


def test_numbers_keep_their_scale() -> None:
    assert jsonb_text("[1.50, 1e2, 1.0e-3, -0]") == "[1.50, 100, 0.0010, 0]"
