"""A property of ``revert --mode nonconflict`` on PostgreSQL: after a random damaging
transaction and random later writers, every cell the damage wrote holds its value from
before it, unless a later writer changed it (or the row), in which case it keeps the
later value and the plan reports it; an undo of the revert restores the state before it.

The oracle replays the same statements on Python dicts, one statement at a time (the
shadow's history is per statement: a cell written and written back is a write)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pgcap import capture_once, execute, fresh_database, opened, pg_connect

from rowback.errors import RowbackError
from rowback.pgserver import PgServer
from rowback.revert import Mode, prepare
from rowback.revert.apply import apply

TABLES = ("a", "b")
COLS = ("x", "y", "z")
IDS = range(1, 7)
Key = tuple[str, int]
State = dict[Key, dict[str, int]]

value = st.integers(0, 2)
op = st.one_of(
    st.tuples(
        st.just("u"), st.sampled_from(TABLES), st.sampled_from(IDS), st.sampled_from(COLS), value
    ),
    st.tuples(st.just("d"), st.sampled_from(TABLES), st.sampled_from(IDS)),
    st.tuples(st.just("i"), st.sampled_from(TABLES), st.sampled_from(IDS), value, value, value),
)
tx = st.lists(op, min_size=1, max_size=6)


def sql_of(o: tuple[object, ...]) -> str:
    if o[0] == "u":
        return f"UPDATE {o[1]} SET {o[3]} = {o[4]} WHERE id = {o[2]}"
    if o[0] == "d":
        return f"DELETE FROM {o[1]} WHERE id = {o[2]}"
    return f"INSERT INTO {o[1]} VALUES ({o[2]}, {o[3]}, {o[4]}, {o[5]}) ON CONFLICT DO NOTHING"


def step(state: State, o: tuple[object, ...]) -> tuple[set[str], bool]:
    """Apply ``o``; return the cells it changed on its row and whether the row came or went."""
    k: Key = (str(o[1]), int(str(o[2])))
    row = state.get(k)
    if o[0] == "u":
        col, v = str(o[3]), int(str(o[4]))
        if row is None or row[col] == v:
            return set(), False
        row[col] = v
        return {col}, False
    if o[0] == "d":
        return (set(), state.pop(k, None) is not None)
    if row is not None:
        return set(), False
    state[k] = dict(zip(COLS, (int(str(x)) for x in o[3:]), strict=True))
    return set(COLS), True


def read(dsn: str) -> State:
    conn = pg_connect(dsn)
    try:
        with conn.cursor() as cur:
            out: State = {}
            for t in TABLES:
                cur.execute(f"SELECT id, x, y, z FROM {t}")
                for r in cur.fetchall():
                    out[(t, int(r[0]))] = dict(zip(COLS, (int(v) for v in r[1:]), strict=True))
            return out
    finally:
        conn.close()


def in_tx(dsn: str, ops: list[tuple[object, ...]]) -> int:
    conn = pg_connect(dsn, autocommit=False)
    try:
        with conn.cursor() as cur:
            for o in ops:
                cur.execute(sql_of(o))
            cur.execute("SELECT pg_current_xact_id()::xid::text")
            row = cur.fetchone()
            assert row is not None
        conn.commit()
        return int(row[0])
    finally:
        conn.close()


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    initial=st.sets(st.tuples(st.sampled_from(TABLES), st.sampled_from(IDS)), min_size=2),
    damage=tx,
    later=st.lists(tx, max_size=3),
)
def test_nonconflict_reverts_every_cell_nobody_wrote_since(
    pg_server: PgServer,
    initial: set[Key],
    damage: list[tuple[object, ...]],
    later: list[list[tuple[object, ...]]],
) -> None:
    with fresh_database(pg_server) as dsn, tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        execute(
            dsn,
            *[f"CREATE TABLE {t} (id int PRIMARY KEY, x int, y int, z int)" for t in TABLES],
            *[f"INSERT INTO {t} VALUES ({i}, {i % 3}, 1, 2)" for t, i in sorted(initial)],
        )
        capture_once(dsn, store)
        pre = read(dsn)
        # the oracle: what the damage wrote, and what later writers wrote after it
        sim = {k: dict(v) for k, v in pre.items()}
        wrote: dict[Key, set[str]] = {}
        for o in damage:
            cells, moved = step(sim, o)
            k = (str(o[1]), int(str(o[2])))
            if cells or moved:
                wrote.setdefault(k, set()).update(COLS if moved else cells)
        mid = {k: dict(v) for k, v in sim.items()}
        later_cells: dict[Key, set[str]] = {}
        later_rows: set[Key] = set()
        for t in later:
            for o in t:
                cells, moved = step(sim, o)
                k = (str(o[1]), int(str(o[2])))
                if moved:
                    later_rows.add(k)
                later_cells.setdefault(k, set()).update(cells)
        bad = in_tx(dsn, damage)
        for t in later:
            in_tx(dsn, t)
        final = read(dsn)
        assert final == sim  # the oracle replays what PostgreSQL did
        capture_once(dsn, store)
        if not wrote:
            return  # the damage changed nothing: there is nothing to revert
        with opened(store) as s:
            try:
                plan = prepare(s, [bad], Mode.nonconflict)
            except RowbackError as e:
                # only when the damage undid itself (wrote cells or rows and back again)
                assert "nothing to revert" in str(e)
                assert all(pre.get(k) == mid.get(k) for k in wrote), (pre, mid)
                return
        done = apply(plan, dsn, "prop")
        assert not done.missed
        after = read(dsn)
        reported = {(c.table, c.key, c.column) for c in plan.conflicts}
        for k, cells in wrote.items():
            table = f"public.{k[0]}"
            key = (str(k[1]),)
            rowgone = k in later_rows
            for c in cells:
                blocked = rowgone or c in later_cells.get(k, set())
                if k not in pre and k in final:  # the damage inserted it
                    blocked = rowgone or bool(later_cells.get(k))
                if not blocked:
                    want = pre.get(k, {}).get(c) if k in pre else None
                    got = after.get(k, {}).get(c) if k in after else None
                    assert got == want, (k, c, pre.get(k), final.get(k), after.get(k))
                else:
                    assert after.get(k, {}).get(c) == final.get(k, {}).get(c), (k, c)
                    assert (table, key, c) in reported or (table, key, None) in reported
        untouched = set(final) - set(wrote)
        assert {k: after.get(k) for k in untouched} == {k: final[k] for k in untouched}

        # an undo of the revert restores the state before it
        capture_once(dsn, store)
        with opened(store) as s:
            back = prepare(s, [done.txid], Mode.nonconflict) if done.rows else None
        if back is not None:
            apply(back, dsn, "undo")
            assert read(dsn) == final
