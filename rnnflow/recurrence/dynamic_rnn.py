"""``dynamic_rnn``: TF1's public entry point. Validate once, normalise the layout, pick a path."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from rnnflow import _nest
from rnnflow.cells.base import RNNCell, State, build_cell, check_optional_int, check_state
from rnnflow.cells.device import DeviceWrapper
from rnnflow.recurrence import _ext, fused
from rnnflow.recurrence._masking import check_sequence_length
from rnnflow.recurrence._shapes import check_input_depth, check_sizes
from rnnflow.recurrence.reference import compute_dtype, reference_dynamic_rnn

Impl = Literal["auto", "fused", "reference"]
_IMPLS = ("auto", "fused", "reference")


def dynamic_rnn(
    cell: Any,
    inputs: Tensor,
    sequence_length: Tensor | None = None,
    initial_state: State | None = None,
    dtype: torch.dtype | None = None,
    parallel_iterations: int | None = None,
    swap_memory: bool = False,
    time_major: bool = False,
    scope: str | None = None,
    *,
    impl: Impl = "auto",
) -> tuple[Any, State]:
    """Run ``cell`` over every time step of ``inputs``, as ``tf.nn.dynamic_rnn``.

    Args:
        cell: an ``RNNCell`` (or any object with ``state_size``, ``output_size``, ``zero_state``
            that is callable as ``cell(inputs, state) -> (output, new_state)``; TF1's
            ``zero_state(batch_size, dtype)`` signature will do). ``state_size`` and
            ``output_size`` are ints or ``tf.nest`` structures of ints (tuples, namedtuples,
            lists, dicts); states and outputs are then nested alike.
        inputs: [B, T, D] (``time_major=False``) or [T, B, D] (``time_major=True``), floating;
            B = 0 and T = 0 are allowed. One tensor (TF1 also takes nested inputs: refused).
        sequence_length: [B] of integers in [0, T]: a tensor of any integer dtype, or a list,
            tuple or NumPy array of ints. Row ``b``'s outputs at steps ``t >= sequence_length[b]``
            are zero and its state stops changing there, so the final state is the state after
            its last valid step (the initial state for length 0). TF1 clamps out-of-range
            lengths silently; rnnflow raises ``ValueError``.
        initial_state: the cell's state structure with batch B; default ``cell.zero_state``.
        dtype: dtype of the zero initial state; defaults to the inputs' dtype (TF1 required it
            when no ``initial_state`` is given) and must equal it when given.
        parallel_iterations: accepted for TF1 compatibility; no effect in eager execution.
        swap_memory: on CUDA, keep the activations saved for backward in (pinned) host memory
            (``torch.autograd.graph.save_on_cpu``); no effect on CPU.
        time_major: layout of ``inputs`` and of the returned ``outputs``.
        scope: accepted for TF1 compatibility; parameters live in the cell, not in a scope.
        impl: ``"auto"`` uses the fused path when ``fused.fusable`` allows and the reference loop
            otherwise; ``"fused"`` raises if it cannot fuse; ``"reference"`` forces the loop.
            Second-order gradients (``create_graph=True``) need ``"reference"``: the compiled
            loops' backward raises ``RuntimeError`` under it (it is not differentiable). Under
            a ``torch.func`` transform (``vmap``, ``grad``, ``jacrev``, ``jacfwd``) ``"auto"``
            runs the reference loop and ``"fused"`` raises ``ValueError`` naming
            ``"reference"`` (``fused.transform_active``); a vectorized Jacobian
            (``is_grads_batched``) runs the fused backward once per row.

    Returns:
        ``(outputs, state)``: outputs [B, T, output_size] (or [T, B, output_size]; one such
        tensor per leaf of a nested ``output_size``) and the final state, structured as the
        cell's state. With T = 0 or B = 0 the outputs are zeros that still depend on the inputs
        and the cell's parameters (their gradients exist and are zero) and the final state is
        the initial state. Under ``torch.autocast`` with float32 inputs, outputs and state come
        back in the autocast dtype on every path (``reference.compute_dtype``).

    Raises:
        TypeError, ValueError: at the boundary, before any step runs, for every bad argument
        (naming it, what was expected and what was received), including a cell (or a layer of a
        ``MultiRNNCell``) built for another input depth than it would be fed; during the run,
        a step whose output or new state does not match ``output_size``/``state_size`` (the
        message names the step).
    """
    return run_rnn(
        "dynamic_rnn",
        cell,
        inputs,
        sequence_length=sequence_length,
        initial_state=initial_state,
        dtype=dtype,
        parallel_iterations=parallel_iterations,
        swap_memory=swap_memory,
        time_major=time_major,
        scope=scope,
        impl=impl,
    )


def check_common_arguments(
    owner: str,
    inputs: Any,
    *,
    sequence_length: Any,
    dtype: Any,
    parallel_iterations: Any,
    swap_memory: Any,
    time_major: Any,
    scope: Any,
    impl: Any,
) -> Tensor:
    """Checks shared by ``dynamic_rnn`` and ``bidirectional_dynamic_rnn``.

    Returns the inputs time-major [T, B, D] and the lengths as int64 [B] (or None).
    """
    if not isinstance(inputs, Tensor):
        raise TypeError(f"{owner}: inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if inputs.layout != torch.strided or inputs.is_nested:
        kind = "nested" if inputs.is_nested else str(inputs.layout)
        raise TypeError(f"{owner}: inputs must be a dense tensor, got a {kind} tensor")
    time_major = _flag(owner, "time_major", time_major)
    if inputs.dim() != 3:
        layout = "[time, batch, depth]" if time_major else "[batch, time, depth]"
        raise ValueError(
            f"{owner}: inputs must have rank 3 ({layout}), got shape {tuple(inputs.shape)}"
        )
    if not inputs.is_floating_point():
        raise TypeError(f"{owner}: inputs must be floating point, got dtype {inputs.dtype}")
    if dtype is not None and dtype != inputs.dtype:
        raise TypeError(
            f"{owner}: dtype must be None or the inputs' dtype {inputs.dtype}, got {dtype}"
        )
    check_optional_int(owner, "parallel_iterations", parallel_iterations)
    _flag(owner, "swap_memory", swap_memory)
    if scope is not None and not isinstance(scope, str):
        raise TypeError(f"{owner}: scope must be a str or None, got {scope!r}")
    if impl not in _IMPLS:
        raise ValueError(f"{owner}: impl must be one of {_IMPLS}, got {impl!r}")
    x = inputs if time_major else inputs.transpose(0, 1)  # [T, B, D]
    lengths = check_sequence_length(
        owner, sequence_length, batch=x.shape[1], max_time=x.shape[0], device=x.device
    )
    return x, lengths


def _flag(owner: str, name: str, value: Any) -> bool:
    """A bool (NumPy's too, as TF1's ``if flag:`` takes it); anything else is refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be a bool, got {value!r}")
    return bool(value)


