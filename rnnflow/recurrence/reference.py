"""The plain per-step loop: slow, obviously correct, and the oracle for every faster path."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rnnflow import _nest
from rnnflow.recurrence._masking import valid_mask


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
    valid = (
        valid_mask(lengths, max_time).unsqueeze(-1) if lengths is not None else None
    )  # [T, B, 1]
    outputs = []
    for t in range(max_time):
        output, new_state = cell(inputs[t], state)
        if valid is not None:
            keep = valid[t]  # [B, 1]
            # A cell may answer on another device (DeviceWrapper): the masks follow its tensors.
            output = output.masked_fill(~keep.to(output.device), 0.0)
            new_state = _nest.map_structure(
                lambda new, old, keep=keep: torch.where(
                    keep.to(new.device), new, old.to(new.device)
                ),
                new_state,
                state,
            )
        outputs.append(output)
        state = new_state
    return torch.stack(outputs), state  # [T, B, O]
