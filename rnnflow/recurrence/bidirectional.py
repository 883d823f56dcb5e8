"""``bidirectional_dynamic_rnn``: a forward and a backward pass, each row reversed in its length."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rnnflow import _nest
from rnnflow.cells.base import State
from rnnflow.recurrence._masking import reverse_sequence
from rnnflow.recurrence.dynamic_rnn import (
    Impl,
    check_cell,
    check_common_arguments,
    prepare_state,
    run_time_major,
)

_OWNER = "bidirectional_dynamic_rnn"


def bidirectional_dynamic_rnn(
    cell_fw: Any,
    cell_bw: Any,
    inputs: Tensor,
    sequence_length: Tensor | None = None,
    initial_state_fw: State | None = None,
    initial_state_bw: State | None = None,
    dtype: torch.dtype | None = None,
    parallel_iterations: int | None = None,
    swap_memory: bool = False,
    time_major: bool = False,
    scope: str | None = None,
    *,
    impl: Impl = "auto",
) -> tuple[tuple[Any, Any], tuple[State, State]]:
    """Forward and backward ``dynamic_rnn`` over ``inputs``, as ``tf.nn.bidirectional_dynamic_rnn``.

    The backward cell reads each row reversed within its own ``sequence_length``
    (``tf.reverse_sequence``), and its outputs are reversed back, so ``out_bw[b, t]`` lines up with
    ``inputs[b, t]``. Arguments are those of :func:`dynamic_rnn`, with one initial state per
    direction.

    Returns:
        ``((out_fw, out_bw), (state_fw, state_bw))``, each output [B, T, H] (or time-major;
        nested as the cell's ``output_size``, every leaf reversed back);
        concatenate the outputs on the last axis for the usual [B, T, H_fw + H_bw].

    Raises:
        As :func:`dynamic_rnn`, naming ``cell_fw``/``cell_bw`` and
        ``initial_state_fw``/``initial_state_bw``.
    """
    return run_bidirectional(
        _OWNER,
        cell_fw,
        cell_bw,
        inputs,
        sequence_length=sequence_length,
        initial_state_fw=initial_state_fw,
        initial_state_bw=initial_state_bw,
        dtype=dtype,
        parallel_iterations=parallel_iterations,
        swap_memory=swap_memory,
        time_major=time_major,
        scope=scope,
        impl=impl,
    )


def run_bidirectional(
    owner: str,
    cell_fw: Any,
    cell_bw: Any,
    inputs: Tensor,
    *,
    sequence_length: Any,
    initial_state_fw: Any,
    initial_state_bw: Any,
    dtype: Any,
    parallel_iterations: Any,
    swap_memory: Any,
    time_major: Any,
    scope: Any,
    impl: Any,
) -> tuple[tuple[Tensor, Tensor], tuple[State, State]]:
    """:func:`bidirectional_dynamic_rnn` with errors naming ``owner`` (the public driver)."""
    check_cell(owner, "cell_fw", cell_fw)
    check_cell(owner, "cell_bw", cell_bw)
    x, lengths = check_common_arguments(
        owner,
        inputs,
        sequence_length=sequence_length,
        dtype=dtype,
        parallel_iterations=parallel_iterations,
        swap_memory=swap_memory,
        time_major=time_major,
        scope=scope,
        impl=impl,
    )
    state_fw = prepare_state(owner, "cell_fw", "initial_state_fw", cell_fw, initial_state_fw, x)
    state_bw = prepare_state(owner, "cell_bw", "initial_state_bw", cell_bw, initial_state_bw, x)
    out_fw, state_fw = run_time_major(
        owner,
        cell_fw,
        x,
        lengths,
        state_fw,
        impl=impl,
        swap_memory=swap_memory,
        zero_state=initial_state_fw is None,
    )
    x_rev = reverse_sequence(x, lengths)  # [T, B, D], each row reversed in its length
    out_bw_rev, state_bw = run_time_major(
        owner,
        cell_bw,
        x_rev,
        lengths,
        state_bw,
        impl=impl,
        swap_memory=swap_memory,
        zero_state=initial_state_bw is None,
    )
    out_bw = _nest.map_structure(lambda out: reverse_sequence(out, lengths), out_bw_rev)
    if not time_major:  # [B, T, size]
        out_fw, out_bw = (
            _nest.map_structure(lambda o: o.transpose(0, 1), o) for o in (out_fw, out_bw)
        )
    return (out_fw, out_bw), (state_fw, state_bw)