def check_cell(owner: str, argument: str, cell: Any) -> None:
    missing = [a for a in ("state_size", "output_size", "zero_state") if not hasattr(cell, a)]
    if missing or not callable(cell):
        raise TypeError(
            f"{owner}: {argument} must be an RNNCell (callable, with state_size, output_size and "
            f"zero_state), got {type(cell).__name__}"
        )
    check_sizes(owner, argument, cell)


def _parameters_on_the_inputs_device(cell: torch.nn.Module) -> list[tuple[str, Tensor]]:
    """The named parameters that must be on the inputs' device: all but those under a
    ``DeviceWrapper``, which moves its cell's inputs and state to its own device."""
    placed = [n for n, m in cell.named_modules() if isinstance(m, DeviceWrapper)]
    return [
        (n, p)
        for n, p in cell.named_parameters()
        if not any(n.startswith(f"{w}.") if w else True for w in placed)
    ]


def prepare_state(
    owner: str, cell_argument: str, argument: str, cell: Any, initial_state: Any, x: Tensor
) -> State:
    """Build the cell for ``x`` [T, B, D] if needed and check the depth every (sub-)cell was
    built for; return the checked initial state, or the cell's zero state (checked too)."""
    batch, depth = x.shape[1], x.shape[2]
    if depth == 0 and not getattr(cell, "built", True):
        raise ValueError(
            f"{owner}: inputs must have a depth of at least 1 to build {cell_argument} "
            f"({type(cell).__name__}), got depth 0"
        )
    build_cell(cell, depth, dtype=x.dtype, device=x.device)
    check_input_depth(owner, cell_argument, cell, depth)
    if isinstance(cell, torch.nn.Module):
        for name, p in _parameters_on_the_inputs_device(cell):
            if p.device != x.device:
                raise TypeError(
                    f"{owner}: {cell_argument}.{name} must be on the inputs' device {x.device}, "
                    f"got {p.device} (move the cell with .to({str(x.device)!r}))"
                )
    if hasattr(cell, "begin_sequence"):
        cell.begin_sequence()
    if initial_state is None:
        argument = f"{cell_argument}.zero_state({batch})"
        if isinstance(cell, RNNCell):
            initial_state = cell.zero_state(batch, x.dtype, device=x.device)
            if type(cell).zero_state is RNNCell.zero_state:
                return initial_state  # made from state_size with the inputs' dtype and device
        else:  # TF1's signature
            initial_state = cell.zero_state(batch, x.dtype)
    check_state(owner, argument, initial_state, cell.state_size, batch)
    for leaf in _nest.flatten(initial_state):
        if leaf.layout != torch.strided or leaf.is_nested:
            raise TypeError(f"{owner}: {argument} must hold dense tensors, got {leaf.layout}")
        # under autocast also the dtype it computes in (a returned state chains, as nn.LSTM's)
        if leaf.dtype not in (x.dtype, compute_dtype(x)) or leaf.device != x.device:
            also = "" if compute_dtype(x) == x.dtype else f" (or autocast's {compute_dtype(x)})"
            raise TypeError(
                f"{owner}: {argument} must have the inputs' dtype {x.dtype}{also} and device "
                f"{x.device}, got dtype {leaf.dtype} on {leaf.device}"
            )
    return initial_state


