"""GRUCell in TensorFlow-1's formulation (reset gate applied before the candidate matmul)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rnnflow.cells._dense import Initializer, check_initializer, dense, register_dense
from rnnflow.cells._lazy import LazyCell
from rnnflow.cells.base import Activation, check_num_units, resolve_activation


class GRUCell(LazyCell):
    """Gated recurrent unit, as ``tf.nn.rnn_cell.GRUCell``.

        r, u = split(sigmoid([x, h] @ gates.kernel + gates.bias), 2)      # gates.bias starts at 1.0
        c    = activation([x, r * h] @ candidate.kernel + candidate.bias)
        h'   = u * h + (1 - u) * c                                         # output == new state

    Parameters (TF names ``gates/kernel`` etc. become ``gates.kernel``): ``gates.kernel``
    [input_size + num_units, 2 * num_units], ``gates.bias`` [2 * num_units] (ones),
    ``candidate.kernel`` [input_size + num_units, num_units], ``candidate.bias`` [num_units]
    (zeros);
    kernels Glorot-uniform unless ``kernel_initializer`` is given.

    Shapes: inputs [B, input_size], state [B, num_units] -> output, state: [B, num_units].

    Differs from ``torch.nn.GRUCell``/cuDNN: there the reset gate multiplies ``W_hn h + b_hn``
    after the recurrent matmul; here it multiplies ``h`` before it. Gate order r, u, and
    ``u`` keeps the old state (``torch.nn.GRUCell``'s ``z`` does the same).
    """

    def __init__(
        self,
        num_units: int,
        activation: Activation | str | None = None,
        reuse: Any = None,
        kernel_initializer: Initializer | None = None,
        bias_initializer: Initializer | None = None,
        name: str | None = None,
        dtype: torch.dtype | None = None,
        *,
        input_size: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        check_initializer("GRUCell", "kernel_initializer", kernel_initializer)
        check_initializer("GRUCell", "bias_initializer", bias_initializer)
        act = resolve_activation("GRUCell", activation)
        # Plain attributes may be set before nn.Module.__init__; the build inside it needs them.
        self._kernel_initializer = kernel_initializer
        self._bias_initializer = bias_initializer
        super().__init__(
            check_num_units("GRUCell", num_units),
            input_size=input_size,
            dtype=dtype,
            device=device,
            name=name,
            reuse=reuse,
            activation=act,
        )

    def _declare_parameters(self) -> None:
        self.gates = nn.Module()
        self.candidate = nn.Module()
        for part in (self.gates, self.candidate):
            part.register_parameter("kernel", None)
            part.register_parameter("bias", None)

    def _kernel_name(self) -> str:
        return "gates.kernel"

    @property
    def state_size(self) -> int:
        return self.num_units

    def _create_parameters(self, input_size: int, *, dtype, device) -> None:
        common = dict(
            input_size=input_size,
            num_units=self.num_units,
            kernel_initializer=self._kernel_initializer,
            dtype=dtype,
            device=device,
        )
        register_dense(
            self.gates,
            out_features=2 * self.num_units,
            bias_initializer=self._bias_initializer,
            bias_value=1.0,
            **common,
        )
        register_dense(
            self.candidate,
            out_features=self.num_units,
            bias_initializer=self._bias_initializer,
            bias_value=0.0,
            **common,
        )

    def forward(self, inputs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        self._prepare(inputs, state)
        r, u = torch.sigmoid(dense(self.gates, inputs, state)).chunk(2, dim=1)
        c = self._activation(dense(self.candidate, inputs, r * state))
        new_h = u * state + (1 - u) * c
        return new_h, new_h
