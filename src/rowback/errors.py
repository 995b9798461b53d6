"""Errors Rowback expects and reports to the user as one line, without a traceback."""

from __future__ import annotations


class RowbackError(Exception):
    """An expected failure with a one-line message for the user."""


class BadParameter(RowbackError):
    """A value the caller gave is wrong; ``param`` names it (``--where``, ``at``, ``key``),
    so the CLI and the API can both say which one."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class NotFound(RowbackError):
    """What was asked for is not in the store (a table, a transaction)."""


class ConfigError(RowbackError):
    """A file the user wrote is wrong: ``file:line: key: message``, so an editor can jump
    to it. ``line`` is best effort (None when unknown); ``key`` is the dotted TOML path."""

    def __init__(self, file: str, line: int | None, key: str, message: str) -> None:
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")
        self.file = file
        self.line = line
        self.key = key
