"""Consecutive blocks decoded in columns, joined into one write.

A block that interleaves several tables gives each table only a share of its rows, and
every table written costs the store a fixed amount (a diff against the table's head, the
history and head statements). Joining the next blocks until each table has about a
block's worth of rows gives the store the same work per statement as a stream of one
table, at the same positions: ``join`` numbers every change by its place in the blocks
in order, as the line path would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from rowback.model import ChangeBatch


def join(blocks: Sequence[Sequence[ChangeBatch]]) -> list[ChangeBatch]:
    """One batch per table version (in the order they first appear) for ``blocks``, each
    a block's batches; ``rows`` place the changes among all the blocks' changes."""
    if len(blocks) == 1:
        return list(blocks[0])
    parts: dict[tuple[str, str, str], list[tuple[ChangeBatch, np.ndarray]]] = {}
    at = 0
    for batches in blocks:
        n = sum(len(b) for b in batches)
        for b in batches:
            rows = np.arange(n) if b.rows is None else b.rows.to_numpy(zero_copy_only=False)
            parts.setdefault(_name(b), []).append((b, rows.astype(np.uint64) + at))
        at += n
    if len(parts) == 1:  # one table: its changes are all of them, in order
        return [_concat([b for b, _ in next(iter(parts.values()))], None)]
    out = [
        _concat([b for b, _ in got], np.concatenate([r for _, r in got])) for got in parts.values()
    ]
    return sorted(out, key=lambda b: b.rows[0].as_py() if b.rows is not None else 0)


def joinable(blocks: Sequence[Sequence[ChangeBatch]], more: Sequence[ChangeBatch]) -> bool:
    """Whether ``more`` has no other version of a table than ``blocks`` have (one write
    diffs each table once, so it cannot hold two of its versions)."""
    seen = {_name(b): b.table for batches in blocks for b in batches}
    return all(seen.get(_name(b), b.table) is b.table for b in more)


def _name(b: ChangeBatch) -> tuple[str, str, str]:
    return (b.table.source, b.table.schema, b.table.name)


def _concat(batches: list[ChangeBatch], rows: np.ndarray | None) -> ChangeBatch:
    first = batches[0]
    if len(batches) == 1 and rows is None:
        return first
    width = len(first.after)

    def cat(arrays: list[pa.Array]) -> pa.Array:
        return pa.concat_arrays(arrays) if len(arrays) > 1 else arrays[0]

    before = has = None
    if any(b.before is not None for b in batches):
        before = tuple(
            cat(
                [
                    b.before[i] if b.before is not None else pa.nulls(len(b), pa.string())
                    for b in batches
                ]
            )
            for i in range(width)
        )
        has = cat(
            [
                b.has_before if b.has_before is not None else pa.repeat(False, len(b))
                for b in batches
            ]
        )
    return ChangeBatch(
        first.table,
        cat([b.op for b in batches]),
        cat([b.txid for b in batches]),
        cat([b.lsn for b in batches]),
        cat([b.seq for b in batches]),
        cat([b.commit_us for b in batches]),
        tuple(cat([b.after[i] for b in batches]) for i in range(width)),
        before,
        has,
        None if rows is None else pa.array(rows, pa.uint64()),
    )
