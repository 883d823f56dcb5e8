"""``stack_bidirectional_dynamic_rnn`` and ``stack_bidirectional_rnn`` (``tf.contrib.rnn``):
layers of bidirectional RNNs, each reading the previous layer's concatenated fw/bw outputs.

Transcribed from TF r1.15 ``tensorflow/contrib/rnn/python/ops/rnn.py``: layer k runs under the
variable scope ``stack_bidirectional_rnn/cell_<k>`` (so its TF variables are named
``stack_bidirectional_rnn/cell_<k>/bidirectional_rnn/fw/<cell scope>/...``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from rnnflow import _nest
from rnnflow.cells.base import State
from rnnflow.recurrence.bidirectional import run_bidirectional
from rnnflow.recurrence.dynamic_rnn import Impl
from rnnflow.recurrence.static_rnn import stack_steps


def _check_layers(
    owner: str, cells_fw: Any, cells_bw: Any, initial_states_fw: Any, initial_states_bw: Any
) -> int:
    for arg, cells in (("cells_fw", cells_fw), ("cells_bw", cells_bw)):
        if not isinstance(cells, (list, tuple)) or not cells:
            raise ValueError(
                f"{owner}: {arg} must be a non-empty list of RNNCells (one per layer), "
                f"got {cells!r}"
            )
    for arg, cells in (("cells_fw", cells_fw), ("cells_bw", cells_bw)):
        for k, cell in enumerate(cells):
            size = getattr(cell, "output_size", None)
            if _nest.is_sequence(size):  # each layer's outputs are concatenated, as in TF
                raise ValueError(
                    f"{owner}: {arg}[{k}] must have a single output (an int output_size: the "
                    f"layers' outputs are concatenated), got {_nest.describe(size)}"
                )
    if len(cells_fw) != len(cells_bw):
        raise ValueError(
            f"{owner}: cells_fw and cells_bw must have the same depth, got {len(cells_fw)} "
            f"and {len(cells_bw)}"
        )
    for arg, states in (
        ("initial_states_fw", initial_states_fw),
        ("initial_states_bw", initial_states_bw),
    ):
        if states is not None and (
            not isinstance(states, (list, tuple)) or len(states) != len(cells_fw)
        ):
            got = len(states) if isinstance(states, (list, tuple)) else type(states).__name__
            raise ValueError(
                f"{owner}: {arg} must be None or a list of {len(cells_fw)} states (one per "
                f"layer), got {got}"
            )
    return len(cells_fw)


def _stack(
    owner: str,
    cells_fw: Any,
    cells_bw: Any,
    x: Tensor,
    *,
    initial_states_fw: Any,
    initial_states_bw: Any,
    dtype: Any,
    sequence_length: Any,
    parallel_iterations: Any,
    time_major: bool,
    swap_memory: Any,
    scope: Any,
    impl: Any,
) -> tuple[Tensor, tuple[State, ...], tuple[State, ...]]:
    layers = _check_layers(owner, cells_fw, cells_bw, initial_states_fw, initial_states_bw)
    states_fw, states_bw = [], []
    prev = x
    for k in range(layers):
        (out_fw, out_bw), (state_fw, state_bw) = run_bidirectional(
            f"{owner} (layer {k})",
            cells_fw[k],
            cells_bw[k],
            prev,
            sequence_length=sequence_length,
            initial_state_fw=initial_states_fw[k] if initial_states_fw else None,
            initial_state_bw=initial_states_bw[k] if initial_states_bw else None,
            dtype=dtype,
            parallel_iterations=parallel_iterations,
            swap_memory=swap_memory,
            time_major=time_major,
            scope=scope,
            impl=impl,
        )
        prev = torch.cat([out_fw, out_bw], dim=2)  # [B, T, H_fw + H_bw] (or time-major)
        states_fw.append(state_fw)
        states_bw.append(state_bw)
    return prev, tuple(states_fw), tuple(states_bw)


def stack_bidirectional_dynamic_rnn(
    cells_fw: Sequence[Any],
    cells_bw: Sequence[Any],
    inputs: Tensor,
    initial_states_fw: Sequence[State] | None = None,
    initial_states_bw: Sequence[State] | None = None,
    dtype: torch.dtype | None = None,
    sequence_length: Tensor | None = None,
    parallel_iterations: int | None = None,
    time_major: bool = False,
    scope: str | None = None,
    swap_memory: bool = False,
    *,
    impl: Impl = "auto",
) -> tuple[Tensor, tuple[State, ...], tuple[State, ...]]:
    """Stacked ``bidirectional_dynamic_rnn``, as ``tf.contrib.rnn.stack_bidirectional_dynamic_rnn``.

        x_0 = inputs
        (fw_k, bw_k), (s_fw_k, s_bw_k) = bidirectional_dynamic_rnn(cells_fw[k], cells_bw[k], x_k)
        x_{k+1} = concat([fw_k, bw_k], -1)

    Unlike a ``MultiRNNCell`` inside ``bidirectional_dynamic_rnn``, each layer's backward cell
    sees the previous layer's forward outputs (and the other way round).

    Args:
        cells_fw, cells_bw: equal-length non-empty lists of cells, one per layer.
        inputs: [B, T, D] (or [T, B, D] with ``time_major``).
        initial_states_fw, initial_states_bw: None or a list with one state per layer.
        Others as :func:`~rnnflow.bidirectional_dynamic_rnn` (``scope`` has no effect).

    Returns:
        ``(outputs, states_fw, states_bw)``: outputs [B, T, H_fw + H_bw] of the last layer (or
        time-major); the final states as tuples with one entry per layer.

    Raises:
        ValueError: empty or unequal cell lists, a cell with nested outputs (TF's concat of the
            layers' outputs needs one tensor), initial-state lists of the wrong length, and
            every error of ``bidirectional_dynamic_rnn`` (the message names the layer).
    """
    return _stack(
        "stack_bidirectional_dynamic_rnn",
        cells_fw,
        cells_bw,
        inputs,
        initial_states_fw=initial_states_fw,
        initial_states_bw=initial_states_bw,
        dtype=dtype,
        sequence_length=sequence_length,
        parallel_iterations=parallel_iterations,
        time_major=time_major,
        swap_memory=swap_memory,
        scope=scope,
        impl=impl,
    )


def stack_bidirectional_rnn(
    cells_fw: Sequence[Any],
    cells_bw: Sequence[Any],
    inputs: Sequence[Tensor],
    initial_states_fw: Sequence[State] | None = None,
    initial_states_bw: Sequence[State] | None = None,
    dtype: torch.dtype | None = None,
    sequence_length: Tensor | None = None,
    scope: str | None = None,
    *,
    impl: Impl = "auto",
) -> tuple[list[Tensor], tuple[State, ...], tuple[State, ...]]:
    """Stacked ``static_bidirectional_rnn``, as ``tf.contrib.rnn.stack_bidirectional_rnn``:
    :func:`stack_bidirectional_dynamic_rnn` on a list of T inputs [B, D].

    Returns:
        ``(outputs, states_fw, states_bw)``: a list of T outputs [B, H_fw + H_bw] of the last
        layer, and one final state per layer and direction.
    """
    owner = "stack_bidirectional_rnn"
    x = stack_steps(owner, inputs)  # [T, B, D]
    outputs, states_fw, states_bw = _stack(
        owner,
        cells_fw,
        cells_bw,
        x,
        initial_states_fw=initial_states_fw,
        initial_states_bw=initial_states_bw,
        dtype=dtype,
        sequence_length=sequence_length,
        parallel_iterations=None,
        time_major=True,
        swap_memory=False,
        scope=scope,
        impl=impl,
    )
    return list(outputs.unbind(0)), states_fw, states_bw
