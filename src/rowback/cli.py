"""The ``rowback`` command: thin wrappers that build a library object and call one method.

Exit codes scripts can rely on:
0 success; 1 error (one line on stderr); 2 bad usage; 3 finished, but some input was
quarantined; 4 finished, but history gaps were detected (a before image disagreed);
5 ``whatif``: the statement would fail (its error is in the summary).
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from rowback.errors import BadParameter, RowbackError
from rowback.filters import Filter
from rowback.render import write_rows
from rowback.store.base import Reader, Result, Store
from rowback.store.registry import open_store, store_path
from rowback.when import Point, parse_when, point_text

if TYPE_CHECKING:
    from rowback.revert.run import Request as RevertRequest

EXIT_ERROR, EXIT_USAGE, EXIT_QUARANTINED, EXIT_GAPS, EXIT_WOULD_FAIL = 1, 2, 3, 4, 5

app = typer.Typer(
    name="rowback",
    help="Keep a queryable shadow of every row's history; look at any table as it was.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Fmt(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store", envvar="ROWBACK_STORE", help="Store directory [default: ./rowback-store]."
    ),
]
FmtOpt = Annotated[
    Fmt, typer.Option("--format", "-f", help="table, json (one object per line) or csv.")
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar="ROWBACK_CONFIG",
        help="Policy file (thresholds, actions, webhooks) [default: ./rowback.toml if any].",
    ),
]
DetectOpt = Annotated[
    bool, typer.Option("--detect/--no-detect", help="Judge every change for damage.")
]
LearnedOpt = Annotated[
    bool,
    typer.Option(
        "--learned",
        help="Also the learned models (autoencoder, write-rate forecaster): rowback[ml].",
    ),
]
WHEN_HELP = "ISO-8601 with zone, relative (-5m, 2h ago), lsn:0/16B3748 or tx:TXID (just before)."

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def _reader(store: str | None) -> Iterator[Store]:
    s = open_store(store_path(store), read_only=True)
    try:
        yield s
    finally:
        s.close()


def _emit(result: Result, fmt: Fmt) -> None:
    write_rows(sys.stdout, fmt.value, result.columns, result.rows, result.types)


def _query(
    store: str | None,
    fmt: Fmt,
    path: str,
    params: dict[str, Any],
    offline: Callable[[Reader], Result],
) -> None:
    """Print a read: asked of the running service when ``rowback run`` holds the store
    (the same bytes as offline), else read from the store directly."""
    from rowback.client import ServiceGone, fetch
    from rowback.service import read_info

    info = read_info(store_path(store))
    if info is not None:
        try:
            fetch(info, path, params, fmt.value, sys.stdout)
            return
        except ServiceGone:
            pass  # it stopped between the look and the ask: the store is free again
    with _reader(store) as s:
        _emit(offline(s), fmt)


@app.command()
def capture(
    source: Annotated[str, typer.Option("--source", help="libpq DSN or URL of the database.")],
    store: StoreOpt = None,
    tables: Annotated[
        str | None,
        typer.Option(help="Comma-separated schema-qualified tables [default: all with a PK]."),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Capture up to now, then exit.")] = False,
    name: Annotated[str, typer.Option(help="Source name in the store.")] = "postgres",
    slot: Annotated[str, typer.Option(help="Replication slot to create or reuse.")] = "rowback",
    publication: Annotated[str, typer.Option(help="Publication to create or reuse.")] = "rowback",
    batch: Annotated[int, typer.Option(help="Changes per store write.", min=1)] = 20_000,
    fmt: FmtOpt = Fmt.table,
    config: ConfigOpt = None,
    detect: DetectOpt = True,
    learned: LearnedOpt = False,
) -> None:
    """Capture every row change of a PostgreSQL database into the store (pgoutput).

    A lost connection to the source (restart, failover) is retried with a growing pause;
    with --once, up to 5 times in a row. Detection judges every change as it is stored;
    here its incidents wait for a person (`rowback incidents`): only `rowback run`
    reverts automatically."""
    from rowback.progress import capture_progress
    from rowback.sources.postgres.capture import CaptureConfig
    from rowback.sources.postgres.reconnect import ReconnectingCapture

    cfg = CaptureConfig(
        source,
        source=name,
        slot=slot,
        publication=publication,
        tables=[t.strip() for t in tables.split(",") if t.strip()] if tables else None,
        batch_size=batch,
        once=once,
    )
    s = open_store(store_path(store))
    try:
        if detect:  # no responder here: auto_revert waits for a person, as in replay
            _watch(s, config, replay=True, learned=learned)
        with capture_progress(enabled=sys.stderr.isatty()) as progress:
            cap = ReconnectingCapture(
                cfg, s, progress, notify=lambda msg: typer.echo(f"rowback: {msg}", err=True)
            )
            previous = {sig: signal.signal(sig, lambda *_: cap.stop()) for sig in (2, 15)}
            try:
                status = cap.run()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
    finally:
        s.close()
    from rowback.when import format_lsn

    row = (
        ",".join(status.tables),
        status.snapshot_rows,
        status.changes,
        status.transactions,
        status.gaps,
        format_lsn(status.lsn),
    )
    cols = ["tables", "snapshot_rows", "changes", "transactions", "gaps", "confirmed_lsn"]
    write_rows(sys.stdout, fmt.value, cols, [row])
    for example in status.gap_examples:
        typer.echo(f"rowback: gap: {example}", err=True)
    if status.gaps:
        raise typer.Exit(EXIT_GAPS)


@app.command()
def run(
    source: Annotated[
        str | None, typer.Option("--source", help="libpq DSN or URL of the database.")
    ] = None,
    nats: Annotated[
        str | None, typer.Option(help="Or: consume Debezium events from NATS JetStream here.")
    ] = None,
    redis: Annotated[
        str | None, typer.Option(help="Or: consume Debezium events from a Redis stream here.")
    ] = None,
    stream: Annotated[str | None, typer.Option(help="JetStream stream / Redis stream key.")] = None,
    subject: Annotated[str | None, typer.Option(help="JetStream subject filter.")] = None,
    group: Annotated[str, typer.Option(help="Durable consumer / consumer group.")] = "rowback",
    key: Annotated[
        list[str] | None,
        typer.Option(help="Debezium: primary key of a table, schema.table=col1,col2."),
    ] = None,
    store: StoreOpt = None,
    tables: Annotated[
        str | None,
        typer.Option(help="Comma-separated schema-qualified tables [default: all with a PK]."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Source name in the store [postgres / debezium].")
    ] = None,
    slot: Annotated[str, typer.Option(help="Replication slot to create or reuse.")] = "rowback",
    publication: Annotated[str, typer.Option(help="Publication to create or reuse.")] = "rowback",
    batch: Annotated[int, typer.Option(help="Changes per store write.", min=1)] = 20_000,
    listen: Annotated[
        str | None,
        typer.Option(help="HOST:PORT to serve the API on [default: 127.0.0.1, a free port]."),
    ] = None,
    query_timeout: Annotated[
        float, typer.Option(help="Seconds a read may run before it is stopped.", min=0.1)
    ] = 60.0,
    config: ConfigOpt = None,
    detect: DetectOpt = True,
    learned: LearnedOpt = False,
) -> None:
    """Capture continuously and serve the store over HTTP (REST API) in one process.

    The address and an access token are written to STORE/service.json (mode 0600); the
    read commands (asof, history, changes, tx, tables, quarantine, status), revert and
    reversions find the service there and ask it. SIGTERM or Ctrl-C stops it cleanly."""
    from rowback.api import create_app
    from rowback.api.context import ServiceContext
    from rowback.service import run_service

    if sum(x is not None for x in (source, nats, redis)) != 1:
        raise RowbackError("give one of --source DSN, --nats URL or --redis URL")
    path = store_path(store)
    s = open_store(path)
    try:
        policy = (
            _watch(s, config, source is None, learned, hold_tail=source is None) if detect else None
        )
        runner, live, ready = _runner(
            s,
            source,
            nats,
            redis,
            stream,
            subject,
            group,
            _parse_keys(key or []),
            tables,
            name,
            slot,
            publication,
            batch,
        )

        notify = lambda m: typer.echo(f"rowback: {m}", err=True)  # noqa: E731
        responders = []

        def make_app(token: str) -> Any:
            ctx = ServiceContext(
                s, token, query_timeout, live=live, ready=ready, source_dsn=source, policy=policy
            )
            if policy is not None:
                from rowback.respond import Responder

                responders.append(Responder(ctx, policy, notify))
                responders[-1].start()
            return create_app(ctx)

        try:
            run_service(path, make_app, runner, listen, notify)
        finally:
            for r in responders:
                r.stop()
    finally:
        s.close()


def _runner(
    s: Store,
    source: str | None,
    nats: str | None,
    redis: str | None,
    stream: str | None,
    subject: str | None,
    group: str,
    keys: dict[str, list[str]],
    tables: str | None,
    name: str | None,
    slot: str,
    publication: str,
    batch: int,
) -> tuple[Any, Callable[[], dict[str, dict[str, Any]]], Callable[[], bool]]:
    """The service's main loop, and what it tells the status routes."""
    notify = lambda msg: typer.echo(f"rowback: {msg}", err=True)  # noqa: E731
    if source is not None:
        from rowback.sources.postgres.capture import CaptureConfig
        from rowback.sources.postgres.probe import SlotProbe
        from rowback.sources.postgres.reconnect import ReconnectingCapture

        cfg = CaptureConfig(
            source,
            source=name or "postgres",
            slot=slot,
            publication=publication,
            tables=[t.strip() for t in tables.split(",") if t.strip()] if tables else None,
            batch_size=batch,
        )
        cap = ReconnectingCapture(cfg, s, None, notify=notify)
        probe = SlotProbe(source, slot)

        def live() -> dict[str, dict[str, Any]]:
            st = cap.status
            state = "streaming" if cap.streaming else "connecting"
            facts = probe.facts(st.lsn)
            return {cfg.source: {"state": state, "lag_s": round(st.lag_s, 3), **facts}}

        return cap, live, lambda: cap.streaming
    import threading

    if not stream:
        raise RowbackError("--stream is required with --nats or --redis")
    stop = threading.Event()
    label = name or "debezium"

    class StreamRunner:
        def run(self) -> object:
            if nats:
                from rowback.sources.debezium.nats import ingest_nats

                return ingest_nats(
                    s,
                    nats,
                    str(stream),
                    subject or f"{stream}.>",
                    durable=group,
                    source=label,
                    keys=keys,
                    stop=stop,
                )
            from rowback.sources.debezium.redis import ingest_redis

            assert redis is not None
            return ingest_redis(
                s, redis, str(stream), group=group, source=label, keys=keys, stop=stop
            )

        def stop(self) -> None:
            stop.set()

    def live_stream() -> dict[str, dict[str, Any]]:
        return {label: {"state": "stopping" if stop.is_set() else "streaming"}}

    return StreamRunner(), live_stream, lambda: not stop.is_set()


