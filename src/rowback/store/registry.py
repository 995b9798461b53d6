"""Which store backends exist; a new backend is one folder plus one line here."""

from __future__ import annotations

import os
from pathlib import Path

from rowback.errors import RowbackError
from rowback.store.base import Store

DEFAULT_PATH = "rowback-store"


def store_path(path: str | None) -> Path:
    """``--store`` if given, else ``ROWBACK_STORE``, else ``./rowback-store``."""
    return Path(path or os.environ.get("ROWBACK_STORE") or DEFAULT_PATH)


def open_store(path: str | Path, read_only: bool = False) -> Store:
    """Open the store at ``path``: a directory means the embedded DuckDB backend."""
    text = str(path)
    if text.startswith(("clickhouse://", "chdb://")):
        raise RowbackError(f"{text}: the ClickHouse backend is not built yet; use a directory")
    from rowback.store.duckdb import DuckDBStore

    return DuckDBStore(path, read_only=read_only)
