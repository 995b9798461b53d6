"""Ingest newline-delimited Debezium events from a file (or stdin) into a store.

Changes are written in batches; each ``store.write`` also records how far the file was
read (path, byte offset, line number), the decoder's state and the lines that failed to
decode, in one transaction. Re-running on the same file resumes after the recorded
offset, so a crash at any moment loses nothing and duplicates nothing. Standard input
cannot be rewound, so it is always read from its start and never resumed.

A table whose key is unknown (``NoKey``) stops the run at its first event: what came
before it is written with the position just before that event, so a rerun with
``--key`` starts exactly there and nothing of the table is skipped or quarantined.
"""

from __future__ import annotations

import hashlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import pyarrow as pa

from rowback.errors import RowbackError
from rowback.model import Change, ChangeBatch, Quarantined, WriteStats
from rowback.sources.debezium import blocks as joined
from rowback.sources.debezium.columnar import BlockDecoder
from rowback.sources.debezium.decode import MAX_LINE, DecodeError, Decoder, NoKey, Oversized
from rowback.store.base import Store

BATCH = 20_000
BLOCK = 16 * 1024 * 1024  # bytes decoded at once in columns (8 MB: 10% slower, 30 MB less)
BULK_BLOCKS = 4  # blocks per bulk transaction: fewer, larger commits; more would hold more RAM
JOIN_BLOCKS = 2  # at most this many blocks in one write (of a block per table: 3 cost 50 MB)
LEARN_LINES = 50  # lines decoded one by one when the bulk decoder must learn a table
MAX_LESSONS = 16  # lessons in a row before a block is decoded line by line
MAX_SLOW_BLOCKS = 64  # after repeated declines, blocks decoded one line at a time
BATCH_BYTES = 64 * 1024 * 1024  # also commit after this much input, to bound memory
CHUNK = 1024 * 1024
KEEP = 4096  # bytes kept of a line that is over the size limit
HEAD = 4096  # bytes of a file's start whose hash tells a replaced file from the same one
MAX_ERRORS = 10
STDIN = "<stdin>"