@app.command()
def status(
    store: StoreOpt = None,
    source: Annotated[
        str | None,
        typer.Option("--source", help="Offline: also ask this database about the slot."),
    ] = None,
    slot: Annotated[str, typer.Option(help="Replication slot capture uses.")] = "rowback",
    fmt: FmtOpt = Fmt.table,
) -> None:
    """Per source: position, last durable write, lag (s, bytes), WAL the slot retains,
    tables with row counts, quarantined input; asked of the running service if any."""
    from rowback.views import status_docs, status_result

    def offline(r: Reader) -> Result:
        live: dict[str, dict[str, Any]] = {}
        if source:
            from rowback.sources.postgres.probe import SlotProbe

            for st in r.sources():
                lsn = int((st.position or {}).get("lsn", 0))
                if st.position and "lsn" in st.position:
                    live[st.name] = SlotProbe(source, slot).facts(lsn)
                    live[st.name]["state"] = "stopped"
        return status_result(status_docs(r, live))

    _query(store, fmt, "/api/v1/status", {}, offline)


@app.command()
def doctor(
    source: Annotated[str, typer.Option("--source", help="libpq DSN or URL of the database.")],
    tables: Annotated[str | None, typer.Option(help="Comma-separated tables to check.")] = None,
    slot: Annotated[str, typer.Option(help="Replication slot capture uses.")] = "rowback",
    publication: Annotated[str, typer.Option(help="Publication capture uses.")] = "rowback",
    fmt: FmtOpt = Fmt.table,
) -> None:
    """Check what capture needs from the source, and print the exact fix for each problem."""
    from rowback.sources.postgres.doctor import diagnose

    wanted = [t.strip() for t in tables.split(",")] if tables else None
    checks = diagnose(source, wanted, slot, publication)
    if fmt is Fmt.table:
        # fixes are statements to copy: each printed whole on its own lines, after the table
        rows = [(c.check, c.status, c.detail) for c in checks]
        write_rows(sys.stdout, "table", ["check", "status", "detail"], rows, whole=["detail"])
        for c in checks:
            if c.fix:
                typer.echo(f"\nfix for {c.check}:\n{c.fix}")
    else:
        full = [(c.check, c.status, c.detail, c.fix or "") for c in checks]
        write_rows(sys.stdout, fmt.value, ["check", "status", "detail", "fix"], full)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(EXIT_ERROR)


