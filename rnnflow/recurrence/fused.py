"""Fused fast path for the built-in cells (not yet: every cell uses the reference loop)."""

from __future__ import annotations

from typing import Any

from torch import Tensor


def fusable(cell: Any, inputs: Tensor) -> tuple[bool, str]:
    """Whether ``fused_dynamic_rnn`` can run ``cell`` on ``inputs``, and if not, why."""
    return False, f"no fused kernel for {type(cell).__name__} yet"


def fused_dynamic_rnn(
    cell: Any, inputs: Tensor, lengths: Tensor | None, initial_state: Any
) -> tuple[Tensor, Any]:
    raise NotImplementedError("fused_dynamic_rnn: no fused kernel yet")
