"""Consume Debezium events from NATS JetStream (a durable pull consumer) into a store.

Each ``fetch(batch)`` becomes one ``store.write`` that also records the last stream
sequence; messages are acknowledged only after that write committed. A crash between the
two redelivers messages the store already holds: they are recognised by their stream
sequence (at or below the recorded one) and acknowledged without being written again.

The store, not the consumer, is the source of truth for how far the stream was read: at
start, a durable consumer that has delivered past the recorded sequence (a crash before
the write, or a store that is behind) is recreated to start right after it, so messages
come in stream order and nothing is skipped. The durable therefore belongs to this store.

The message body is the event alone: Debezium Server's NATS sinks send no key (their
headers are the record's headers), so keys come from ``--key`` or an ``id`` field. A
table whose key is unknown stops the run at its first message, after writing what came
before; that message and the rest are delivered again to the next run.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rowback.errors import RowbackError
from rowback.sources.debezium.decode import MAX_LINE, Decoder, NoKey
from rowback.sources.debezium.ingest import Batcher, IngestReport, stop_on_sigint
from rowback.store.base import Store

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

IDLE = 1.0
"""Seconds without a message after which ``once`` returns (and the stop flag is checked)."""


def ingest_nats(
    store: Store,
    url: str,
    stream: str,
    subject: str,
    durable: str = "rowback",
    source: str = "debezium",
    keys: Mapping[str, Sequence[str]] | None = None,
    once: bool = False,
    batch: int = 1000,
    *,
    idle: float = IDLE,
    ack_wait: float = 30.0,
    stop: threading.Event | None = None,
    max_line: int = MAX_LINE,
    notify: Callable[[str], None] | None = None,
) -> IngestReport:
    """Consume ``subject`` of JetStream ``stream`` until drained (``once``), ``stop`` is
    set, or Ctrl-C; the message body is one Debezium event; ``notify`` hears of keys
    inferred."""
    try:
        import nats  # noqa: F401 - only to fail early with the install hint
    except ImportError:
        raise RowbackError("NATS support needs an extra: pip install 'rowback[nats]'") from None
    flag = stop or threading.Event()
    decoder = Decoder(source, keys, max_line=max_line, notify=notify)
    run = _consume(store, decoder, url, stream, subject, durable, once, batch, idle, ack_wait, flag)
    with stop_on_sigint(flag):
        return asyncio.run(run)


async def _consume(
    store: Store,
    decoder: Decoder,
    url: str,
    stream: str,
    subject: str,
    durable: str,
    once: bool,
    batch: int,
    idle: float,
    ack_wait: float,
    stop: threading.Event,
) -> IngestReport:
    import nats
    import nats.errors
    import nats.js.errors

    loop = asyncio.get_running_loop()
    started = loop.time()
    report = IngestReport()
    sink = Batcher(store, decoder.source, decoder, report)
    seqs: dict[str, Any] = sink.position.setdefault("nats", {})
    last = int(seqs.get(stream, 0))

    async def quiet(_: Exception) -> None:  # reconnects are retried; failures surface below
        return None

    try:
        nc = await nats.connect(
            url,
            error_cb=quiet,
            connect_timeout=2,
            reconnect_time_wait=0.5,
            max_reconnect_attempts=4,
        )
    except Exception as e:  # noqa: BLE001 - nats-py raises many unrelated types here
        raise RowbackError(f"cannot connect to NATS at {url}: {e or type(e).__name__}") from None
    try:
        js = nc.jetstream()
        try:
            await _consumer_from(js, stream, subject, durable, last, ack_wait, batch)
            sub = await js.pull_subscribe_bind(durable=durable, stream=stream)
        except nats.js.errors.NotFoundError:
            raise RowbackError(f"no JetStream stream {stream!r} at {url}") from None
        while not stop.is_set():
            try:
                msgs = await sub.fetch(batch, timeout=idle)
            except TimeoutError:  # nats-py raises this and its own subclass
                if once:
                    break
                continue
            for m in msgs:
                seq = m.metadata.sequence.stream
                if seq <= last:
                    report.skipped += 1  # redelivered after a crash: already in the store
                    continue
                try:
                    sink.add(m.data, stream, seq, f"{stream}:{seq}")
                except NoKey:
                    if sink.inputs:  # what came before; this message and the rest come again
                        seqs[stream] = last
                        sink.commit()
                    raise
                last = seq
            if sink.inputs:
                seqs[stream] = last
                sink.commit()
            for m in msgs:
                await m.ack()
        await nc.flush()
    except nats.errors.Error as e:  # what was written is safe; a rerun continues from there
        raise RowbackError(f"NATS at {url}: {e or type(e).__name__}") from None
    finally:
        await nc.close()
    report.seconds = loop.time() - started
    return report


async def _consumer_from(
    js: JetStreamContext,
    stream: str,
    subject: str,
    durable: str,
    last: int,
    ack_wait: float,
    batch: int,
) -> None:
    """Make the durable consumer deliver ``subject`` from just after stream sequence
    ``last``: keep it if it has not delivered past that, else recreate it there."""
    import nats.js.errors
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    try:
        info = await js.consumer_info(stream, durable)
    except nats.js.errors.NotFoundError:
        info = None
    if info is not None:
        delivered = info.delivered.stream_seq if info.delivered else 0
        if delivered <= last and info.config.filter_subject == subject:
            return
        await js.delete_consumer(stream, durable)
    config = ConsumerConfig(
        durable_name=durable,
        name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        filter_subject=subject,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE if last else DeliverPolicy.ALL,
        opt_start_seq=last + 1 if last else None,
        max_ack_pending=max(batch * 2, 1000),
    )
    await js.add_consumer(stream, config=config)
