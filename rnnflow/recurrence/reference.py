"""The plain per-step loop: slow, obviously correct, and the oracle for every faster path.

It also holds what every path shares: the dtype a run computes and returns in
(:func:`compute_dtype`) and the outputs of a run without steps (:func:`empty_outputs`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rnnflow import _nest
from rnnflow.recurrence._masking import copy_through, valid_mask


def compute_dtype(inputs: Tensor) -> torch.dtype:
    """The dtype a run computes, carries its state and returns its outputs in.

    Under ``torch.autocast`` (CPU or CUDA) with float32 inputs: the autocast dtype (bfloat16 or
    float16), on every path, as ``nn.LSTM`` and Keras's mixed-precision RNN layers return theirs.
    The reference loop casts the initial state (and each step's output and state, should a cell
    promote them back to float32 by mixing in a float32 tensor) to it; the fused path runs the
    whole recurrence in it. Otherwise the inputs' dtype.
    """
    device_type = inputs.device.type
    if (
        inputs.dtype == torch.float32
        and device_type in ("cpu", "cuda")
        and torch.is_autocast_enabled(device_type)
    ):
        return torch.get_autocast_dtype(device_type)
    return inputs.dtype


def empty_outputs(cell: Any, inputs: Tensor, dtype: torch.dtype) -> Any:
    """Zero outputs [T, B, size] for each leaf of ``cell.output_size``, for time-major
    ``inputs`` [T, B, D] with T = 0 or B = 0, differentiable (zero gradients) with respect to
    the inputs and the cell's parameters."""
    steps, batch = inputs.shape[0], inputs.shape[1]
    sizes = cell.output_size
    shapes = [(steps, batch, size) for size in _nest.flatten(sizes)]
    params = cell.parameters() if isinstance(cell, torch.nn.Module) else ()
    sources = [t for t in (inputs, *params) if t.requires_grad]
    zeros = zeros_from(shapes, dtype, inputs.device, sources)
    return _nest.pack_sequence_as(sizes, zeros)


def zeros_from(
    shapes: list[tuple[int, ...]], dtype: torch.dtype, device: torch.device, sources: list[Tensor]
) -> list[Tensor]:
    """Zero tensors of ``shapes`` that count as functions of ``sources`` with zero gradients
    (when grad mode is on): a run over no steps or no rows still connects its outputs to the
    inputs and parameters, so ``outputs.sum().backward()`` works and every gradient exists and
    is zero, as in TensorFlow. Plain ops (no autograd Function), so torch.func transforms go
    through them too."""
    zeros = [torch.zeros(shape, dtype=dtype, device=device) for shape in shapes]
    if torch.is_grad_enabled() and sources:
        # exactly 0 (a sum over no elements, whatever the values: inf and NaN too), depending
        # on every source with a zero gradient
        link = sum(s.reshape(-1)[:0].sum().to(device) for s in sources)
        zeros = [z + link for z in zeros]  # a 0-d link keeps each z's dtype (autocast's too)
    return zeros


def _step_leaves(owner: str, what: str, value: Any, sizes: Any, batch: int, t: int) -> list[Tensor]:
    """The leaves of the cell's ``what`` (output or new state) at step ``t``, which must nest
    like ``sizes`` with a [batch, size] tensor at each leaf: refused here, not deep inside
    ``torch.stack`` or ``torch.where``."""
    leaves = _nest.flatten(value)
    flat_sizes = _nest.flatten(sizes)
    if (
        len(leaves) == len(flat_sizes)
        and _nest.same_structure(value, sizes)
        and all(
            isinstance(leaf, Tensor) and leaf.shape == (batch, size)
            for leaf, size in zip(leaves, flat_sizes)
        )
    ):
        return leaves
    name = "output_size" if what == "output" else "state_size"
    expected = _nest.describe(sizes, leaf=lambda size: f"Tensor({batch}, {size})")
    raise ValueError(
        f"{owner}: the cell's {what} at step {t} must match its {name} {expected}, "
        f"got {_nest.describe(value)}"
    )


def _in_dtype(
    owner: str, what: str, leaves: list[Tensor], dtype: torch.dtype, cast: bool, t: int
) -> list[Tensor]:
    """``leaves`` in the run's ``dtype``: cast under autocast, else refused if they differ."""
    if all(leaf.dtype == dtype for leaf in leaves):
        return leaves
    if cast:
        return [leaf.to(dtype) for leaf in leaves]
    got = sorted({str(leaf.dtype) for leaf in leaves})
    raise TypeError(
        f"{owner}: the cell's {what} at step {t} must have the inputs' dtype {dtype}, "
        f"got {', '.join(got)}"
    )


def reference_dynamic_rnn(
    cell: Any,
    inputs: Tensor,
    lengths: Tensor | None,
    initial_state: Any,
    *,
    owner: str = "dynamic_rnn",
) -> tuple[Any, Any]:
    """Run ``cell`` over time-major ``inputs`` [T, B, D] one step at a time.

    Where ``lengths`` is given, steps at or past a row's length output zeros and leave its state
    as it was (TF1's ``_rnn_step`` select), so the final state is the one after its last valid
    step. Outputs and state may be nested (tuples, namedtuples, lists, dicts: ``tf.nest``'s
    structures); each step's output must match ``cell.output_size`` and its new state
    ``cell.state_size`` (``ValueError`` naming the step otherwise), in the run's dtype
    (:func:`compute_dtype`; ``TypeError`` otherwise). Returns the outputs, each leaf
    [T, B, size] (zero-step runs: zeros, differentiable), and the final state.
    """
    max_time, batch = inputs.shape[0], inputs.shape[1]
    dtype = compute_dtype(inputs)
    cast = dtype != inputs.dtype  # autocast: the recurrence runs in the autocast dtype
    state = initial_state
    if cast:
        state = _nest.map_structure(lambda s: s.to(dtype), initial_state)
    if max_time == 0:
        return empty_outputs(cell, inputs, dtype), state
    done = ~valid_mask(lengths, max_time) if lengths is not None else None  # [T, B]
    output_size, state_size = cell.output_size, cell.state_size
    steps = []  # each step's flattened output leaves
    template = None
    for t in range(max_time):
        result = cell(inputs[t], state)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise TypeError(
                f"{owner}: the cell must return (output, new_state), got "
                f"{_nest.describe(result)} at step {t}"
            )
        output, new_state = result
        leaves = _step_leaves(owner, "output", output, output_size, batch, t)
        new_leaves = _step_leaves(owner, "new state", new_state, state_size, batch, t)
        leaves = _in_dtype(owner, "output", leaves, dtype, cast, t)
        checked = _in_dtype(owner, "new state", new_leaves, dtype, cast, t)
        if done is not None:  # past a row's length: zero output, state carried through
            # (copy_through moves the mask to each tensor's device: a DeviceWrapper's answers)
            leaves = copy_through(done[t], [torch.zeros_like(leaf) for leaf in leaves], leaves)
            checked = copy_through(done[t], _nest.flatten(state), checked)
        if checked is not new_leaves:
            new_state = _nest.pack_sequence_as(new_state, checked)
        template = output if template is None else template
        steps.append(leaves)
        state = new_state
    stacked = [torch.stack(per_leaf) for per_leaf in zip(*steps)]  # each [T, B, size]
    return _nest.pack_sequence_as(template, stacked), state
