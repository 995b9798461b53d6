"""Review of the head's value hash ``_h``: a bulk write must store what the exact path
stores (same history, same gaps) whatever the head's ``_h`` was computed from."""

from __future__ import annotations

from pathlib import Path

from contract.test_write_paths_agree import batch_of

from rowback.model import Change, Column, Op, TableSchema
from rowback.store.duckdb import DuckDBStore

K = Column("k", "integer", True)
A = TableSchema("s", "public", "t", (K, Column("a", "text"), Column("b", "text")))
# the same columns, the fields in another order (a Debezium schema may list them so)
B = TableSchema("s", "public", "t", (K, Column("b", "text"), Column("a", "text")))

HIST = "SELECT * EXCLUDE (_ts) FROM h_1 ORDER BY _pos"


def _both(tmp: Path, first: list[Change], then: list[Change]) -> list[tuple[int, object]]:
    """(gaps, history) of ``then`` written after ``first``: in bulk and row by row."""
    out = []
    for name, bulk in (("bulk", True), ("rows", False)):
        with DuckDBStore(tmp / name, vectorized=bulk) as s:
            for i, part in enumerate((first, then)):
                if bulk:
                    gaps = s.write_batch(batch_of(part), "s", {"at": i}).gaps
                else:
                    gaps = s.write(part, "s", {"at": i}).gaps
            out.append((gaps, s.sql(HIST)))
    return out


def test_reordered_fields_do_not_match_a_swapped_before_image(tmp_path: Path) -> None:
    """The head is (a=x, b=y), hashed as hash(a, b) under A. Under B the before image
    (b=x, a=y) hashes as hash(b, a) = hash(x, y): the same, though it differs from the
    head in both columns. Bulk then counts no gap and stores the mask of before vs after
    (a and b changed) where the exact path stores none (after equals the head)."""
    ins = [Change(A, Op.INSERT, ("1",), ["1", "x", "y"], None, 1, 1, 1, 1)]
    upd = [Change(B, Op.UPDATE, ("1",), ["1", "y", "x"], ["1", "x", "y"], 2, 2, 2, 1)]
    bulk, rows = _both(tmp_path, ins, upd)
    assert rows[0] == 1
    assert bulk == rows


def test_upgraded_head_after_a_retype(tmp_path: Path) -> None:
    """After ALTER COLUMN a TYPE varchar(9), a's new physical column comes after b's, but
    the schema still lists a first: the layout is (k, a', b). A head written before ``_h``
    existed gets ``_h`` on open from the physical order, hash(b, a'), so a before image
    with a and b swapped matches it."""
    a2 = TableSchema("s", "public", "t", (K, Column("a", "varchar(9)"), Column("b", "text")))
    ins = [Change(A, Op.INSERT, ("1",), ["1", "x", "y"], None, 1, 1, 1, 1)]
    ret = [Change(a2, Op.UPDATE, ("1",), ["1", "x", "y"], ["1", "x", "y"], 2, 2, 2, 1)]
    swap = [Change(a2, Op.UPDATE, ("1",), ["1", "y", "x"], ["1", "y", "x"], 3, 3, 3, 1)]
    got = []
    for name, damage in (("kept", False), ("old", True)):
        with DuckDBStore(tmp_path / name) as s:
            s.write_batch(batch_of(ins), "s", {"at": 0})
            s.write_batch(batch_of(ret), "s", {"at": 1})
            if damage:  # as a store written before _h existed
                s.sql("ALTER TABLE s_1 DROP COLUMN _h")
        with DuckDBStore(tmp_path / name) as s:
            gaps = s.write_batch(batch_of(swap), "s", {"at": 2}).gaps
            got.append((gaps, s.sql(HIST)))
    assert got[0][0] == 1
    assert got[1] == got[0]