@dataclass
class IngestReport:
    """What one ingest did."""

    events: int = 0
    """Changes written to the store."""
    bulk: int = 0
    """Of those, how many were decoded a block at a time, in columns."""
    quarantined: int = 0
    """Inputs that could not be decoded, kept in the store's quarantine."""
    skipped: int = 0
    """Tombstones, blank lines, and stream messages already in the store."""
    gaps: int = 0
    """Versions whose before image did not match the store's history."""
    errors: list[str] = field(default_factory=list)
    """The first few decode errors, as ``LOCATION:LINE: field: message``."""
    gap_examples: list[str] = field(default_factory=list)
    resumed_at: int = 0
    """Byte offset (files) the run started from; 0 for a fresh start."""
    incomplete_tail: bool = False
    """The file ended in a partial line that was left for the next run."""
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the user, e.g. ``ingested 1200 events, 2 quarantined, ... in 0.4 s``."""
        parts = [f"ingested {self.events} events", f"{self.quarantined} quarantined"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped (tombstones, blank, already stored)")
        if self.gaps:
            parts.append(f"{self.gaps} gaps (before images that differ from history)")
        if self.resumed_at:
            parts.append(f"resumed at byte {self.resumed_at}")
        if self.incomplete_tail:
            parts.append("the last line is incomplete and was left for the next run")
        return ", ".join(parts) + f" in {self.seconds:.1f} s"


class Unterminated(bytes):
    """The last bytes of a file that did not end with a newline (perhaps still being written)."""


class Batcher:
    """Decodes inputs into one pending batch and writes it, with the position, atomically.

    Every source (file, NATS, Redis) goes through this, so all share one position record
    per source name: ``{"files": …, "nats": …, "redis": …, "decoder": …}``.
    """

    def __init__(self, store: Store, source: str, decoder: Decoder, report: IngestReport) -> None:
        self.store = store
        self.source = source
        self.decoder = decoder
        self.report = report
        self.position: dict[str, Any] = store.position(source) or {}
        state = self.position.get("decoder")
        if isinstance(state, dict):
            decoder.restore(state)
        self.changes: list[Change] = []
        self.bad: list[Quarantined] = []
        self.inputs = 0
        self.bytes = 0
        self.open = False  # a bulk transaction is open in the store

    def add(
        self,
        raw: bytes,
        location: str,
        line: int | None,
        label: str | None = None,
        context: str = "",
    ) -> None:
        """Decode one input; keep its change, or quarantine it with the reason.

        ``label`` names the input in the report (default ``LOCATION:LINE``); ``context``
        prefixes the stored error (e.g. a Redis entry id, which is not a line number).
        """
        self.inputs += 1
        self.bytes += len(raw)
        try:
            change = self.decoder.decode(raw)
        except DecodeError as e:
            self._reject(raw, location, line, str(e), label, context)
        except NoKey:
            self.inputs -= 1  # not taken: the caller writes what came before, then stops
            self.bytes -= len(raw)
            raise
        except Exception as e:  # noqa: BLE001 - a decoder bug must cost one input, not the run
            error = f"line: cannot decode ({type(e).__name__}: {e})"
            self._reject(raw, location, line, error, label, context)
        else:
            if change is None:
                self.report.skipped += 1
            else:
                self.changes.append(change)

    def reject(
        self,
        raw: bytes,
        location: str,
        line: int | None,
        error: str,
        label: str | None = None,
        context: str = "",
    ) -> None:
        """Quarantine an input that never reached the decoder."""
        self.inputs += 1
        self._reject(raw, location, line, error, label, context)

    def _reject(
        self,
        raw: bytes,
        location: str,
        line: int | None,
        error: str,
        label: str | None,
        context: str,
    ) -> None:
        kept = bytes(raw) if len(raw) <= self.decoder.max_line else raw[:KEEP]
        self.bad.append(Quarantined(self.source, location, line, context + error, kept))
        self.report.quarantined += 1
        if len(self.report.errors) < MAX_ERRORS:
            where = label if label is not None else f"{location}:{line}"
            self.report.errors.append(f"{where}: {error}")

    def full(self, batch: int) -> bool:
        return self.inputs >= batch or self.bytes >= BATCH_BYTES

    def commit(self, state: dict[str, Any] | None = None) -> None:
        """Write the pending changes, quarantined inputs and the updated position, with
        the decoder's state (``state``: as it was then, if it has moved on since)."""
        self.position["decoder"] = state if state is not None else self.decoder.state()
        stats = self.store.write(self.changes, self.source, self.position, quarantine=self.bad)
        self.open = False
        self._count(stats)
        self.changes, self.bad, self.inputs, self.bytes = [], [], 0, 0

    def write_batch(
        self, batches: Sequence[ChangeBatch], state: dict[str, Any], commit: bool
    ) -> None:
        """Write a block decoded in columns (nothing may be pending; a batch per table)
        with the position and the decoder's ``state`` just after it; ``commit=False``
        leaves the store's transaction open for the next write."""
        assert not self.inputs
        self.position["decoder"] = state
        stats = self.store.write_batch(batches, self.source, self.position, commit=commit)
        self.open = not commit
        self.report.bulk += stats.written
        self._count(stats)

    def _count(self, stats: WriteStats) -> None:
        self.report.events += stats.written
        self.report.gaps += stats.gaps
        room = MAX_ERRORS - len(self.report.gap_examples)
        self.report.gap_examples.extend(stats.gap_examples[: max(room, 0)])


@contextmanager
def stop_on_sigint(stop: threading.Event) -> Iterator[threading.Event]:
    """Make Ctrl-C set ``stop`` (so the batch in hand is written and acknowledged) instead
    of raising; only possible in the main thread, elsewhere ``stop`` alone ends the run."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def read_lines(
    f: IO[bytes], offset: int = 0, max_line: int = MAX_LINE, chunk: int = CHUNK
) -> Iterator[tuple[int, bytes]]:
    """Lines of ``f`` (read from ``offset``) with the byte offset just after each.

    Reads bounded chunks: a line longer than ``max_line`` is not buffered; its first
    bytes come back as ``Oversized``. A last line without a newline comes back as
    ``Unterminated``.
    """
    tail = b""
    skipped = 0  # length so far of an oversized line being skipped
    head = Oversized()
    read = getattr(f, "read1", f.read)  # a pipe delivers what it has instead of waiting
    while data := read(chunk):
        if skipped:
            nl = data.find(b"\n")
            if nl < 0:
                skipped += len(data)
                continue
            offset += skipped + nl + 1
            head.size = skipped + nl
            yield offset, head
            skipped, data = 0, data[nl + 1 :]
        buf = tail + data if tail else data
        lines = buf.split(b"\n")
        tail = lines.pop()
        for ln in lines:
            offset += len(ln) + 1
            yield offset, ln
        if len(tail) > max_line:
            head, skipped, tail = Oversized(tail[:KEEP]), len(tail), b""
    if skipped:
        head.size = skipped
        yield offset + skipped, head
    elif tail:
        yield offset + len(tail), Unterminated(tail)


def ingest_lines(
    store: Store,
    lines: Iterable[tuple[int, bytes]],
    source: str,
    location: str,
    decoder: Decoder,
    start_line: int = 1,
    batch: int = BATCH,
    *,
    resumable: bool = True,
    file_id: Sequence[object] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Decode ``lines`` ((offset after the line, bytes), numbered from ``start_line``)
    and write them in batches, recording ``location``'s offset and line with each batch.

    ``resumable=False`` (stdin) records nothing about ``location``.
    """
    started = time.perf_counter()
    report = IngestReport()
    sink = Batcher(store, source, decoder, report)
    files: dict[str, Any] = sink.position.setdefault("files", {})
    number, consumed = start_line - 1, -1
    for end, raw in lines:
        if isinstance(raw, Unterminated) and resumable and not _complete(raw):
            report.incomplete_tail = True  # perhaps still being written: leave it for later
            break
        try:
            sink.add(raw, location, number + 1)
        except NoKey:
            if sink.inputs:  # what came before, with the position just before this line
                _mark(files, location, consumed, number, file_id, resumable)
                sink.commit()
            raise
        number, consumed = number + 1, end
        if sink.full(batch):
            _mark(files, location, consumed, number, file_id, resumable)
            sink.commit()
            if on_progress is not None:
                on_progress(consumed)
    if sink.inputs:
        _mark(files, location, consumed, number, file_id, resumable)
        sink.commit()
    report.seconds = time.perf_counter() - started
    return report


