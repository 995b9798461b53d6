"""Embedded shadow store on DuckDB."""

from rowback.store.duckdb.store import DuckDBStore

__all__ = ["DuckDBStore"]
