"""Fill NATS JetStream streams and Redis streams for tests."""

from __future__ import annotations

import asyncio
import time

import nats
import redis


async def publish(url: str, stream: str, msgs: list[bytes]) -> None:
    """Core-NATS publishes into a JetStream stream (fast), then wait until all are stored."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[f"{stream}.>"])
    for m in msgs:
        await nc.publish(f"{stream}.public.orders", m)
    await nc.flush()
    deadline = time.monotonic() + 10
    while (await js.stream_info(stream)).state.messages < len(msgs):
        assert time.monotonic() < deadline, "JetStream did not store every message"
        await asyncio.sleep(0.02)
    await nc.close()


def xadd_all(url: str, key: str, msgs: list[bytes]) -> None:
    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    for m in msgs:
        pipe.xadd(key, {"value": m})
    pipe.execute()
    client.close()