def _complete(raw: bytes) -> bool:
    """Whether a last line without a newline is whole JSON (else its writer is not done)."""
    try:
        orjson.loads(bytes(raw))
    except orjson.JSONDecodeError:
        return False
    return True


def _mark(
    files: dict[str, Any],
    location: str,
    end: int,
    number: int,
    file_id: Sequence[object] | None,
    resumable: bool,
) -> None:
    if resumable:
        files[location] = {"offset": end, "line": number, "head": list(file_id or ())}


def _file_id(f: IO[bytes], size: int) -> list[object]:
    """How many bytes of the file's start were hashed, and their hash."""
    f.seek(0)
    first = f.read(size)
    return [len(first), hashlib.sha256(first).hexdigest()]


def ingest_file(
    store: Store,
    path: str,
    source: str = "debezium",
    keys: Mapping[str, Sequence[str]] | None = None,
    progress: bool = False,
    *,
    batch: int = BATCH,
    max_line: int = MAX_LINE,
    bulk: bool = True,
    block: int = BLOCK,
    notify: Callable[[str], None] | None = None,
) -> IngestReport:
    """Ingest a file of Debezium events (``-`` for stdin), resuming where the last run on
    the same file stopped. ``bulk=False`` decodes every line on its own (stdin always); ``block`` is
    how many bytes the bulk path decodes at once; ``notify`` hears of keys inferred."""
    decoder = Decoder(source, keys, max_line=max_line, notify=notify)
    if path == "-":
        lines = read_lines(sys.stdin.buffer, 0, max_line)
        return ingest_lines(store, lines, source, STDIN, decoder, batch=batch, resumable=False)
    resolved = Path(path).resolve()
    try:
        f = resolved.open("rb")
    except OSError as e:
        raise RowbackError(f"cannot read {path}: {e.strerror}") from None
    with f, _progress(progress, resolved.stat().st_size) as update:
        saved = ((store.position(source) or {}).get("files") or {}).get(str(resolved))
        offset, line = 0, 0
        file_id = _file_id(f, HEAD)
        if saved:
            offset, line = int(saved["offset"]), int(saved["line"])
            n, digest = (saved.get("head") or [0, ""])[:2]
            if resolved.stat().st_size < offset or _file_id(f, int(n))[1] != digest:
                raise RowbackError(
                    f"{path} is not the file ingested before under source {source!r} (it was "
                    f"read up to byte {offset} and has changed since); use another --source"
                )
        f.seek(offset)
        if bulk:
            report = _ingest_blocks(
                store,
                f,
                offset,
                line,
                source,
                str(resolved),
                decoder,
                batch,
                file_id,
                update,
                block,
            )
        else:
            lines = read_lines(f, offset, max_line)
            report = ingest_lines(
                store,
                lines,
                source,
                str(resolved),
                decoder,
                line + 1,
                batch,
                file_id=file_id,
                on_progress=update,
            )
        report.resumed_at = offset
        return report


