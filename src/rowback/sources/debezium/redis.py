"""Consume Debezium events from a Redis stream (a consumer group) into a store.

Each ``XREADGROUP`` batch becomes one ``store.write`` that also records the last entry
id; entries are acknowledged (``XACK``) only after that write committed. A crash between
the two leaves them pending: on restart this consumer's own pending entries are read
first, and those at or below the recorded id (already in the store) are acknowledged
without being written again.

The store, not the group, is the source of truth for how far the stream was read: at
start the group is moved (``XGROUP SETID``) to the recorded id, so every later entry,
pending or never delivered, comes again in stream order and nothing is skipped, even
when the store is behind the group. The group therefore belongs to this store.

An entry may carry the message key in a field next to the event (``key``, as Debezium
Server's Redis sink writes with ``message.format=extended``): the pair is decoded as the
Kafka record ``{"key": KEY, "value": EVENT}`` it came from, and quarantined as that, so a
replay sees the key too. A table whose key is unknown stops the run at its first entry,
after writing what came before; that entry and the rest are read again by the next run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from rowback.errors import RowbackError
from rowback.sources.debezium.decode import MAX_LINE, Decoder, NoKey
from rowback.sources.debezium.ingest import Batcher, IngestReport, stop_on_sigint
from rowback.store.base import Store

IDLE = 1.0
"""Seconds without an entry after which ``once`` returns (and the stop flag is checked)."""

Entry = tuple[bytes, dict[bytes, bytes] | None]


def entry_id(raw: bytes | str) -> tuple[int, int]:
    """``b"1700000000000-3"`` as ``(1700000000000, 3)``, which orders like Redis does.

    >>> entry_id(b"5-1") < entry_id(b"10-0")
    True
    """
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def ingest_redis(
    store: Store,
    url: str,
    stream_key: str,
    group: str = "rowback",
    consumer: str = "rowback-1",
    field: str = "value",
    source: str = "debezium",
    keys: Mapping[str, Sequence[str]] | None = None,
    once: bool = False,
    batch: int = 1000,
    *,
    idle: float = IDLE,
    stop: threading.Event | None = None,
    max_line: int = MAX_LINE,
    key_field: str = "key",
    notify: Callable[[str], None] | None = None,
) -> IngestReport:
    """Consume ``stream_key`` until drained (``once``), ``stop`` is set, or Ctrl-C; the
    event is the entry's ``field``, its message key (if any) the entry's ``key_field``;
    ``notify`` hears of keys inferred."""
    try:
        import redis
    except ImportError:
        raise RowbackError("Redis support needs an extra: pip install 'rowback[redis]'") from None
    started = time.perf_counter()
    report = IngestReport()
    decoder = Decoder(source, keys, max_line=max_line, notify=notify)
    sink = Batcher(store, source, decoder, report)
    ids: dict[str, Any] = sink.position.setdefault("redis", {})
    last = str(ids.get(stream_key, "0-0"))
    client: Any = redis.Redis.from_url(url, socket_connect_timeout=5)
    fields = (field.encode(), key_field.encode())
    run = _Run(client, sink, stream_key, group, consumer, fields, last, batch)
    try:
        try:
            client.xgroup_create(stream_key, group, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        client.xgroup_setid(stream_key, group, last)
        run.pending()
        with stop_on_sigint(stop or threading.Event()) as flag:
            while not flag.is_set():
                got = client.xreadgroup(
                    group, consumer, {stream_key: ">"}, count=batch, block=int(idle * 1000)
                )
                if not got:
                    if once:
                        break
                    continue
                run.handle(got[0][1])
    except redis.ConnectionError as e:
        raise RowbackError(f"cannot reach Redis at {url}: {e}") from None
    finally:
        client.close()
    report.seconds = time.perf_counter() - started
    return report


class _Run:
    """One consumer's pass over the stream: decode, write, then acknowledge."""

    def __init__(
        self,
        client: Any,
        sink: Batcher,
        key: str,
        group: str,
        consumer: str,
        fields: tuple[bytes, bytes],
        last: str,
        batch: int,
    ) -> None:
        self.client, self.sink, self.key = client, sink, key
        self.group, self.consumer = group, consumer
        self.field, self.key_field = fields  # the event's field, the message key's
        self.last, self.last_id, self.batch = last, entry_id(last), batch

    def pending(self) -> None:
        """Acknowledge this consumer's pending entries that the store already holds; the
        others come again, in order, from the group (moved back to the stored id)."""
        cursor = "0"
        while True:
            got = self.client.xreadgroup(
                self.group, self.consumer, {self.key: cursor}, count=self.batch
            )
            entries: list[Entry] = got[0][1] if got else []
            if not entries:
                return
            done = [eid for eid, _ in entries if entry_id(eid) <= self.last_id]
            if done:
                self.client.xack(self.key, self.group, *done)
                self.sink.report.skipped += len(done)
            cursor = entries[-1][0].decode()

    def handle(self, entries: list[Entry]) -> None:
        """Write new entries with the position, then acknowledge all of them."""
        sink = self.sink
        for eid, fields in entries:
            if entry_id(eid) <= self.last_id:
                sink.report.skipped += 1  # delivered again after a crash: already stored
                continue
            name = eid.decode()
            raw = fields.get(self.field) if fields else None
            if raw is None:
                kept, error = _missing_field(fields, self.field)
                sink.reject(kept, self.key, None, error, f"{self.key}:{name}", f"entry {name}: ")
            else:
                key = fields.get(self.key_field) if fields else None
                if key:
                    raw = b'{"key":' + key + b',"value":' + raw + b"}"
                try:
                    sink.add(raw, self.key, None, f"{self.key}:{name}", f"entry {name}: ")
                except NoKey:
                    self._stop_before()
                    raise
            self.last, self.last_id = name, entry_id(eid)
        if sink.inputs:
            sink.position["redis"][self.key] = self.last
            sink.commit()
        self.client.xack(self.key, self.group, *[eid for eid, _ in entries])

    def _stop_before(self) -> None:
        """Write the entries taken before the one that cannot be decoded without a key;
        it and the rest stay unacknowledged for the next run (which also acknowledges
        these, as pending entries the store holds)."""
        if self.sink.inputs:
            self.sink.position["redis"][self.key] = self.last
            self.sink.commit()


def _missing_field(fields: dict[bytes, bytes] | None, field: bytes) -> tuple[bytes, str]:
    """What to keep of an entry without the event field (its fields, as JSON), and why."""
    have = {
        k.decode(errors="replace"): v.decode(errors="replace") for k, v in (fields or {}).items()
    }
    listed = ", ".join(have) or "no fields"
    return orjson.dumps(have), f"{field.decode()}: missing (the entry has {listed})"
