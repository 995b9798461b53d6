"""Debezium source tests: make ``dbz_events`` importable (tests use importlib mode)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
