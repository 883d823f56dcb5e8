"""BasicRNNCell: the tutorial's cell, h' = activation([x, h] @ kernel + bias)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rnnflow.cells._dense import dense
from rnnflow.cells._lazy import LazyCell
from rnnflow.cells.base import Activation, check_num_units, resolve_activation


class BasicRNNCell(LazyCell):
    """The most basic recurrent cell, as ``tf.nn.rnn_cell.BasicRNNCell``.

        h' = activation([x, h] @ kernel + bias)        # output == new state

    Parameters (TF names and layouts): ``kernel`` [input_size + num_units, num_units],
    initialised Glorot-uniform; ``bias`` [num_units], zeros.

    Shapes: inputs [B, input_size], state [B, num_units] -> output, state: [B, num_units].

    Unlike ``torch.nn.RNNCell`` (separate ``weight_ih``/``weight_hh`` and two biases), the input and
    recurrent weights are one stacked kernel, inputs first.
    """

    def __init__(
        self,
        num_units: int,
        activation: Activation | str | None = None,
        reuse: Any = None,
        name: str | None = None,
        dtype: torch.dtype | None = None,
        *,
        input_size: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        act = resolve_activation("BasicRNNCell", activation)
        super().__init__(
            check_num_units("BasicRNNCell", num_units),
            input_size=input_size,
            dtype=dtype,
            device=device,
            name=name,
            reuse=reuse,
            activation=act,
        )

    @property
    def state_size(self) -> int:
        return self.num_units

    def forward(self, inputs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        self._prepare(inputs, state)
        output = self._activation(dense(self, inputs, state))
        return output, output
