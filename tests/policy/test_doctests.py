"""The examples in the policy modules' docstrings hold (pytest collects only tests/)."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from rowback import alerts, policy, tomllines


@pytest.mark.parametrize("module", [policy, tomllines, alerts], ids=lambda m: m.__name__)
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