@app.command()
def ingest(
    file: Annotated[str | None, typer.Argument(help="File of events, or - for stdin.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Input format: debezium.")] = "debezium",
    store: StoreOpt = None,
    name: Annotated[str, typer.Option(help="Source name in the store.")] = "debezium",
    key: Annotated[
        list[str] | None,
        typer.Option(help="Primary key of a table: schema.table=col1,col2 (repeatable)."),
    ] = None,
    nats: Annotated[
        str | None, typer.Option(help="Consume from NATS JetStream at this URL.")
    ] = None,
    redis: Annotated[
        str | None, typer.Option(help="Consume from a Redis stream at this URL.")
    ] = None,
    stream: Annotated[str | None, typer.Option(help="JetStream stream / Redis stream key.")] = None,
    subject: Annotated[str | None, typer.Option(help="JetStream subject filter.")] = None,
    group: Annotated[str, typer.Option(help="Durable consumer / consumer group.")] = "rowback",
    once: Annotated[bool, typer.Option(help="Stop when the stream is drained.")] = False,
    config: ConfigOpt = None,
    detect: DetectOpt = True,
    learned: LearnedOpt = False,
) -> None:
    """Ingest Debezium change events from a file, stdin, NATS JetStream or Redis Streams.

    Detection judges every change as it is stored (event commit times are its clock, so
    the same input gives the same incidents); see `rowback incidents`."""
    if fmt != "debezium":
        raise RowbackError(f"--format {fmt}: the only input format is debezium")
    keys = _parse_keys(key or [])
    from rowback.sources.debezium import ingest as dbz

    def told(msg: str) -> None:
        typer.echo(f"rowback: {msg}", err=True)

    s = open_store(store_path(store))
    try:
        if detect:
            _watch(s, config, replay=True, learned=learned, hold_tail=True)
        if nats or redis:
            if not stream:
                raise RowbackError("--stream is required with --nats or --redis")
            if nats:
                from rowback.sources.debezium.nats import ingest_nats

                report = ingest_nats(
                    s,
                    nats,
                    stream,
                    subject or f"{stream}.>",
                    durable=group,
                    source=name,
                    keys=keys,
                    once=once,
                    notify=told,
                )
            else:
                assert redis is not None
                from rowback.sources.debezium.redis import ingest_redis

                report = ingest_redis(
                    s, redis, stream, group=group, source=name, keys=keys, once=once, notify=told
                )
        else:
            if file is None:
                raise RowbackError("give a FILE (or - for stdin), or --nats/--redis")
            report = dbz.ingest_file(
                s, file, source=name, keys=keys, progress=sys.stderr.isatty(), notify=told
            )
        if detect:
            s.judge_pending(name)  # the stream ended: its last transaction is whole
    finally:
        s.close()
    typer.echo(report.summary(), err=True)
    for line in report.errors[:10]:
        typer.echo(f"rowback: {line}", err=True)
    if report.quarantined:
        raise typer.Exit(EXIT_QUARANTINED)
    if report.gaps:
        raise typer.Exit(EXIT_GAPS)


def _parse_keys(items: list[str]) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for item in items:
        table, sep, cols = item.partition("=")
        names = [c.strip() for c in cols.split(",") if c.strip()]
        if not sep or "." not in table or not names:
            raise RowbackError(f"--key {item!r}: expected schema.table=col1[,col2]")
        keys[table.strip()] = names
    return keys


