"""``raw_rnn``: TF1's loop-function driver for hand-written decoders, in eager PyTorch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from rnnflow import _nest
from rnnflow.cells.base import State, check_optional_int, check_state
from rnnflow.recurrence._masking import copy_through
from rnnflow.recurrence.dynamic_rnn import _flag, check_cell
from rnnflow.recurrence.reference import zeros_from

_OWNER = "raw_rnn"

LoopFn = Callable[[int, Any, Any, Any], tuple[Tensor, Any, Any, Any, Any]]


def _check_finished(finished: Any, batch: int | None, time: int) -> Tensor:
    if not isinstance(finished, Tensor) or finished.dtype != torch.bool or finished.dim() != 1:
        got = (
            f"{finished.dtype} tensor of shape {list(finished.shape)}"
            if isinstance(finished, Tensor)
            else type(finished).__name__
        )
        raise TypeError(
            f"{_OWNER}: loop_fn(time={time}) must return finished as a bool tensor [batch], "
            f"got {got}"
        )
    if batch is not None and finished.shape[0] != batch:
        raise ValueError(
            f"{_OWNER}: loop_fn(time={time}) returned finished of shape {list(finished.shape)}, "
            f"expected [{batch}]"
        )
    return finished


def _check_batch(what: str, structure: Any, batch: int) -> None:
    """Every leaf of what ``loop_fn(time=0)`` returned is a tensor [batch, ...]."""
    for leaf in _nest.flatten(structure):
        if not isinstance(leaf, Tensor) or leaf.dim() < 1 or leaf.shape[0] != batch:
            shape = list(leaf.shape) if isinstance(leaf, Tensor) else type(leaf).__name__
            raise ValueError(
                f"{_OWNER}: loop_fn(time=0) must return {what} tensors [{batch}, ...] (the "
                f"batch of finished), got {shape}"
            )


def _same(time: int, what: str, expected: Any, got: Any) -> None:
    if not _nest.same_structure(expected, got) or not all(
        isinstance(leaf, Tensor) for leaf in _nest.flatten(got)
    ):
        raise ValueError(
            f"{_OWNER}: loop_fn(time={time}) returned {what} structured as "
            f"{_nest.describe(got)}, expected {_nest.describe(expected)}"
        )


def _no_steps(cell: Any, first_input: Any, flat_zero: list[Tensor]) -> list[Tensor]:
    """The emits [0, B, ...] of a run without steps; the floating ones connected to the first
    input and the cell's parameters with zero gradients (``dynamic_rnn``'s empty runs do the
    same), so ``emit.sum().backward()`` works and every gradient exists."""
    params = cell.parameters() if isinstance(cell, torch.nn.Module) else ()
    leaves = [t for t in _nest.flatten(first_input) if isinstance(t, Tensor)]
    sources = [t for t in (*leaves, *params) if t.requires_grad]
    out = []
    for z in flat_zero:
        if torch.is_grad_enabled() and sources and z.is_floating_point():
            out += zeros_from([(0, *z.shape)], z.dtype, z.device, sources)
        else:
            out.append(z.new_zeros(0, *z.shape))
    return out


def raw_rnn(
    cell: Any,
    loop_fn: LoopFn,
    parallel_iterations: int | None = None,
    swap_memory: bool = False,
    scope: str | None = None,
) -> tuple[Any, State, Any]:
    """Run ``cell`` under the control of ``loop_fn``, as ``tf.nn.raw_rnn``.

    ``loop_fn(time, cell_output, cell_state, loop_state)`` returns
    ``(finished, next_input, next_cell_state, emit_output, next_loop_state)``. It is first
    called as ``loop_fn(0, None, None, None)``: ``next_cell_state`` is then the initial state,
    and ``emit_output`` either None (emit ``cell.output_size``-shaped outputs) or a structure
    of tensors [B, ...] whose shapes and dtypes the emitted values take (its values are
    ignored). Then, while not every row is finished::

        output, cell_state = cell(next_input, state)
        finished_t, next_input, next_state, emit, loop_state = loop_fn(
            time + 1, output, cell_state, loop_state)
        state = where(finished, state, next_state)      # finished rows keep their state
        emit  = where(finished, zeros, emit)            # and emit zeros
        emits.append(emit); finished |= finished_t; time += 1

    ``time`` is a Python int (TF passes an int32 scalar tensor; index a [T, B, D] input with it).
    ``finished`` is a bool tensor [B]. ``loop_state`` may be any Python object (TF allowed
    tensors and TensorArrays); a ``next_loop_state`` of None keeps the previous one. As in TF
    the loop only ends when every row is finished: a ``loop_fn`` that never finishes loops
    forever. Each call is a new run, as in ``dynamic_rnn``: ``cell.begin_sequence()`` first
    (a ``DropoutWrapper(variational_recurrent=True)`` draws new masks).

    Args:
        cell: an ``RNNCell`` (built on its first call if lazy).
        loop_fn: the callable above.
        parallel_iterations, swap_memory, scope: accepted for TF1 compatibility; no effect.

    Returns:
        ``(emit, final_state, final_loop_state)``: ``emit`` is TF's ``emit_ta.stack()``, a
        tensor [T, B, ...] (or a structure of them, like the emit structure) with T the number
        of steps run (0 when every row is finished at time 0, or B = 0: zeros whose gradients
        with respect to the first input and the parameters exist and are zero, as
        ``dynamic_rnn``'s empty runs); ``final_state`` the state after the last step;
        ``final_loop_state`` None when the first ``loop_fn`` call returned None.

    Raises:
        TypeError: ``cell`` is not a cell, ``loop_fn`` is not callable or returns other than a
            5-tuple, ``finished`` is not a bool tensor [B], ``swap_memory`` is not a bool or
            ``scope`` not a str.
        ValueError: a ``loop_fn`` result whose structure or batch changes between steps, an
            initial state that does not fit ``cell.state_size``, or a ``parallel_iterations``
            that is not a positive int (``np.int64`` and 0-d integer tensors are) or None.
    """
    check_cell(_OWNER, "cell", cell)
    if not callable(loop_fn):
        raise TypeError(f"{_OWNER}: loop_fn must be callable, got {type(loop_fn).__name__}")
    check_optional_int(_OWNER, "parallel_iterations", parallel_iterations)
    _flag(_OWNER, "swap_memory", swap_memory)
    if scope is not None and not isinstance(scope, str):
        raise TypeError(f"{_OWNER}: scope must be a str or None, got {scope!r}")
    if hasattr(cell, "begin_sequence"):  # a new run: DropoutWrapper draws new variational masks
        cell.begin_sequence()
    finished, next_input, state, emit_structure, init_loop_state = _call(
        loop_fn, 0, None, None, None
    )
    finished = _check_finished(finished, None, 0)
    batch = finished.shape[0]
    _check_batch("next_input as", next_input, batch)
    check_state(
        _OWNER, "the initial cell state from loop_fn(time=0)", state, cell.state_size, batch
    )
    state_leaf = _nest.flatten(state)[0]
    if emit_structure is None:
        zero_emit = _nest.map_structure(
            lambda size: state_leaf.new_zeros(batch, size), cell.output_size
        )
    else:
        _check_batch("emit_output as None or", emit_structure, batch)
        zero_emit = _nest.map_structure(torch.zeros_like, emit_structure)
    loop_state = init_loop_state
    emitted: list[list[Tensor]] = []
    time = 0
    while not bool(finished.all()):
        output, cell_state = cell(next_input, state)
        result = _call(loop_fn, time + 1, output, cell_state, loop_state)
        next_finished, new_input, next_state, emit, next_loop_state = result
        next_finished = _check_finished(next_finished, batch, time + 1)
        _same(time + 1, "next_cell_state", state, next_state)
        _same(time + 1, "next_input", next_input, new_input)
        _same(time + 1, "emit_output", zero_emit, emit)
        if next_loop_state is not None:
            loop_state = next_loop_state
        emitted.append(_nest.flatten(copy_through(finished, zero_emit, emit)))
        state = copy_through(finished, state, next_state)
        finished = finished | next_finished
        next_input = new_input
        time += 1
    flat_zero = _nest.flatten(zero_emit)
    if emitted:
        stacked = [torch.stack([step[k] for step in emitted]) for k in range(len(flat_zero))]
    else:  # no step (every row finished at time 0, or B = 0): [0, B, ...] zeros
        stacked = _no_steps(cell, next_input, flat_zero)
    emit_all = _nest.pack_sequence_as(zero_emit, stacked)
    return emit_all, state, (None if init_loop_state is None else loop_state)


def _call(loop_fn: Callable[..., Any], time: int, *args: Any) -> tuple[Any, ...]:
    """``loop_fn(time, *args)``, refused unless it returns TF1's 5-tuple."""
    result = loop_fn(time, *args)
    if not isinstance(result, tuple) or len(result) != 5:
        got = f"a {len(result)}-tuple" if isinstance(result, tuple) else type(result).__name__
        raise TypeError(
            f"{_OWNER}: loop_fn(time={time}) must return a 5-tuple (finished, next_input, "
            f"next_cell_state, emit_output, next_loop_state), got {got}"
        )
    return result
