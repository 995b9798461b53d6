"""Evidence for the bottlenecks in docs/benchmarks.md: ``python -m bench.diagnose WHAT``.

- ``write``: ``DuckDBStore.write`` of pgbench-style updates, by batch size and by the
  size of the table's head (current rows), timed per step (head read, diff, history
  insert, head rewrite, bookkeeping): shows that a write's cost grows with the table,
  not with the batch.
- ``history``: the row-history query on the timetravel store (build it first with
  ``python -m bench --only timetravel``) against variants: without the ``OR _op =
  TRUNCATE`` term, and on a copy sorted by key.
- ``asof``: the as-of query's time split between DuckDB (execute) and turning rows into
  Python tuples (fetch), and what fetching Arrow instead would cost.
- ``order``: the timetravel queries on the store as written and on a copy whose history
  is rewritten in ``_pos`` order.
- ``live``: pgbench beside a capture as shipped, with the store on tmpfs, and with store
  writes coalesced (an experiment): what the live cost is made of.
- ``ingest``: Debezium file ingest split into its floors: Arrow's JSON reader alone, the
  bulk decoder, a plain DuckDB append of the decoded columns, and the whole ingest.
- ``statements``: a whole 1M-event Debezium ingest with every store statement timed,
  summed by kind (COMMIT, the diff, history and head writes...).

These are diagnostics, not figures: single runs, printed, not written to results.json.
"""

from __future__ import annotations

import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import OUT, peak_rss_mb