@app.command()
def quarantine(
    store: StoreOpt = None,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    fmt: FmtOpt = Fmt.table,
    replay: Annotated[
        bool, typer.Option("--replay", help="Decode again with --key; store what now decodes.")
    ] = False,
    ids: Annotated[
        list[int] | None, typer.Option("--id", help="With --replay: only these ids (repeatable).")
    ] = None,
    key: Annotated[
        list[str] | None,
        typer.Option(help="With --replay: primary key of a table, schema.table=col1,col2."),
    ] = None,
) -> None:
    """List inputs that could not be decoded: source, line, error and raw text; or
    --replay them (events older than history stored since are refused and stay listed)."""
    if not replay:
        if ids or key:
            raise RowbackError("--id and --key go with --replay")
        _query(
            store, fmt, "/api/v1/quarantine", {"source": source}, lambda r: r.quarantined(source)
        )
        return
    from rowback.sources.debezium.replay import replay_quarantine

    keys = _parse_keys(key or [])
    s = open_store(store_path(store))
    try:
        report = replay_quarantine(
            s, source, ids or None, keys, notify=lambda m: typer.echo(f"rowback: {m}", err=True)
        )
    finally:
        s.close()
    typer.echo(report.summary(), err=True)
    for line in report.errors:
        typer.echo(f"rowback: {line}", err=True)
    if report.failed or report.refused:
        raise typer.Exit(EXIT_QUARANTINED)
    if report.gaps:
        raise typer.Exit(EXIT_GAPS)


@app.command()
def tables(store: StoreOpt = None, fmt: FmtOpt = Fmt.table) -> None:
    """List captured tables with their key, columns and live row count."""
    from rowback.views import tables_result

    _query(store, fmt, "/api/v1/tables", {}, lambda r: tables_result(r.tables()))


@app.command()
def asof(
    table: Annotated[str, typer.Argument(help="schema.table (a bare name if unique).")],
    at: Annotated[str, typer.Option("--at", help=WHEN_HELP)],
    where: Annotated[
        str | None,
        typer.Option(
            help="Conditions joined by AND: =, <>, <, <=, >, >=, LIKE, IN (...), IS [NOT] NULL; "
            "e.g. \"status = 'paid' AND amount > 10\"."
        ),
    ] = None,
    store: StoreOpt = None,
    fmt: FmtOpt = Fmt.table,
) -> None:
    """The whole table (or --where a filter) as it was at a point in time."""
    from rowback.filters import parse_where

    point = parse_when(at)
    filters = parse_where(where) if where else []
    try:
        _asof(table, point, filters, store, fmt)
    except BadParameter as e:
        if e.param != "filter":
            raise
        raise BadParameter("--where", f"--where {where!r}: {e}") from None


def _asof(table: str, point: Point, filters: list[Filter], store: str | None, fmt: Fmt) -> None:
    from urllib.parse import quote

    params = {"at": point_text(point), "filter": [f.as_param() for f in filters]}
    _query(
        store,
        fmt,
        f"/api/v1/tables/{quote(table, safe='')}/asof",
        params,
        lambda r: r.asof(table, point, filters),
    )


@app.command()
def history(
    table: Annotated[str, typer.Argument(help="schema.table (a bare name if unique).")],
    key: Annotated[
        list[str],
        typer.Option("--key", "-k", help="Primary key value(s); repeat or comma-separate."),
    ],
    store: StoreOpt = None,
    fmt: FmtOpt = Fmt.table,
) -> None:
    """Every version of one row: time, txid, LSN, operation, before, after, changed columns."""
    from urllib.parse import quote

    _query(
        store,
        fmt,
        f"/api/v1/tables/{quote(table, safe='')}/history",
        {"key": key},
        lambda r: r.history(table, key),
    )


@app.command()
def changes(
    table: Annotated[str | None, typer.Option(help="Only this table.")] = None,
    since: Annotated[str | None, typer.Option(help="From (exclusive). " + WHEN_HELP)] = None,
    until: Annotated[str | None, typer.Option(help="Up to (inclusive). " + WHEN_HELP)] = None,
    txid: Annotated[int | None, typer.Option(help="Only this transaction.")] = None,
    store: StoreOpt = None,
    fmt: FmtOpt = Fmt.table,
) -> None:
    """The change log, in commit order."""
    lo = parse_when(since) if since else None
    hi = parse_when(until) if until else None
    params = {
        "table": table,
        "since": point_text(lo) if lo else None,
        "until": point_text(hi) if hi else None,
        "txid": txid,
    }
    _query(store, fmt, "/api/v1/changes", params, lambda r: r.changes(table, lo, hi, txid))


@app.command()
def tx(
    txid: Annotated[int, typer.Argument(help="Transaction id (txid / xid).")],
    source: Annotated[
        str | None, typer.Option(help="The source the txid is of (when several have it).")
    ] = None,
    store: StoreOpt = None,
    fmt: FmtOpt = Fmt.table,
) -> None:
    """Everything one transaction did, with before and after images."""
    _query(store, fmt, f"/api/v1/tx/{txid}", {"source": source}, lambda r: r.tx(txid, source))


class PlanFmt(StrEnum):
    table = "table"
    json = "json"


