"""The cell contract every recurrence in rnnflow relies on, and nothing more.

A cell maps ``(inputs [B, D], state) -> (output [B, output_size], new_state)``, exactly like a
TensorFlow-1 ``RNNCell``. ``dynamic_rnn``, ``MultiRNNCell`` and ``DropoutWrapper`` only use
``state_size``, ``output_size``, ``zero_state`` and the call itself, so any ``RNNCell`` subclass
(or any object with those four) works with them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

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


def check_num_units(owner: str, num_units: Any) -> int:
    if isinstance(num_units, bool) or not isinstance(num_units, int) or num_units <= 0:
        raise ValueError(f"{owner}: num_units must be a positive int, got {num_units!r}")
    return num_units


class RNNCell(nn.Module):
    """Base class of rnnflow cells: TF1's ``RNNCell`` contract on an ``nn.Module``.

    Subclasses define ``state_size``, ``output_size`` and ``forward(inputs, state)``. Cells whose
    parameters depend on the input depth build them lazily on the first call unless
    ``input_size`` was given (as TF1 cells and ``nn.LazyLinear`` do): create the optimizer after
    that first call, or pass ``input_size``.
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
        batch_size: int,
        dtype: torch.dtype | None = None,
        *,
        device: torch.device | str | None = None,
    ) -> State:
        """Zero-filled state of shape ``[batch_size, size]`` per leaf of ``state_size``.

        ``dtype``/``device`` default to the parameters' (or the default dtype and CPU before the
        cell is built).
        """
        owner = f"{type(self).__name__}.zero_state"
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
            raise ValueError(f"{owner}: batch_size must be a non-negative int, got {batch_size!r}")
        found = self._param_dtype_device()
        if dtype is None:
            dtype = found[0] if found else torch.get_default_dtype()
        if device is None:
            device = found[1] if found else torch.device("cpu")
        return _nest.map_structure(
            lambda size: torch.zeros(batch_size, size, dtype=dtype, device=device),
            self.state_size,
        )

    def forward(self, inputs: Tensor, state: State) -> tuple[Tensor, State]:  # pragma: no cover
        raise NotImplementedError


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
