"""Fixtures for the incident tests: PostgreSQL's capture helpers (``pgcap``) are shared."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.register_assert_rewrite("pgcap")
sys.path.insert(0, str(Path(__file__).parents[1] / "sources" / "postgres"))
sys.path.insert(0, str(Path(__file__).parents[1] / "revert"))  # ``reverting``
