"""The cell contract every recurrence in rnnflow relies on, and nothing more.

A cell maps ``(inputs [B, D], state) -> (output [B, output_size], new_state)``, exactly like a
TensorFlow-1 ``RNNCell``. ``dynamic_rnn``, ``MultiRNNCell`` and ``DropoutWrapper`` only use
``state_size``, ``output_size``, ``zero_state`` and the call itself, so any ``RNNCell`` subclass
(or any object with those four) works with them.
"""

from __future__ import annotations

import inspect
import math
import operator
from collections.abc import Callable
from typing import Any, SupportsIndex, TypeAlias

import numpy as np
import torch
from torch import Tensor, nn

from rnnflow import _nest

State: TypeAlias = Tensor | tuple["State", ...]
StateSize: TypeAlias = int | tuple["StateSize", ...]
Activation: TypeAlias = Callable[[Tensor], Tensor]

_ACTIVATIONS: dict[str, Activation] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "elu": nn.functional.elu,
    "softsign": nn.functional.softsign,
    "linear": lambda x: x,
}


def resolve_activation(owner: str, activation: Activation | str | None) -> Activation:
    """``None`` means tanh (TF1's default); a string names a common activation; else a callable."""
    if activation is None:
        return torch.tanh
    if isinstance(activation, str):
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"{owner}: activation must be a callable or one of {sorted(_ACTIVATIONS)}, "
                f"got {activation!r}"
            )
        return _ACTIVATIONS[activation]
    if not callable(activation):
        raise TypeError(f"{owner}: activation must be callable, got {type(activation).__name__}")
    return activation


def _int_kind(minimum: int | None) -> str:
    if minimum is None:
        return "an int"
    return {0: "a non-negative int", 1: "a positive int"}.get(minimum, f"an int >= {minimum}")


def check_int(owner: str, argument: str, value: Any, *, minimum: int | None = 1) -> int:
    """``value`` as a Python ``int``, accepting what TF1 accepts where it takes an int.

    Anything ``operator.index`` accepts passes: Python ints, NumPy integers (``np.int64``), and
    0-d integer tensors (``torch.tensor(3)``, what ``x.shape[0]`` is under ``torch.jit.trace``;
    not ``torch.tensor([3])``). Refused with ``ValueError("{owner}: {argument} must be a
    positive int, got ...")``: floats (even integral ones), bools (``True``, ``np.True_``, bool
    tensors), tensors that are not 0-d, strings, and values below ``minimum`` (``None``: no
    lower bound).

    Cells and wrappers call this for every integer argument (``num_units``, ``input_size``,
    ``num_proj``, ``zero_state``'s ``batch_size``, ...), so they all accept the same things
    and word their errors the same way.
    """
    index = _as_index(value)
    if index is None or (minimum is not None and index < minimum):
        raise ValueError(f"{owner}: {argument} must be {_int_kind(minimum)}, got {value!r}")
    return index


def check_optional_int(
    owner: str, argument: str, value: Any, *, minimum: int | None = 1
) -> int | None:
    """:func:`check_int`, with ``None`` passed through (the message says "... or None")."""
    if value is None:
        return None
    index = _as_index(value)
    if index is None or (minimum is not None and index < minimum):
        raise ValueError(f"{owner}: {argument} must be {_int_kind(minimum)} or None, got {value!r}")
    return index


