"""Which store backends exist; a new backend is one folder plus one line here."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from rowback.errors import RowbackError
from rowback.store.base import Store

DEFAULT_PATH = "rowback-store"


def store_path(path: str | None) -> Path:
    """``--store`` if given, else ``ROWBACK_STORE``, else ``./rowback-store``."""
    return Path(path or os.environ.get("ROWBACK_STORE") or DEFAULT_PATH)


def _duckdb(path: str | Path, read_only: bool = False) -> Store:
    from rowback.store.duckdb import DuckDBStore

    return DuckDBStore(path, read_only=read_only)


BACKENDS: dict[str, Callable[..., Store]] = {"duckdb": _duckdb}
"""Every backend by name: ``open_store`` picks one by the path's form, and the contract
suite runs each of them."""


def open_store(path: str | Path, read_only: bool = False) -> Store:
    """Open the store at ``path``: a directory means the embedded DuckDB backend."""
    text = str(path)
    if text.startswith(("clickhouse://", "chdb://")):
        raise RowbackError(f"{text}: the ClickHouse backend is not built yet; use a directory")
    return BACKENDS["duckdb"](path, read_only=read_only)
