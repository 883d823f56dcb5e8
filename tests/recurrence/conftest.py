"""Fixtures of the recurrence tests."""

from __future__ import annotations

import pytest

from rnnflow.recurrence import fused


@pytest.fixture
def calls(monkeypatch):
    """Counts the runs that reach the fused path (the cell type of each)."""
    seen = []
    real = fused.fused_dynamic_rnn

    def spy(*args):
        seen.append(type(args[0]).__name__)
        return real(*args)

    monkeypatch.setattr(fused, "fused_dynamic_rnn", spy)
    return seen
