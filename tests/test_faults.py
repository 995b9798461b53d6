"""A store that fails at random: capture must lose nothing and duplicate nothing anyway.

The fault injector wraps the real store and raises before or after (!) the real write,
the two ways a disk or process can fail around a commit.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg2

from rowback.model import Change, Quarantined, TableSchema, WriteStats
from rowback.sources.postgres.capture import Capture, CaptureConfig
from rowback.store.duckdb import DuckDBStore
from rowback.when import AtTime


class Boom(Exception):
    pass


class FlakyStore(DuckDBStore):
    def __init__(self, path: Path, rng: random.Random, p: float) -> None:
        super().__init__(path)
        self.rng, self.p, self.failures = rng, p, 0

    def write(
        self,
        changes: Sequence[Change],
        source: str,
        position: Mapping[str, Any],
        schemas: Sequence[TableSchema] = (),
        quarantine: Sequence[Quarantined] = (),
    ) -> WriteStats:
        if self.rng.random() < self.p:
            self.failures += 1
            raise Boom("disk on fire before commit")
        stats = super().write(changes, source, position, schemas, quarantine)
        if self.rng.random() < self.p:
            self.failures += 1
            raise Boom("process died after commit, before confirming upstream")
        return stats


def test_capture_survives_failing_writes(pg_dsn: str, tmp_path: Path) -> None:
    conn = psycopg2.connect(pg_dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, pad text)")
    cur.execute("INSERT INTO t SELECT g, 0, 'x' FROM generate_series(1, 300) g")
    rng = random.Random(11)
    failures = 0
    for round_ in range(12):
        for _ in range(20):
            k = rng.randint(1, 400)
            cur.execute(
                "INSERT INTO t VALUES (%s, %s, 'y') ON CONFLICT (id) DO UPDATE SET v = t.v + 1",
                [k, round_],
            )
        cur.execute("DELETE FROM t WHERE id = %s", [rng.randint(1, 400)])
        cur.execute("UPDATE t SET v = v + 1 WHERE id %% 7 = %s", [round_ % 7])
        store = FlakyStore(tmp_path / "store", rng, 0.3)
        try:
            Capture(CaptureConfig(pg_dsn, once=True, batch_size=37), store).run()
        except Boom:
            pass
        failures += store.failures
        store.close()
    store = FlakyStore(tmp_path / "store", rng, 0.0)
    Capture(CaptureConfig(pg_dsn, once=True), store).run()
    cur.execute("SELECT id, v, pad FROM t ORDER BY id")
    expected = cur.fetchall()
    got = (
        [tuple(r) for r in store.asof("public.t", AtTime.now()).rows]
        if hasattr(AtTime, "now")
        else None
    )
    if got is None:
        from datetime import UTC, datetime

        got = [tuple(r) for r in store.asof("public.t", AtTime(datetime.now(UTC))).rows]
    assert got == expected
    dupes = store.sql("SELECT _lsn, _seq, count(*) FROM h_1 GROUP BY 1, 2 HAVING count(*) > 1")
    assert dupes == []
    assert failures >= 3  # the faults really happened
    store.close()
    conn.close()
