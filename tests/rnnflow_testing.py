"""Test helpers shared across the suite (importable because pytest's pythonpath has tests/)."""

from __future__ import annotations

from typing import Any

import torch

from rnnflow import _nest


def assert_close_tree(actual: Any, expected: Any, **tolerances: Any) -> None:
    """``torch.testing.assert_close`` leaf by leaf over equally nested structures."""
    assert _nest.same_structure(actual, expected), (
        f"structures differ: {_nest.describe(actual)} vs {_nest.describe(expected)}"
    )
    for k, (a, e) in enumerate(zip(_nest.flatten(actual), _nest.flatten(expected))):
        torch.testing.assert_close(a, e, msg=lambda m, k=k: f"leaf {k}: {m}", **tolerances)
