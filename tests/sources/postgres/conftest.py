"""Fixtures for the PostgreSQL capture tests; shared helpers live in ``pgcap.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.register_assert_rewrite("pgcap")
sys.path.insert(0, str(Path(__file__).parent))  # so tests can `import pgcap` (importlib mode)
