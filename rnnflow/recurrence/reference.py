"""The plain per-step loop: slow, obviously correct, and the oracle for every faster path."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rnnflow.recurrence._masking import copy_through, valid_mask


def reference_dynamic_rnn(
    cell: Any, inputs: Tensor, lengths: Tensor | None, initial_state: Any
) -> tuple[Tensor, Any]:
    """Run ``cell`` over time-major ``inputs`` [T, B, D] one step at a time.

    Where ``lengths`` is given, steps at or past a row's length output zeros and leave its state
    as it was (TF1's ``_rnn_step`` select), so the final state is the one after its last valid step.
    Returns outputs [T, B, output_size] and the final state.
    """
    max_time, batch = inputs.shape[0], inputs.shape[1]
    state = initial_state
    if max_time == 0:
        empty = inputs.new_zeros(0, batch, cell.output_size)
        return empty, state
    done = ~valid_mask(lengths, max_time) if lengths is not None else None  # [T, B]
    outputs = []
    for t in range(max_time):
        output, new_state = cell(inputs[t], state)
        if done is not None:
            output = copy_through(done[t], torch.zeros_like(output), output)
            new_state = copy_through(done[t], state, new_state)
        outputs.append(output)
        state = new_state
    return torch.stack(outputs), state  # [T, B, O]