def write(
    head_rows: tuple[int, ...] = (10_000, 1_000_000),
    batches: tuple[int, ...] = (300, 3_000, 20_000),
) -> None:
    """Median ms per ``DuckDBStore.write`` of random updates, by head size and batch size;
    then a cProfile of small writes against the large head (which statements dominate)."""
    import cProfile
    import pstats

    from bench.timetravel import FILLER, START_US, _schema
    from rowback.model import Change, Op
    from rowback.store.duckdb.store import DuckDBStore

    schema = _schema()
    rnd = random.Random(1)
    print(f"{'head rows':>10} {'batch':>7} {'ms/write':>9} {'us/change':>10}")
    for rows in head_rows:
        tmp = Path(tempfile.mkdtemp(prefix="rowback-diag-"))
        st = DuckDBStore(tmp)
        lsn = 1
        for lo in range(1, rows + 1, 100_000):
            items = []
            for aid in range(lo, min(rows, lo + 99_999) + 1):
                row = [str(aid), "1", "0", FILLER]
                items.append(
                    Change(schema, Op.SNAPSHOT, (row[0],), row, None, START_US, 0, lsn, aid)
                )
            st.write(items, "postgres", {"lsn": lsn})
        st.sql("CHECKPOINT")

        def updates(size: int, rows: int = rows) -> list[Any]:
            nonlocal lsn
            lsn += 1
            out = []
            for seq in range(size):
                aid = str(rnd.randint(1, rows))
                row = [aid, "1", str(rnd.randint(-5000, 5000)), FILLER]
                out.append(
                    Change(schema, Op.UPDATE, (aid,), row, None, START_US + lsn, lsn, lsn, seq + 1)
                )
            return out

        for size in batches:
            times = []
            for _ in range(max(3, min(20, 200_000 // size))):
                items = updates(size)
                t = time.perf_counter()
                st.write(items, "postgres", {"lsn": lsn})
                times.append(time.perf_counter() - t)
            med = statistics.median(times)
            print(f"{rows:>10,} {size:>7,} {med * 1000:>9.1f} {med / size * 1e6:>10.1f}")
        if rows == max(head_rows):
            prof = cProfile.Profile()
            for _ in range(20):
                items = updates(min(batches))
                prof.runcall(st.write, items, "postgres", {"lsn": lsn})
            print(f"\ncProfile of 20 writes of {min(batches)} updates, head of {rows:,} rows:")
            pstats.Stats(prof).sort_stats("tottime").print_stats(8)
        st.close()
        shutil.rmtree(tmp)
    print(f"peak RSS {peak_rss_mb():.0f} MB")


def _timetravel_store() -> Path:
    found = sorted((OUT / "cache").glob("timetravel-*-1000000-10000000-*"))
    if not found:
        sys.exit("no timetravel store: run `python -m bench --only timetravel` first")
    return found[-1]


def history(samples: int = 50) -> None:
    import duckdb

    from rowback.store.duckdb import DuckDBStore

    path = _timetravel_store()
    st = DuckDBStore(path, read_only=True)
    max_aid = st.sql("SELECT max(c0) FROM h_1")[0][0]
    rnd = random.Random(3)
    keys = [rnd.randint(1, max_aid) for _ in range(samples)]

    def bench(label: str, fn: Any) -> None:
        fn(keys[0])
        ts = []
        for k in keys:
            t = time.perf_counter()
            fn(k)
            ts.append(time.perf_counter() - t)
        print(f"{label:<58} p50 {statistics.median(ts) * 1000:7.1f} ms")

    cols = "_pos, _lsn, _txid, _ts, _op, _m0, c0, c1, c2, c3"
    bench(
        "store.history (as shipped)",
        lambda k: list(st.history("public.pgbench_accounts", [str(k)]).rows),
    )
    bench(
        "its SQL: WHERE c0 = ? OR _op = 4 ORDER BY _pos",
        lambda k: st.sql(f"SELECT {cols} FROM h_1 WHERE (c0 = ?) OR _op = 4 ORDER BY _pos", [k]),
    )
    bench(
        "WHERE c0 = ? ORDER BY _pos (truncates looked up apart)",
        lambda k: st.sql(f"SELECT {cols} FROM h_1 WHERE c0 = ? ORDER BY _pos", [k]),
    )
    st.close()
    tmp = Path(tempfile.mkdtemp(prefix="rowback-diag-"))
    con = duckdb.connect(str(tmp / "sorted.duckdb"))
    con.execute(f"ATTACH '{path / 'rowback.duckdb'}' AS src (READ_ONLY)")
    t = time.perf_counter()
    con.execute("CREATE TABLE h AS SELECT * FROM src.h_1 ORDER BY c0, _pos")
    con.execute("CHECKPOINT")
    built = time.perf_counter() - t
    size = (tmp / "sorted.duckdb").stat().st_size
    bench(
        f"copy sorted by (key, _pos) [{built:.0f} s to build, {size / 2**20:.0f} MB]",
        lambda k: con.execute(f"SELECT {cols} FROM h WHERE c0 = ? ORDER BY _pos", [k]).fetchall(),
    )
    con.close()
    shutil.rmtree(tmp)


def asof() -> None:
    from rowback.store.duckdb import DuckDBStore, queries
    from rowback.when import AtTime

    path = _timetravel_store()
    st = DuckDBStore(path, read_only=True)
    lo, hi = st.sql("SELECT min(ts), max(ts) FROM _rb_tx WHERE txid > 0")[0]
    sqls: list[str] = []
    real_execute = st._con.execute

    class Spy:
        def __getattr__(self, name: str) -> Any:
            return getattr(st._con, name)

        def execute(self, q: str, *a: Any) -> Any:
            sqls.append(q)
            return real_execute(q, *a)

    for label, frac in (("@99%", 0.99), ("@50%", 0.5)):
        point = AtTime(lo + (hi - lo) * frac)
        sqls.clear()
        t = time.perf_counter()
        res = queries.asof(Spy(), st.table("public.pgbench_accounts"), point)  # type: ignore[arg-type]
        t_exec = time.perf_counter() - t
        t = time.perf_counter()
        n = sum(1 for _ in res.rows)
        t_fetch = time.perf_counter() - t
        t = time.perf_counter()
        arrow = st._con.sql(sqls[-1]).to_arrow_table()
        t_arrow = time.perf_counter() - t
        print(
            f"asof {label}: {n:,} rows; execute {t_exec * 1000:.0f} ms, fetch as Python tuples "
            f"{t_fetch * 1000:.0f} ms; execute + Arrow {t_arrow * 1000:.0f} ms "
            f"({arrow.num_rows:,} rows)"
        )
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    st.close()


def _recvlogical(pg: Any, conn: Any, seconds: int) -> dict[str, Any]:
    """pgbench beside ``pg_recvlogical`` (C, output to /dev/null) on its own pgoutput slot:
    the floor cost of logical decoding + a walsender on this machine."""
    import subprocess

    from bench import pg as pgb

    with conn.cursor() as cur:
        cur.execute("SELECT pg_create_logical_replication_slot('rb_floor', 'pgoutput')")
    tool = str(pg.bindir / "pg_recvlogical")
    args = ["-h", pg.host, "-p", str(pg.port), "-U", "postgres", "-d", "postgres"]
    opts = ["-o", "proto_version=2", "-o", "publication_names=rowback", "-o", "streaming=on"]
    proc = subprocess.Popen(
        [tool, *args, "--slot", "rb_floor", "--start", *opts, "-f", "/dev/null"]
    )
    try:
        pgb.wait_active(conn, "rb_floor")
        tps = pgb.pgbench(pg, "-c", "4", "-j", "2", "-T", str(seconds))["tps"]
    finally:
        proc.terminate()
        proc.wait()
    return {"tps": tps}


def live(seconds: int = 20) -> None:
    """pgbench with a consumer beside it, one run each: pg_recvlogical to /dev/null (the
    floor), Rowback's capture as shipped, with its store on tmpfs (no fsync cost), and
    with store writes coalesced to one per 0.5 s (an experiment: what would batching the
    idle-path flushes buy?). Lags: at each write, now - commit of the last / the oldest
    change written."""
    from bench import capture_live as cl
    from bench import pg as pgb
    from bench.harness import child

    variants = [
        ("pg_recvlogical (floor)", None, -1.0),
        ("rowback as shipped", None, 0.0),
        ("rowback, store on tmpfs", "/dev/shm", 0.0),
        ("rowback, writes >= 0.5 s", None, 0.5),
    ]
    print(
        f"{'variant':<26} {'alone':>6} {'with':>6} {'ratio':>6} {'lag p50':>8} {'lag p99':>8} "
        f"{'oldest p99':>10} {'writes/s':>8} {'write ms':>8} {'CPU':>5}"
    )
    for label, where, coalesce in variants:
        base = Path(tempfile.mkdtemp(prefix="rowback-diag-", dir=where))
        pg = pgb.server(fast=False)
        conn = pgb.connect(pg)
        try:
            pgb.pgbench_init(pg, 10)
            child("bench.capture_live:snapshot", dsn=pg.dsn(), store=str(base / "store"))
            alone = pgb.pgbench(pg, "-c", "4", "-j", "2", "-T", str(seconds))["tps"]
            if coalesce < 0:
                r = _recvlogical(pg, conn, seconds)
            else:
                r = cl._with_capture(pg, str(base / "store"), seconds, conn, coalesce_s=coalesce)
        finally:
            conn.close()
            pg.stop()
            shutil.rmtree(base, ignore_errors=True)
        nan = float("nan")
        print(
            f"{label:<26} {alone:>6.0f} {r['tps']:>6.0f} {r['tps'] / alone:>6.2f} "
            f"{r.get('flush_p50', nan):>8.2f} {r.get('flush_p99', nan):>8.2f} "
            f"{r.get('oldest_p99', nan):>10.2f} {r.get('writes_per_s', nan):>8.1f} "
            f"{r.get('write_ms_p50', nan):>8.0f} {r.get('capture_cpu', nan):>5.2f}"
        )


def order() -> None:
    """The timetravel queries on the store as written, and on a copy whose history table
    is rewritten in ``_pos`` order (the order the row-by-row write path produced): what the
    physical order of history rows costs. Also the bytes of both history tables."""
    import duckdb

    from bench.harness import child

    path = _timetravel_store()
    tmp = Path(tempfile.mkdtemp(prefix="rowback-diag-"))
    shutil.copy(path / "rowback.duckdb", tmp / "rowback.duckdb")
    con = duckdb.connect(str(tmp / "rowback.duckdb"))
    back = con.execute(
        "SELECT count(*) FROM (SELECT _pos::BIGINT - lag(_pos::BIGINT) OVER (ORDER BY rowid) AS d "
        "FROM h_1) WHERE d < 0"
    ).fetchone()[0]
    total = con.execute("SELECT count(*) FROM h_1").fetchone()[0]
    print(f"history rows stored after a row with a larger _pos: {back:,} of {total:,}")
    con.execute("CREATE TABLE h_sorted AS SELECT * FROM h_1 ORDER BY _pos")
    con.execute("DROP TABLE h_1")
    con.execute("ALTER TABLE h_sorted RENAME TO h_1")
    con.execute("CHECKPOINT")
    con.close()
    for label, store in (("as written", path), ("rewritten in _pos order", tmp)):
        got = child("bench.timetravel:query", store=str(store), seed=7, samples=100)
        ms = {
            k: got[k] * 1000
            for k in ("asof_recent_s", "asof_middle_s", "history_p50_s", "tx_p50_s")
        }
        print(
            f"{label:<24} asof@99% {ms['asof_recent_s']:6.0f} ms  asof@50% "
            f"{ms['asof_middle_s']:6.0f} ms  history p50 {ms['history_p50_s']:5.1f} ms  "
            f"tx p50 {ms['tx_p50_s']:5.1f} ms"
        )
    shutil.rmtree(tmp)


def _cpu() -> float:
    import resource

    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def _structure(value: Any) -> Any:
    """A ``json_transform`` structure for ``value`` (a decoded line): the type of each leaf."""
    if isinstance(value, dict):
        return {k: _structure(v) for k, v in value.items()}
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int):
        return "BIGINT"
    if isinstance(value, float):
        return "DOUBLE"
    return "VARCHAR" if isinstance(value, str) else "JSON"


def ingest(events: int = 200_000, runs: int = 3) -> None:
    """What bounds Debezium file ingest: on the benchmark's own events (no schema
    wrapper), the medians of wall and CPU seconds of (1) Arrow's JSON reader alone, with
    the table's types declared, (2) the bulk decoder (parse, checks, text conversion),
    (3) appending the decoded columns to a plain DuckDB table and committing, with no
    diff and no head, (4) the whole ingest; each stage per block of 16 MB."""
    import io

    import duckdb
    import orjson
    import pyarrow as pa
    import pyarrow.json as pj

    from bench.ingest_debezium import generate
    from rowback.sources.debezium import columnar
    from rowback.sources.debezium.decode import Decoder
    from rowback.sources.debezium.ingest import BLOCK, ingest_file
    from rowback.store.duckdb.store import DuckDBStore

    tmp = Path(tempfile.mkdtemp(prefix="rowback-diag-"))
    path = tmp / "events.jsonl"
    generate(path, events, wrapped=False)
    data = path.read_bytes()
    blocks, i = [], 0
    while i < len(data):
        j = data.rfind(b"\n", i, i + BLOCK) + 1
        blocks.append(data[i:j])
        i = j
    first = Decoder()
    first.decode(blocks[0][: blocks[0].index(b"\n")])
    tab = first.tables.current[("public", "orders")]
    row, _ = columnar._row_type(tab)
    schema = pa.schema(
        [("before", row), ("after", row), ("source", columnar._SOURCE), ("op", pa.string())]
    )
    opts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")

    def parse() -> None:
        for b in blocks:
            pj.read_json(io.BytesIO(b), read_options=columnar._READ, parse_options=opts)

    decoded: list[Any] = []

    def duck_proof() -> None:
        # DuckDB's own JSON reader into typed columns, and the proof a bulk path would need
        # that it read each line exactly (it casts silently): the line re-serialized is the
        # line. Not a product path; a floor to compare with Arrow's reader.
        con = duckdb.connect()
        con.execute("SET threads = 1")
        con.execute("CREATE TABLE lines (l VARCHAR)")
        update = next(orjson.loads(x) for x in blocks[0].split(b"\n") if b'"op":"u"' in x)
        structure = orjson.dumps(_structure(update)).decode().replace("'", "''")
        for b in blocks:
            con.register("part", pa.table({"l": b.decode().split("\n")[:-1]}))
            got = con.execute(
                "SELECT count(*) FILTER (WHERE to_json(j)::VARCHAR <> l) FROM "
                f"(SELECT l, json_transform(l, '{structure}') AS j FROM part)"
            ).fetchall()
            assert got[0][0] == 0, got
        con.close()

    def decode() -> None:
        d = Decoder()
        d.decode(blocks[0][: blocks[0].index(b"\n")])
        bulk = columnar.BlockDecoder(d)
        decoded.clear()
        decoded.extend(bulk.decode(b) for b in blocks[1:] if b)

    def append() -> None:
        db = tmp / "plain.duckdb"
        db.unlink(missing_ok=True)
        con = duckdb.connect(str(db))
        for n, batch in enumerate(decoded):
            cols = {f"c{k}": a for k, a in enumerate(batch.after)}
            con.register("part", pa.table(cols))
            if n == 0:
                con.execute("CREATE TABLE h AS SELECT * FROM part LIMIT 0")
            con.execute("BEGIN")
            con.execute("INSERT INTO h SELECT * FROM part")
            con.execute("COMMIT")
        con.close()

    def whole() -> None:
        store = tmp / "store"
        shutil.rmtree(store, ignore_errors=True)
        with DuckDBStore(store) as st:
            ingest_file(st, str(path))

    print(f"{events:,} events, {len(data) / events:.0f} B each, {len(blocks)} blocks")
    for label, fn in (
        ("Arrow JSON reader alone", parse),
        ("DuckDB JSON reader + exactness proof", duck_proof),
        ("bulk decoder (parse, check, to text)", decode),
        ("plain append + commit (no diff, no head)", append),
        ("whole ingest (file to store)", whole),
    ):
        walls, cpus = [], []
        for _ in range(runs):
            t, c = time.perf_counter(), _cpu()
            fn()
            walls.append(time.perf_counter() - t)
            cpus.append(_cpu() - c)
        w, c = statistics.median(walls), statistics.median(cpus)
        print(
            f"{label:<42} {w:6.2f} s wall {events / w:>9,.0f} ev/s   "
            f"{c:6.2f} CPU-s {events / c:>9,.0f} ev/CPU-s"
        )
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    shutil.rmtree(tmp)


def statements(events: int = 1_000_000) -> None:
    """Where a whole ingest's store time goes: every statement the store runs during a
    Debezium file ingest of ``events`` benchmark events, timed and summed by kind."""
    import collections
    import re

    from bench.ingest_debezium import generate
    from rowback.sources.debezium.ingest import ingest_file
    from rowback.store.duckdb.store import DuckDBStore

    spent: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()

    class Timed:
        def __init__(self, con: Any) -> None:
            self._con = con

        def __getattr__(self, name: str) -> Any:
            return getattr(self._con, name)

        def execute(self, q: str, *a: Any) -> Any:
            kind = re.sub(r"\d+", "#", " ".join(q.split())[:60])
            t = time.perf_counter()
            try:
                return self._con.execute(q, *a)
            finally:
                spent[kind] += time.perf_counter() - t
                count[kind] += 1

    tmp = Path(tempfile.mkdtemp(prefix="rowback-diag-"))
    path = tmp / "events.jsonl"
    generate(path, events, wrapped=False)
    t, c = time.perf_counter(), _cpu()
    with DuckDBStore(tmp / "store") as st:
        st._con = Timed(st._con)
        ingest_file(st, str(path))
    wall, cpu = time.perf_counter() - t, _cpu() - c
    print(f"{events:,} events: {wall:.2f} s wall, {cpu:.2f} CPU-s, peak RSS {peak_rss_mb():.0f} MB")
    print(f"store statements: {sum(spent.values()):.2f} s")
    for kind, secs in spent.most_common(10):
        print(f"{secs:7.2f} s {count[kind]:5d}x  {kind}")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    fns = {"write": write, "history": history, "asof": asof, "live": live, "order": order}
    fns["ingest"] = ingest
    fns["statements"] = statements
    if what not in fns:
        sys.exit(f"usage: python -m bench.diagnose {{{'|'.join(fns)}}}")
    fns[what]()