@app.command()
def revert(
    txid: Annotated[
        list[int] | None, typer.Option("--txid", help="A transaction to revert (repeatable).")
    ] = None,
    reversion: Annotated[
        int | None, typer.Option("--reversion", help="Undo this reversion (its id).")
    ] = None,
    incident: Annotated[
        int | None,
        typer.Option("--incident", help="Revert an incident's transactions (its id)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Or every transaction after this. " + WHEN_HELP)
    ] = None,
    until: Annotated[str | None, typer.Option(help="...up to this (inclusive).")] = None,
    table: Annotated[
        str | None,
        typer.Option(help="With --since: only this table; with --key or --where: its rows."),
    ] = None,
    key: Annotated[
        list[str] | None,
        typer.Option(
            "--key",
            "-k",
            help="Or one row of --table, by its primary key value(s) (as `history --key`: "
            "repeat or comma-separate), brought back to --to.",
        ),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            help="Or the rows of --table matching this (as `asof --where`, e.g. "
            '"price < 5"; repeatable, ANDed), brought back to --to: the rows that matched '
            "then (at --to, not now), and rows inserted after it that matched as their "
            "transaction inserted them.",
        ),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="With --table and --key/--where: revert every change to those rows (only "
            "their cells) after this. " + WHEN_HELP,
        ),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            help="nocascade (refuse on any conflict), cascade (revert the later writers too), "
            "nonconflict, or force."
        ),
    ] = "nocascade",
    target: Annotated[
        str | None, typer.Option(help="DSN of the database to revert (the captured one).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; write nothing.")
    ] = False,
    sql: Annotated[
        Path | None, typer.Option("--sql", help="Write the reverse SQL here; apply nothing.")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why, for the record.")] = None,
    disable_triggers: Annotated[
        bool,
        typer.Option(
            "--disable-triggers", help="Triggers on the target do not fire (needs a superuser)."
        ),
    ] = False,
    max_rows: Annotated[int, typer.Option(help="Refuse a revert of more rows.", min=1)] = 100_000,
    source: Annotated[str | None, typer.Option(help="The source the txids are of.")] = None,
    slot: Annotated[str, typer.Option(help="Capture's replication slot.")] = "rowback",
    publication: Annotated[str, typer.Option(help="Capture's publication.")] = "rowback",
    store: StoreOpt = None,
    fmt: Annotated[PlanFmt, typer.Option("--format", "-f", help="table or json.")] = PlanFmt.table,
) -> None:
    """Undo exactly the cells some transactions wrote; later edits of other cells survive.

    Or bring rows back: --table T --key K --to WHEN (or --where FILTER --to WHEN)
    reverts every change to those rows after WHEN, and only their cells, not the other
    rows the same transactions wrote. --where matches the rows as they were at WHEN
    (plus rows inserted after it, as inserted); --since/--until instead of --to
    reverts only their changes in that window.

    Every statement is guarded by the values the shadow holds for its row, in one
    PostgreSQL transaction: a row changed since the plan is never overwritten. Applied
    reverts are recorded (`rowback reversions`) and can be undone (--reversion ID)."""
    from rowback import revert as rv
    from rowback.revert import apply as ra
    from rowback.revert import run as rr

    try:
        chosen = rv.Mode(mode)
    except ValueError:
        raise BadParameter(
            "--mode", f"--mode {mode!r}: choose nocascade, cascade, nonconflict or force"
        ) from None
    if target is None and not (dry_run or sql):
        raise RowbackError(
            "give --target DSN (the store does not record the source's DSN), or --dry-run/--sql"
        )
    from rowback.filters import parse_where

    filters = [f for w in where or [] for f in parse_where(w)]
    req = rr.Request(
        txid or [],
        reversion,
        chosen,
        target,
        source,
        max_rows,
        reason,
        slot,
        publication,
        parse_when(since) if since else None,
        parse_when(until) if until else None,
        table,
        disable_triggers,
        parse_when(to) if to else None,
        key or [],
        filters,
        incident,
    )
    if _revert_served(store, req, dry_run, sql, fmt):
        return
    if dry_run or sql:
        with _reader(store) as r:
            plan = rr.plan_for(r, req)
        if dry_run:
            live = (lambda rows: ra.live_values(target, rows)) if target is not None else None
            rows = rv.plan_rows(plan, live)
            write_rows(sys.stdout, fmt.value, rv.PLAN_COLUMNS, rows, {"key": "row"})
            _pulled(rr.pulled_lines(plan))
            _plan_summary(plan.n_writes, len(plan.conflicts), plan.refused)
            return
        _conflicts(plan)
        if plan.refused:
            raise RowbackError(
                f"refused: {len(plan.conflicts)} conflict(s) in --mode nocascade; nothing "
                "was written (--mode nonconflict reverts the rest, force overwrites)"
            )
        assert sql is not None
        rr.write_sql(plan, sql, target, disable_triggers)
        typer.echo(f"rowback: wrote {plan.n_writes} guarded statement(s) to {sql}", err=True)
        return
    s = open_store(store_path(store))
    try:
        assert target is not None
        rr.resolve_started(s, target)
        plan = rr.plan_for(s, req)
        _conflicts(plan)
        done = rr.apply_recorded(s, req, plan)
    finally:
        s.close()
    a = done.applied
    _applied(
        [m.describe() for m in a.missed],
        a.notes,
        (done.id, chosen.value, a.rows, len(a.missed), len(plan.conflicts), a.txid),
        fmt,
        a.seconds,
    )


def _revert_served(
    store: str | None, req: RevertRequest, dry_run: bool, sql: Path | None, fmt: PlanFmt
) -> bool:
    """Revert through the running service when ``rowback run`` holds the store, printing
    what the offline revert prints; False when no service holds it."""
    from rowback import revert as rv
    from rowback.client import ServiceGone, post, revert_body
    from rowback.revert import run as rr
    from rowback.service import read_info

    info = read_info(store_path(store))
    if info is None:
        return False
    try:
        doc = post(info, "/api/v1/reversions", revert_body(req, dry_run, sql is not None))
    except ServiceGone:
        return False  # it stopped between the look and the ask: the store is free again
    except rr.Refused as e:
        for line in e.conflicts:
            typer.echo(f"rowback: conflict: {line}", err=True)
        raise
    if dry_run:
        rows = [tuple(o[c] for c in rv.PLAN_COLUMNS) for o in doc["rows"]]
        write_rows(sys.stdout, fmt.value, rv.PLAN_COLUMNS, rows, {"key": "row"})
        _pulled(doc.get("pulled", []))
        _plan_summary(int(doc["writes"]), len(doc["conflicts"]), bool(doc["refused"]))
        return True
    for line in doc["conflicts"]:
        typer.echo(f"rowback: conflict: {line}", err=True)
    _pulled(doc.get("pulled", []))
    if sql is not None:
        sql.write_text(doc["sql"])
        n = doc["statements"]
        typer.echo(f"rowback: wrote {n} guarded statement(s) to {sql}", err=True)
        return True
    row = (doc["id"], doc["mode"], doc["rows"], len(doc["missed"]), len(doc["conflicts"]))
    _applied(doc["missed"], doc["notes"], (*row, doc["txid"]), fmt, float(doc["apply_s"]))
    return True


