"""The static (list-of-steps) drivers: ``static_rnn``, ``static_bidirectional_rnn`` and
``static_state_saving_rnn``, as ``tf.nn``'s, run by the same loop as ``dynamic_rnn``.

TF1 unrolled these graphs step by step; with ``sequence_length`` each step is TF's ``_rnn_step``
select (zero output and the state copied through at or past a row's length), which is exactly
``dynamic_rnn``'s contract. So the list is stacked into a time-major tensor [T, B, D] and run
by ``dynamic_rnn``'s dispatcher (fused path or reference loop), and the outputs are unstacked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from rnnflow import _nest
from rnnflow.cells.base import State
from rnnflow.recurrence.bidirectional import run_bidirectional
from rnnflow.recurrence.dynamic_rnn import Impl, check_cell, run_rnn


def stack_steps(owner: str, inputs: Any) -> Tensor:
    """A non-empty list of [B, D] tensors (one per step) as one time-major tensor [T, B, D]."""
    if isinstance(inputs, Tensor) or not isinstance(inputs, (list, tuple)):
        raise TypeError(
            f"{owner}: inputs must be a list of [batch, depth] tensors (one per time step), "
            f"got {type(inputs).__name__}"
        )
    if not inputs:
        raise ValueError(f"{owner}: inputs must not be empty")
    first = inputs[0]
    for t, step in enumerate(inputs):
        if not isinstance(step, Tensor):
            raise TypeError(
                f"{owner}: inputs[{t}] must be a torch.Tensor [batch, depth] (nested inputs are "
                f"not supported), got {type(step).__name__}"
            )
        if step.dim() != 2:
            raise ValueError(
                f"{owner}: inputs[{t}] must have shape [batch, depth], got {list(step.shape)}"
            )
        if step.shape != first.shape:
            raise ValueError(
                f"{owner}: inputs[{t}] must have the shape of inputs[0] {list(first.shape)}, "
                f"got {list(step.shape)}"
            )
        if step.dtype != first.dtype or step.device != first.device:
            raise TypeError(
                f"{owner}: inputs[{t}] is {step.dtype} on {step.device}, inputs[0] is "
                f"{first.dtype} on {first.device}; all steps must match"
            )
    return torch.stack(list(inputs))  # [T, B, D]


def unstack_steps(outputs: Any) -> list[Any]:
    """Time-major outputs (each leaf [T, B, ...]) as a list of T per-step structures."""
    steps = _nest.flatten(outputs)[0].shape[0]
    return [_nest.map_structure(lambda o, t=t: o[t], outputs) for t in range(steps)]


def static_rnn(
    cell: Any,
    inputs: Sequence[Tensor],
    initial_state: State | None = None,
    dtype: torch.dtype | None = None,
    sequence_length: Tensor | None = None,
    scope: str | None = None,
    *,
    impl: Impl = "auto",
) -> tuple[list[Tensor], State]:
    """Run ``cell`` over a Python list of steps, as ``tf.nn.static_rnn``.

        outputs[t], state = cell(inputs[t], state)      for t in 0 .. T-1

    Args:
        cell: an ``RNNCell``.
        inputs: a non-empty list of T tensors [B, D] (same shape, dtype and device).
        initial_state: the cell's state structure with batch B; default ``cell.zero_state``.
        dtype: the zero state's dtype; defaults to the inputs' (TF1 required it without
            ``initial_state``) and must equal it when given.
        sequence_length: integer [B] in [0, T]: at steps ``t >= sequence_length[b]`` row b's
            output is zero and its state is copied through (TF's ``_rnn_step``), so the final
            state is the one after its last valid step.
        scope: accepted for TF1 compatibility (TF's default variable scope is ``rnn``).
        impl: as :func:`~rnnflow.dynamic_rnn` (``"auto"``, ``"fused"``, ``"reference"``).

    Returns:
        ``(outputs, state)``: a list of T outputs [B, output_size] (each nested as the cell's
        ``output_size`` where that is a structure) and the final state.

    Raises:
        TypeError/ValueError: ``inputs`` not a non-empty list of equal [B, D] tensors, and
            every error of :func:`~rnnflow.dynamic_rnn`.
    """
    owner = "static_rnn"
    check_cell(owner, "cell", cell)
    x = stack_steps(owner, inputs)  # [T, B, D]
    outputs, state = run_rnn(
        owner,
        cell,
        x,
        sequence_length=sequence_length,
        initial_state=initial_state,
        dtype=dtype,
        parallel_iterations=None,
        swap_memory=False,
        time_major=True,
        scope=scope,
        impl=impl,
    )
    return unstack_steps(outputs), state


def static_bidirectional_rnn(
    cell_fw: Any,
    cell_bw: Any,
    inputs: Sequence[Tensor],
    initial_state_fw: State | None = None,
    initial_state_bw: State | None = None,
    dtype: torch.dtype | None = None,
    sequence_length: Tensor | None = None,
    scope: str | None = None,
    *,
    impl: Impl = "auto",
) -> tuple[list[Tensor], State, State]:
    """Forward and backward ``static_rnn``, as ``tf.nn.static_bidirectional_rnn``.

    The backward cell reads each row reversed within its ``sequence_length`` (TF's
    ``_reverse_seq``) and its outputs are reversed back, so step t of both directions lines up
    with ``inputs[t]``. Arguments as :func:`static_rnn`, with one cell and initial state per
    direction (TF's variable scopes: ``bidirectional_rnn/fw`` and ``.../bw``).

    Returns:
        ``(outputs, state_fw, state_bw)``: outputs is a list of T tensors
        ``concat([out_fw[t], out_bw[t]], 1)`` [B, H_fw + H_bw]; for nested outputs (both cells'
        ``output_size`` of one structure) each leaf is concatenated so, as in TF.
    """
    owner = "static_bidirectional_rnn"
    check_cell(owner, "cell_fw", cell_fw)
    check_cell(owner, "cell_bw", cell_bw)
    if not _nest.same_structure(cell_fw.output_size, cell_bw.output_size):
        raise ValueError(
            f"{owner}: cell_fw and cell_bw must have outputs of the same structure (they are "
            f"concatenated leaf by leaf), got {_nest.describe(cell_fw.output_size)} and "
            f"{_nest.describe(cell_bw.output_size)}"
        )
    x = stack_steps(owner, inputs)  # [T, B, D]
    (out_fw, out_bw), (state_fw, state_bw) = run_bidirectional(
        owner,
        cell_fw,
        cell_bw,
        x,
        sequence_length=sequence_length,
        initial_state_fw=initial_state_fw,
        initial_state_bw=initial_state_bw,
        dtype=dtype,
        parallel_iterations=None,
        swap_memory=False,
        time_major=True,
        scope=scope,
        impl=impl,
    )
    # TF: each leaf of fw's and bw's outputs concatenated on the feature axis, fw's structure
    outputs = _nest.map_structure(
        lambda fw, bw: torch.cat([fw, bw], dim=2), out_fw, out_bw
    )  # each leaf [T, B, H_fw + H_bw]
    return unstack_steps(outputs), state_fw, state_bw


def static_state_saving_rnn(
    cell: Any,
    inputs: Sequence[Tensor],
    state_saver: Any,
    state_name: str | tuple[Any, ...],
    sequence_length: Tensor | None = None,
    scope: str | None = None,
    *,
    impl: Impl = "auto",
) -> tuple[list[Tensor], State]:
    """``static_rnn`` whose initial state comes from, and final state goes to, a state saver,
    as ``tf.nn.static_state_saving_rnn`` (truncated backpropagation over long sequences).

        initial = state_saver.state(name)            for each name in state_name
        outputs, state = static_rnn(cell, inputs, initial, sequence_length=sequence_length)
        state_saver.save_state(name, leaf)           for each name and leaf of state

    Args:
        state_saver: any object with ``state(name) -> Tensor [B, size]`` and
            ``save_state(name, value)`` (TF's ``SequenceQueueingStateSaver`` protocol; rnnflow
            ships no saver: in eager PyTorch a dict-backed object is enough). The saved values
            keep their autograd history; ``detach()`` them in the saver to truncate BPTT.
        state_name: a string when ``cell.state_size`` is an int; else a tuple of names nested
            like ``cell.state_size`` (one name per state tensor, in ``tf.nest`` order).
        Others as :func:`static_rnn`.

    Returns:
        ``(outputs, state)`` as :func:`static_rnn`.

    Raises:
        ValueError: ``state_name``'s structure does not match ``cell.state_size``.
        TypeError: ``state_saver`` lacks ``state``/``save_state``.
    """
    owner = "static_state_saving_rnn"
    check_cell(owner, "cell", cell)
    for method in ("state", "save_state"):
        if not callable(getattr(state_saver, method, None)):
            raise TypeError(
                f"{owner}: state_saver must have methods state(name) and save_state(name, "
                f"value), got {type(state_saver).__name__} without {method}()"
            )
    state_size = cell.state_size
    names = _nest.flatten(state_name)
    sizes = _nest.flatten(state_size)
    if (
        _nest.is_sequence(state_size) != _nest.is_sequence(state_name)
        or len(names) != len(sizes)
        or not all(isinstance(n, str) for n in names)
    ):
        raise ValueError(
            f"{owner}: state_name must be nested like cell.state_size "
            f"{_nest.describe(state_size)} with one str per state tensor, got {state_name!r}"
        )
    initial = _nest.pack_sequence_as(state_size, [state_saver.state(n) for n in names])
    outputs, state = static_rnn(
        cell,
        inputs,
        initial_state=initial,
        sequence_length=sequence_length,
        scope=scope,
        impl=impl,
    )
    for name, leaf in zip(names, _nest.flatten(state)):
        state_saver.save_state(name, leaf)
    return outputs, state
