"""Rowback: a shadow of every row's history, to catch and undo bad writes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rowback")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