def _as_index(value: Any) -> int | None:
    """``operator.index(value)``, or None for bools and what it refuses."""
    if isinstance(value, (bool, np.bool_)) or (
        isinstance(value, Tensor) and (value.dtype == torch.bool or value.dim() != 0)
    ):
        return None  # a tensor must be 0-d: TF refuses shape [1] where it takes an int
    try:
        return operator.index(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def check_num_units(owner: str, num_units: Any) -> int:
    """``num_units`` as a positive Python int (see :func:`check_int`)."""
    return check_int(owner, "num_units", num_units)


def check_finite_float(owner: str, argument: str, value: Any) -> float:
    """``value`` (an int or a float, a bool not) as a float: ``TypeError`` for a non-number,
    ``ValueError`` for inf or NaN (``forget_bias`` and the other float hyperparameters)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {argument} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{owner}: {argument} must be finite, got {value!r}")
    return float(value)


class RNNCell(nn.Module):
    """Base class of rnnflow cells: TF1's ``RNNCell`` contract on an ``nn.Module``.

    Subclasses define ``state_size``, ``output_size`` and ``forward(inputs, state)``. Cells whose
    parameters depend on the input depth build them lazily on the first call unless
    ``input_size`` was given (as TF1 cells and ``nn.LazyLinear`` do): create the optimizer after
    that first call, or pass ``input_size``. Parameters are made outside
    ``torch.inference_mode()`` even when the first call runs in it, so the cell trains later.
    """

    @property
    def state_size(self) -> StateSize:
        raise NotImplementedError

    @property
    def output_size(self) -> int:
        raise NotImplementedError

    @property
    def built(self) -> bool:
        """Whether the parameters exist (always true for cells without input-dependent ones)."""
        return True

    def build(self, input_size: int, *, dtype: torch.dtype, device: torch.device) -> None:
        """Create the parameters for inputs of depth ``input_size`` (no-op once built)."""

    def begin_sequence(self) -> None:
        """Hook called by ``dynamic_rnn`` before each sequence; cells with per-sequence
        randomness (variational dropout) renew it here."""
        for child in self.children():
            if isinstance(child, RNNCell):
                child.begin_sequence()

    def _param_dtype_device(self) -> tuple[torch.dtype, torch.device] | None:
        for p in self.parameters():
            return p.dtype, p.device
        return None

    def zero_state(
        self,
        batch_size: SupportsIndex,
        dtype: torch.dtype | None = None,
        *,
        device: torch.device | str | None = None,
    ) -> State:
        """Zero-filled state of shape ``[batch_size, size]`` per leaf of ``state_size``.

        ``batch_size`` is anything ``operator.index`` accepts (an int, ``np.int64``, a 0-d
        integer tensor such as ``x.shape[0]`` under ``torch.jit.trace``, which then stays a
        traced size); ``ValueError`` for floats, bools and negatives. ``dtype``/``device``
        default to the parameters' (or the default dtype and CPU before the cell is built);
        ``TypeError`` for a dtype that is not a floating ``torch.dtype`` (a string, a NumPy type).
        """
        dtype, device = self._state_dtype_device(dtype, device)
        return zeros_for_state_size(self, self.state_size, batch_size, dtype, device)

    def _state_dtype_device(
        self, dtype: torch.dtype | None, device: torch.device | str | None
    ) -> tuple[torch.dtype, torch.device | str]:
        self._check_state_dtype(dtype)
        found = self._param_dtype_device()
        if dtype is None:
            dtype = found[0] if found else torch.get_default_dtype()
        if device is None:
            device = found[1] if found else torch.device("cpu")
        return dtype, device

    def _check_state_dtype(self, dtype: Any) -> None:
        """TF1 took ``tf.float32`` here; a string or NumPy type would reach ``torch.zeros``."""
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(
                f"{type(self).__name__}.zero_state: dtype must be None or a floating torch.dtype "
                f"(e.g. torch.float32), got {dtype!r}"
                + ("" if isinstance(dtype, torch.dtype) else f" ({type(dtype).__name__})")
            )

    def _inner_zero_state(
        self,
        cell: Any,
        batch_size: SupportsIndex,
        dtype: torch.dtype | None,
        device: torch.device | str | None,
    ) -> State:
        """``cell``'s own ``zero_state`` (TF1's wrappers and ``MultiRNNCell`` delegate): called
        with ``device=`` when it takes one, else with TF1's ``(batch_size, dtype)`` and moved to
        the device; zeros shaped by its ``state_size`` when it has no ``zero_state``."""
        self._check_state_dtype(dtype)
        zero_state = getattr(cell, "zero_state", None)
        if zero_state is not None and _takes_device(zero_state):
            return zero_state(batch_size, dtype, device=device)
        dtype, device = self._state_dtype_device(dtype, device)
        if zero_state is None:
            return zeros_for_state_size(self, cell.state_size, batch_size, dtype, device)
        state = zero_state(batch_size, dtype)
        return _nest.map_structure(lambda leaf: leaf.to(device), state)

    def forward(self, inputs: Tensor, state: State) -> tuple[Tensor, State]:  # pragma: no cover
        raise NotImplementedError


def _takes_device(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` accepts a ``device=`` keyword (rnnflow's ``zero_state`` does)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "device" or p.kind is p.VAR_KEYWORD for p in parameters)


def zeros_for_state_size(
    cell: Any,
    state_size: StateSize,
    batch_size: Any,
    dtype: torch.dtype,
    device: torch.device | str,
) -> State:
    """Zeros [batch_size, size] per leaf of ``state_size``; ``batch_size`` checked
    (:func:`check_int`, >= 0) with errors named ``{type(cell).__name__}.zero_state``. A 0-d
    tensor ``batch_size`` is passed to ``torch.zeros`` as is, so ``torch.jit.trace`` keeps it
    symbolic."""
    check_int(f"{type(cell).__name__}.zero_state", "batch_size", batch_size, minimum=0)
    batch = batch_size
    if not (isinstance(batch_size, Tensor) and batch_size.dim() == 0):
        batch = operator.index(batch_size)
    return _nest.map_structure(
        lambda size: torch.zeros(batch, size, dtype=dtype, device=device), state_size
    )


def check_wrapped_cell(owner: str, cell: Any) -> None:
    """A wrapper's ``cell`` must be an ``nn.Module`` cell (so its parameters are registered)."""
    if not isinstance(cell, nn.Module) or not hasattr(cell, "state_size"):
        raise TypeError(f"{owner}: cell must be an RNNCell, got {type(cell).__name__}")


def build_cell(
    cell: Any, input_size: int, *, dtype: torch.dtype, device: torch.device | str | None
) -> None:
    """Build ``cell`` for inputs of depth ``input_size`` unless it is built (or cannot be)."""
    if not getattr(cell, "built", True) and hasattr(cell, "build"):
        cell.build(input_size, dtype=dtype, device=device)


def check_state(owner: str, argument: str, state: Any, state_size: StateSize, batch: int) -> None:
    """``state`` must nest like ``state_size`` with a [batch, size] tensor at every leaf."""

    def expected() -> str:  # built only for a message: every step of every cell checks
        return _nest.describe(state_size, leaf=lambda size: f"Tensor({batch}, {size})")

    if not _nest.same_structure(state, state_size):
        raise ValueError(
            f"{owner}: {argument} must match the cell's state structure {expected()}, "
            f"got {_nest.describe(state)}"
        )
    for leaf, size in zip(_nest.flatten(state), _nest.flatten(state_size)):
        if not isinstance(leaf, Tensor):
            raise TypeError(
                f"{owner}: {argument} leaves must be torch.Tensor, got {type(leaf).__name__}"
            )
        if tuple(leaf.shape) != (batch, size):
            raise ValueError(
                f"{owner}: {argument} must match the cell's state structure {expected()}, "
                f"got {_nest.describe(state)}"
            )
