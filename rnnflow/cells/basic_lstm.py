"""BasicLSTMCell and its state tuple, TF1 gate order i, j, f, o with forget_bias at run time."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from rnnflow.cells._dense import dense
from rnnflow.cells._lazy import LazyCell
from rnnflow.cells.base import (
    Activation,
    check_finite_float,
    check_num_units,
    resolve_activation,
)


class LSTMStateTuple(NamedTuple):
    """An LSTM state: ``c`` (the memory cell) then ``h`` (the output), as in TF1."""

    c: Any
    h: Any

    @property
    def dtype(self) -> torch.dtype:
        """TF1's ``LSTMStateTuple.dtype``: both parts must share it."""
        if self.c.dtype != self.h.dtype:
            raise TypeError(
                f"LSTMStateTuple: c and h dtypes differ: {self.c.dtype} vs {self.h.dtype}"
            )
        return self.c.dtype


class BasicLSTMCell(LazyCell):
    """LSTM cell without peepholes or projection, as ``tf.nn.rnn_cell.BasicLSTMCell``.

        i, j, f, o = split([x, h] @ kernel + bias, 4)
        c' = c * sigmoid(f + forget_bias) + sigmoid(i) * activation(j)
        h' = activation(c') * sigmoid(o)

    Parameters (TF names and layouts): ``kernel`` [input_size + num_units, 4 * num_units]
    (Glorot-uniform), ``bias`` [4 * num_units] (zeros). ``forget_bias`` is added at run time,
    not stored in ``bias``.

    Shapes: inputs [B, input_size]; state ``LSTMStateTuple(c [B, H], h [B, H])`` or, with
    ``state_is_tuple=False``, ``concat([c, h], 1)`` [B, 2H]; output [B, H].

    Differs from ``torch.nn.LSTMCell``: gate order i, j(=g), f, o instead of i, f, g, o; one
    stacked kernel and one bias; ``forget_bias`` (1.0 by default) added to the forget gate.
    """

    _gates = 4  # kernel columns i, j, f, o per unit

    def __init__(
        self,
        num_units: int,
        forget_bias: float = 1.0,
        state_is_tuple: bool = True,
        activation: Activation | str | None = None,
        reuse: Any = None,
        name: str | None = None,
        dtype: torch.dtype | None = None,
        *,
        input_size: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        forget = check_finite_float("BasicLSTMCell", "forget_bias", forget_bias)
        act = resolve_activation("BasicLSTMCell", activation)
        super().__init__(
            check_num_units("BasicLSTMCell", num_units),
            input_size=input_size,
            dtype=dtype,
            device=device,
            name=name,
            reuse=reuse,
            activation=act,
        )
        self.forget_bias = forget
        self.state_is_tuple = bool(state_is_tuple)

    @property
    def state_size(self) -> LSTMStateTuple | int:
        if self.state_is_tuple:
            return LSTMStateTuple(self.num_units, self.num_units)
        return 2 * self.num_units

    def forward(self, inputs: Tensor, state: Any) -> tuple[Tensor, Any]:
        self._prepare(inputs, state)
        if self.state_is_tuple:
            c, h = state
        else:
            c, h = state.split(self.num_units, dim=1)
        i, j, f, o = dense(self, inputs, h).chunk(4, dim=1)
        act = self._activation
        new_c = c * torch.sigmoid(f + self.forget_bias) + torch.sigmoid(i) * act(j)
        new_h = act(new_c) * torch.sigmoid(o)
        if self.state_is_tuple:
            return new_h, LSTMStateTuple(new_c, new_h)
        return new_h, torch.cat([new_c, new_h], dim=1)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, forget_bias={self.forget_bias}, "
            f"state_is_tuple={self.state_is_tuple}"
        )