def _applied(
    missed: list[str], notes: list[str], row: tuple[object, ...], fmt: PlanFmt, took: float
) -> None:
    for m in missed:
        typer.echo(f"rowback: changed since the plan, left as it is: {m}", err=True)
    for note in notes:
        typer.echo(f"rowback: note: {note}", err=True)
    typer.echo(
        f"rowback: applied in {took:.2f} s (rows locked from first write to commit)", err=True
    )
    cols = ["reversion", "mode", "rows", "missed", "conflicts", "txid"]
    write_rows(sys.stdout, fmt.value, cols, [row])


def _conflicts(plan: Any) -> None:
    from rowback.revert.run import conflict_lines, pulled_lines

    for line in conflict_lines(plan):
        typer.echo(f"rowback: conflict: {line}", err=True)
    _pulled(pulled_lines(plan))


def _pulled(lines: list[str]) -> None:
    for line in lines:
        typer.echo(f"rowback: {line}", err=True)


def _plan_summary(writes: int, conflicts: int, refused: bool) -> None:
    verdict = "refused in nocascade" if refused else "would apply"
    typer.echo(f"rowback: {writes} row(s) to change, {conflicts} conflict(s): {verdict}", err=True)


def _resolve_served(store: str | None, target: str) -> bool:
    """Ask the running service to settle started reversions; False when none runs."""
    from rowback.client import ServiceGone, post
    from rowback.service import read_info

    info = read_info(store_path(store))
    if info is None:
        return False
    try:
        post(info, "/api/v1/reversions/resolve", {"target": target})
    except ServiceGone:
        return False
    return True