def run_time_major(
    owner: str,
    cell: Any,
    x: Tensor,
    lengths: Tensor | None,
    state: State,
    *,
    impl: Impl,
    swap_memory: bool,
    zero_state: bool = False,
) -> tuple[Any, State]:
    """Dispatch one checked, time-major run [T, B, D] to the fused path or the reference loop.
    ``zero_state``: ``state`` is the cell's ``zero_state`` (no initial state was given), which
    lets the fused LSTM skip h_{-1}'s products at step 0."""
    _ext.check_isa_name()  # the same refusal on every path (bf16 autocast runs no kernel)
    use_fused = False
    if impl == "fused" or (impl == "auto" and x.shape[0] > 1):
        # A single step has nothing to batch over time, and the fused path's fixed cost
        # (weight re-layout, buffers) makes it several times slower there: "auto" loops.
        ok, reason = fused.fusable(cell, x)
        if impl == "fused" and not ok:
            raise ValueError(
                f"{owner}: impl='fused' unavailable ({reason}); use impl='auto' to fall back"
            )
        use_fused = ok and (impl == "fused" or not fused.auto_prefers_reference(cell, x))
    if swap_memory and x.is_cuda and torch.is_grad_enabled():
        with torch.autograd.graph.save_on_cpu(pin_memory=True):
            return _run(use_fused, owner, cell, x, lengths, state, zero_state)
    return _run(use_fused, owner, cell, x, lengths, state, zero_state)


def _run(
    use_fused: bool,
    owner: str,
    cell: Any,
    x: Tensor,
    lengths: Tensor | None,
    state: State,
    zero_state: bool = False,
):
    if use_fused:  # prepare_state and fusable() checked the depth, the state and the cell
        return fused.fused_dynamic_rnn(
            cell, x, lengths, state, owner=owner, checked=True, zero_state=zero_state
        )
    return reference_dynamic_rnn(cell, x, lengths, state, owner=owner)


def run_rnn(
    owner: str,
    cell: Any,
    inputs: Tensor,
    *,
    sequence_length: Any,
    initial_state: Any,
    dtype: Any,
    parallel_iterations: Any,
    swap_memory: Any,
    time_major: Any,
    scope: Any,
    impl: Any,
) -> tuple[Any, State]:
    _ext.check_isa_name()
    if (
        impl == "auto"
        and sequence_length is None
        and dtype is None
        and parallel_iterations is None
        and swap_memory is False
        and scope is None
        and (time_major is False or time_major is True)
        and isinstance(inputs, Tensor)
    ):  # the plain inference call: one check pass and one compiled call (fused.infer_fast)
        done = fused.infer_fast(cell, inputs, initial_state, time_major)
        if done is not None:
            return done
    check_cell(owner, "cell", cell)
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
    state = prepare_state(owner, "cell", "initial_state", cell, initial_state, x)
    outputs, state = run_time_major(
        owner,
        cell,
        x,
        lengths,
        state,
        impl=impl,
        swap_memory=swap_memory,
        zero_state=initial_state is None,
    )
    if not time_major:
        outputs = _nest.map_structure(lambda out: out.transpose(0, 1), outputs)  # [B, T, size]
    return outputs, state
