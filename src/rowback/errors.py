"""Errors Rowback expects and reports to the user as one line, without a traceback."""

from __future__ import annotations


class RowbackError(Exception):
    """An expected failure with a one-line message for the user."""