@app.command()
def whatif(
    target: Annotated[
        str | None,
        typer.Option(help="DSN of the database [default: the running service's source]."),
    ] = None,
    sql: Annotated[str | None, typer.Option("--sql", help="The statement.")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Or: read it from here.")] = None,
    lock_timeout: Annotated[
        str, typer.Option(help="Stop when a lock is not granted within this.")
    ] = "1s",
    statement_timeout: Annotated[
        str, typer.Option(help="Stop when the statement runs longer than this.")
    ] = "30s",
    max_rows: Annotated[
        int, typer.Option(help="Print at most this many rows (the summary counts all).", min=0)
    ] = 1000,
    store: StoreOpt = None,
    fmt: FmtOpt = Fmt.table,
    config: ConfigOpt = None,
) -> None:
    """Show what one statement would change, then roll it back: every row it would insert,
    update or delete (cascades' and triggers' too), the error it would raise, its time,
    and, when the store has learned what is normal, the detectors' score, explanation
    and the action the policy would take (summary's "detection").

    It runs in a transaction that is always rolled back, under --lock-timeout and
    --statement-timeout; it never commits. Exit code 5: the statement would fail."""
    from rowback.whatif import diff

    if (sql is None) == (file is None):
        raise BadParameter("--sql", "give the statement: --sql TEXT or --file F")
    statement = sql if sql is not None else Path(str(file)).read_text()
    doc = _whatif_served(store, target, statement, lock_timeout, statement_timeout, max_rows)
    if doc is None:
        from rowback.whatif import Bounds
        from rowback.whatif import whatif as run_whatif

        if target is None:
            raise RowbackError("give --target DSN (no running service holds the store)")
        got = run_whatif(target, statement, Bounds(lock_timeout, statement_timeout))
        shown = got.changes[:max_rows]
        doc = {"changes": [diff.to_doc(c) for c in shown], "summary": diff.summary(got, len(shown))}
        if store_path(store).joinpath("rowback.duckdb").exists() and not got.failure:
            from rowback.detect.verdict import verdict
            from rowback.policy import Policy, load_policy

            with _reader(store) as r:
                rules = load_policy(config) if config is not None else Policy.default()
                doc["summary"]["detection"] = verdict(r, got.changes, rules)
    changes = [diff.from_doc(d) for d in doc["changes"]]
    if fmt is Fmt.json:
        write_rows(sys.stdout, "json", diff.JSON_COLUMNS, diff.json_rows(changes), diff.JSON_TYPES)
        import orjson

        sys.stdout.write(orjson.dumps(doc["summary"]).decode() + "\n")
    else:
        rows = diff.cell_rows(changes)
        write_rows(sys.stdout, fmt.value, diff.CELL_COLUMNS, rows, diff.CELL_TYPES)
        typer.echo(f"rowback: {diff.summary_line(doc['summary'])}", err=True)
        if doc["summary"].get("detection"):
            from rowback.detect.verdict import verdict_line

            typer.echo(f"rowback: {verdict_line(doc['summary']['detection'])}", err=True)
    if doc["summary"]["would_fail"]:
        raise typer.Exit(EXIT_WOULD_FAIL)


def _whatif_served(
    store: str | None,
    target: str | None,
    statement: str,
    lock_timeout: str,
    statement_timeout: str,
    max_rows: int,
) -> Any:
    """Ask the running service when ``rowback run`` holds the store; None when none does."""
    from rowback.client import ServiceGone, post
    from rowback.service import read_info

    info = read_info(store_path(store))
    if info is None:
        return None
    body = {
        "sql": statement,
        "target": target,
        "lock_timeout": lock_timeout,
        "statement_timeout": statement_timeout,
        "max_rows": max_rows,
    }
    try:
        return post(info, "/api/v1/whatif", body)
    except ServiceGone:
        return None  # it stopped between the look and the ask


@app.command()
def reversions(
    target: Annotated[
        str | None,
        typer.Option(help="Resolve reversions a crash left started, from this database."),
    ] = None,
    store: StoreOpt = None,
    fmt: FmtOpt = Fmt.table,
) -> None:
    """Every recorded reversion, oldest first: who, why, what, how, and its outcome.

    A reversion whose process died mid-apply stays `started` until a revert or
    `reversions --target DSN` asks the target whether its transaction committed."""
    from rowback.views import reversions_result

    if target is not None and not _resolve_served(store, target):
        from rowback.revert import run as rr

        s = open_store(store_path(store))
        try:
            rr.resolve_started(s, target)
        finally:
            s.close()

    _query(store, fmt, "/api/v1/reversions", {}, reversions_result)


def _watch(
    s: Store, config: Path | None, replay: bool, learned: bool = False, hold_tail: bool = False
) -> Any:
    """Attach detection to ``s`` under the policy file (``config``, else ./rowback.toml
    when there is one, else the defaults); the policy. Without scikit-learn, ``learned``
    says so and the statistical detectors run alone."""
    from rowback.detect.watch import attach
    from rowback.policy import Policy, load_policy

    if config is None and Path("rowback.toml").is_file():
        config = Path("rowback.toml")
        typer.echo("rowback: policy from ./rowback.toml", err=True)
    policy = load_policy(config) if config is not None else Policy.default()
    try:
        attach(s, policy, replay, learned, hold_tail)
    except RowbackError as e:
        if not learned:
            raise
        typer.echo(f"rowback: {e}; running the statistical detectors only", err=True)
        attach(s, policy, replay, hold_tail=hold_tail)
    return policy


incidents_app = typer.Typer(
    help="Incidents detection opened: list, show, approve (revert) or dismiss them.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(incidents_app, name="incidents")


@incidents_app.callback()
def incidents(ctx: typer.Context, store: StoreOpt = None, fmt: FmtOpt = Fmt.table) -> None:
    """Every incident, oldest first: its kind, score (0-1), severity, status, time span,
    transactions, rows affected, the policy's action and a plain-language explanation."""
    if ctx.invoked_subcommand is not None:
        return
    from rowback.views import incidents_result

    _query(store, fmt, "/api/v1/incidents", {}, incidents_result)


@incidents_app.command("show")
def incidents_show(
    iid: Annotated[int, typer.Argument(metavar="ID", help="The incident's id.")],
    target: Annotated[
        str | None,
        typer.Option(help="DSN of the captured database: also count rows referencing it."),
    ] = None,
    store: StoreOpt = None,
    fmt: FmtOpt = Fmt.table,
) -> None:
    """One incident with its signals (what is normal, what was seen, example keys), what
    the policy decided, and its impact: rows, share of each table, numeric deltas, later
    transactions a revert would meet, and the spread if it continues."""
    import orjson

    from rowback.client import ServiceGone, get_json
    from rowback.service import read_info
    from rowback.views import incident_doc

    info = read_info(store_path(store))
    doc = None
    if info is not None:
        with contextlib.suppress(ServiceGone):
            doc = get_json(info, f"/api/v1/incidents/{iid}")
    if doc is None:
        with _reader(store) as s:
            doc = incident_doc(s, iid, target)
    if fmt != Fmt.table:
        sys.stdout.write(orjson.dumps(doc).decode() + "\n")
        return
    width = max(len(k) for k in doc)
    for k, v in doc.items():
        if k != "detail":
            typer.echo(f"{k:<{width}}  {v}")
    for sig in doc["detail"].get("signals", []):
        on = f"{sig['table']}.{','.join(sig['columns'])}" if sig["columns"] else sig["table"]
        line = f"signal    {sig['kind']} {sig['score']:.2f} on {on}: {sig['seen']}"
        typer.echo(line + (f" (normal: {sig['normal']})" if sig["normal"] else ""))
        if sig.get("examples"):
            typer.echo(f"          e.g. {sig['examples']}")
    if doc["detail"].get("decision"):
        typer.echo(f"policy    {doc['detail']['decision']}")
    for line in _impact_lines(doc["impact"]):
        typer.echo(f"impact    {line}")


def _impact_lines(im: dict[str, Any]) -> list[str]:
    out = []
    for t in im["tables"]:
        cols = ", ".join(f"{c} ({n})" for c, n in t["columns"].items())
        out.append(
            f"{t['table']}: {t['rows']:,} rows ({t['share']:.1%} of the table; "
            f"{t['inserted']} inserted, {t['updated']} updated, {t['deleted']} deleted)"
            + (f"; columns {cols}" if cols else "")
        )
    for col, n in im["numeric"].items():
        out.append(
            f"{col}: {n['cells']} cells, delta sum {n['delta_sum']:g} "
            f"[{n['delta_min']:g} .. {n['delta_max']:g}], "
            f"before {n['before'][0]:g}..{n['before'][1]:g}, "
            f"after {n['after'][0]:g}..{n['after'][1]:g}"
        )
    for r in im.get("referencing", []):
        out.append(f"{r['rows']:,} rows of {r['table']} reference the damaged {r['parent']} rows")
    for r in im.get("cascaded", []):
        out.append(f"ON DELETE CASCADE took {r['rows']:,} rows of {r['table']} with {r['parent']}")
    if im["later"]:
        clash = [x for x in im["later"] if x["conflicting_rows"]]
        txs = ", ".join(str(x["txid"]) for x in clash[:5])
        out.append(
            f"{len(im['later'])} later transaction(s) touched the same rows; "
            + (f"{len(clash)} wrote the same cells ({txs})" if clash else "none the same cells")
        )
    sp = im["spread"]
    if "rows_per_minute" in sp:
        line = f"spreading at {sp['rows_per_minute']:,} rows/min"
        if sp.get("minutes_to_whole_table") is not None:
            line += f", the whole table in {sp['minutes_to_whole_table']} min if it goes on"
        out.append(line)
    return out


@incidents_app.command("dismiss")
def incidents_dismiss(
    iid: Annotated[int, typer.Argument(metavar="ID", help="The incident's id.")],
    reason: Annotated[str, typer.Option(help="Why this is not damage, for the record.")],
    store: StoreOpt = None,
) -> None:
    """Close an incident as normal traffic: detection learns its pattern, so the same
    job or statement does not alert again."""
    from rowback import incidents as ops
    from rowback.client import ServiceGone, post
    from rowback.service import read_info

    info = read_info(store_path(store))
    if info is not None:
        try:
            post(info, f"/api/v1/incidents/{iid}/dismiss", {"reason": reason})
            typer.echo(f"rowback: incident {iid} dismissed", err=True)
            return
        except ServiceGone:
            pass
    s = open_store(store_path(store))
    try:
        _watch(s, None, replay=True)
        ops.dismiss(s, iid, reason)
    finally:
        s.close()
    typer.echo(f"rowback: incident {iid} dismissed", err=True)


@incidents_app.command("approve")
def incidents_approve(
    iid: Annotated[int, typer.Argument(metavar="ID", help="The incident's id.")],
    target: Annotated[
        str | None,
        typer.Option(help="DSN of the captured database [default: the service's source]."),
    ] = None,
    mode: Annotated[str, typer.Option(help="nocascade, cascade, nonconflict or force.")] = (
        "nocascade"
    ),
    store: StoreOpt = None,
) -> None:
    """Revert an incident's transactions (as `rowback revert --txid …` would, recorded
    as a reversion) and mark the incident reverted."""
    from rowback import incidents as ops
    from rowback.client import ServiceGone, post
    from rowback.revert.plan import Mode
    from rowback.service import read_info

    try:
        m = Mode(mode)
    except ValueError:
        raise BadParameter(
            "--mode", f"{mode!r} is not one of nocascade, cascade, nonconflict, force"
        ) from None
    info = read_info(store_path(store))
    if info is not None:
        try:
            body: dict[str, object] = {"mode": m.value, "target": target}
            doc = post(info, f"/api/v1/incidents/{iid}/approve", body)
            typer.echo(
                f"rowback: incident {iid} reverted by reversion {doc['reversion']} "
                f"({doc['rows']} rows)",
                err=True,
            )
            return
        except ServiceGone:
            pass
    if target is None:
        raise RowbackError("give --target DSN: no running service lends its source")
    s = open_store(store_path(store))
    try:
        _watch(s, None, replay=True)
        done = ops.approve(s, ops.find(s, iid), target, m)
    finally:
        s.close()
    typer.echo(
        f"rowback: incident {iid} reverted by reversion {done.outcome.id} "
        f"({done.outcome.applied.rows} rows)",
        err=True,
    )


@app.command()
def demo(
    keep: Annotated[
        Path | None, typer.Option(help="Keep the demo's store in this directory.")
    ] = None,
    seconds: Annotated[float, typer.Option(help="How long the workload runs.", min=2)] = 12.0,
) -> None:
    """Start a throwaway PostgreSQL, capture a small shop while it works, then time travel."""
    from rowback.demo import run_demo

    run_demo(keep=keep, seconds=seconds)


class EvalSet(StrEnum):
    rowback = "rowback"
    baseline = "baseline"
    hst = "hst"
    all = "all"


@app.command("eval")
def eval_(
    days: Annotated[int, typer.Option(help="Simulated days.", min=1)] = 7,
    seed: Annotated[int, typer.Option(help="Scenario seed.")] = 0,
    rate: Annotated[float, typer.Option(help="Transactions an hour at peak.", min=1)] = 60.0,
    fmt: Annotated[
        Fmt, typer.Option("--format", "-f", help="table or csv per detector set, or json lines.")
    ] = Fmt.table,
    detectors: Annotated[
        EvalSet, typer.Option(help="rowback, baseline (same-hour count), hst or all.")
    ] = EvalSet.all,
    review: Annotated[
        bool, typer.Option(help="Dismiss the warm-up's false alarms, as a person setting up would.")
    ] = False,
) -> None:
    """Replay a simulated shop with injected bad writes; precision, recall and latency."""
    from rowback.detect import evaluate as ev
    from rowback.detect.scenario import generate

    names = [detectors.value]
    if detectors == EvalSet.all:
        names = []
        for name in ev.SETS:
            why = ev.available(name)
            if why is None:
                names.append(name)
            else:
                typer.echo(f"rowback: skipping {name}: {why}", err=True)
    reports = ev.compare(generate(days, seed, rate), names, review=review)
    for r in reports:
        if fmt == Fmt.json:
            typer.echo(r.to_json())
            continue
        typer.echo(f"{r.name}: {r.incidents} incidents in {r.seconds} s")
        write_rows(sys.stdout, fmt.value, ev.COLUMNS, r.rows())
        typer.echo(
            f"false alarms: {r.false_alarms} ({r.false_alarms_per_week:g} a week, "
            f"{r.false_alarms_per_day:g} a day, after the warm-up)"
        )
        for pattern, n in list(r.false_alarm_patterns.items())[:3]:
            typer.echo(f"  {n} x {pattern}")
        typer.echo("")


def main() -> None:
    """Entry point: one-line errors, no tracebacks, exit codes scripts can use."""
    try:
        app()  # standalone: usage errors print click's message and exit 2
    except RowbackError as e:
        typer.echo(f"rowback: error: {e}", err=True)
        sys.exit(EXIT_ERROR)
    except Exception as e:  # noqa: BLE001 - last resort: keep it to one line
        import os

        if os.environ.get("ROWBACK_DEBUG"):
            raise
        typer.echo(f"rowback: internal error: {type(e).__name__}: {e}", err=True)
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":  # pragma: no cover
    main()