def _ingest_blocks(
    store: Store,
    f: IO[bytes],
    offset: int,
    line: int,
    source: str,
    location: str,
    decoder: Decoder,
    batch: int,
    file_id: Sequence[object],
    on_progress: Callable[[int], None] | None,
    block: int = BLOCK,
) -> IngestReport:
    """``ingest_lines`` for a seekable file: each ``block`` bytes are decoded in columns
    when ``BlockDecoder`` accepts them, else a run of lines one by one (the first block,
    which teaches the decoder the table; blocks with bad lines, other tables,
    placeholders), after which the next block is tried in columns again. The next block
    is decoded in a second thread while the store writes this one (Arrow and DuckDB both
    release the GIL)."""
    started = time.perf_counter()
    # malloc hands freed blocks back; mimalloc (Arrow's default pool) kept ~90 MB more
    # resident over a 1M-event file, for no speed we could measure
    pa.set_memory_pool(pa.system_memory_pool())
    report = IngestReport()
    sink = Batcher(store, source, decoder, report)
    files: dict[str, Any] = sink.position.setdefault("files", {})
    bulk = BlockDecoder(decoder)
    declined = 0  # blocks declined in a row, not counting lessons
    learnt = 0  # lessons in a row (blocks declined to learn a table or a type)

    def decode_at(
        at: int,
    ) -> tuple[int, list[ChangeBatch] | None, dict[str, Any], dict[str, Any]]:
        """The block at ``at``, decoded, with the decoder's state before and after it."""
        f.seek(at)
        data = f.read(block)
        cut = data.rfind(b"\n") + 1
        before = decoder.state()
        got = bulk.decode(data[:cut] if cut < len(data) else data) if cut else None
        return cut, got, before, decoder.state()

    def commit(state: dict[str, Any] | None = None) -> None:
        _mark(files, location, offset, line, file_id, True)
        sink.commit(state)
        if on_progress is not None:
            on_progress(offset)

    pending = 0  # input bytes written in the open bulk transaction
    held: list[list[ChangeBatch]] = []  # blocks decoded, to be written as one
    held_state: dict[str, Any] = {}  # the decoder's state after them
    held_bytes = 0

    def write_held() -> None:
        """Write the blocks held, committing when the open transaction has enough."""
        nonlocal pending, held_bytes
        if not held:
            return
        pending += held_bytes
        sink.write_batch(joined.join(held), held_state, commit=pending >= BULK_BLOCKS * block)
        held.clear()
        held_bytes = 0
        if not sink.open:
            pending = 0
            if on_progress is not None:
                on_progress(offset)

    with store.bulk_load(), ThreadPoolExecutor(1, thread_name_prefix="rowback-decode") as ahead:
        job = ahead.submit(decode_at, offset)
        while True:
            cut, got, before, state = job.result()
            if got is not None:
                if sink.inputs:
                    # what was decoded line by line goes first, with the decoder's state
                    # from before this block (it has decoded the block since)
                    commit(before)
                if not joined.joinable(held, got):
                    write_held()
                offset, line = offset + cut, line + sum(len(b) for b in got)
                job = ahead.submit(decode_at, offset)
                held.append(got)
                held_state, held_bytes = state, held_bytes + cut
                _mark(files, location, offset, line, file_id, True)
                # about a block's worth of rows per table and write (see ``blocks``)
                tables = len({b.table.name for batches in held for b in batches})
                if held_bytes >= block * min(tables, JOIN_BLOCKS):
                    write_held()
                declined = learnt = 0
                continue
            write_held()  # before anything decoded line by line
            # One by one: a few lines when the bulk decoder only has to learn a table or
            # a column's type (those it names, and a few more), else the declined block,
            # and twice as far each time it declines again.
            # (Each lesson decodes the line it names, so it makes progress; a stream that
            # keeps asking for them, e.g. a table whose lines are all bad, is declined.)
            if bulk.learn and not declined and learnt < MAX_LESSONS:
                lines, learnt = bulk.learn_lines + LEARN_LINES, learnt + 1
                until = offset + block
            else:
                lines = 2**63
                until = offset + block * min(2**declined, MAX_SLOW_BLOCKS)
                declined += 1
            f.seek(offset)
            taken, done = 0, True
            for end, raw in read_lines(f, offset, decoder.max_line):
                if isinstance(raw, Unterminated) and not _complete(raw):
                    report.incomplete_tail = True
                    break
                try:
                    sink.add(raw, location, line + 1)
                except NoKey:
                    if sink.inputs or sink.open:
                        commit()  # what came before, with the position just before this line
                    raise
                line, offset, taken = line + 1, end, taken + 1
                if sink.full(batch):
                    commit()
                    pending = 0
                if taken >= lines or offset >= until:
                    done = False
                    break
            if done:
                break  # the end of the file
            job = ahead.submit(decode_at, offset)
    write_held()
    if sink.inputs or sink.open:
        commit()
    report.seconds = time.perf_counter() - started
    return report


@contextmanager
def _progress(show: bool, size: int) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar over the file's bytes on stderr, or nothing."""
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    columns = (BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("ingest", total=size)
        yield lambda offset: bar.update(task, completed=offset)
