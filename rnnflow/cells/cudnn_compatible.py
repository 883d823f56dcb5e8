"""``tf.contrib.cudnn_rnn.CudnnCompatibleLSTMCell`` / ``CudnnCompatibleGRUCell``: cuDNN's maths
on any device, with the variables that ``CudnnLSTM``/``CudnnGRU`` checkpoints hold.

Source: r1.15 ``tensorflow/contrib/cudnn_rnn/python/ops/cudnn_rnn_ops.py`` lines 62-180 (the
cells) and 473-660 (how the saveable turns cuDNN's per-gate matrices into these variables).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rnnflow.cells._dense import Initializer, check_initializer, dense, register_dense
from rnnflow.cells._lazy import LazyCell
from rnnflow.cells.base import check_num_units
from rnnflow.cells.lstm_block import LSTMBlockCell


class CudnnCompatibleLSTMCell(LSTMBlockCell):
    """LSTM equal to ``tf.contrib.cudnn_rnn.CudnnLSTM``'s, as ``CudnnCompatibleLSTMCell``.

    :class:`LSTMBlockCell` with ``forget_bias=0``, no clipping, no peepholes and the TF scope
    ``cudnn_compatible_lstm_cell``. A ``CudnnLSTM`` checkpoint stores, per layer,
    ``kernel`` [input_size + H, 4H] (cuDNN's W and R matrices, gates reordered from cuDNN's
    i, f, c, o to TF's i, c, f, o and transposed) and ``bias`` [4H] (cuDNN's two bias sets
    summed), which is exactly this cell's layout.

    Shapes: inputs [B, input_size]; state ``LSTMStateTuple(c, h)`` of [B, H]; output [B, H].
    """

    def __init__(
        self,
        num_units: int,
        reuse: Any = None,
        *,
        input_size: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(
            num_units,
            forget_bias=0.0,
            cell_clip=None,
            use_peephole=False,
            reuse=reuse,
            name="cudnn_compatible_lstm_cell",
            input_size=input_size,
            dtype=dtype,
            device=device,
        )


class CudnnCompatibleGRUCell(LazyCell):
    """GRU in cuDNN's formulation (reset applied AFTER the recurrent matmul), as
    ``tf.contrib.cudnn_rnn.CudnnCompatibleGRUCell``.

        r, u = split(sigmoid([x, h] @ gates.kernel + gates.bias), 2)        # gates.bias: 1.0
        c    = tanh(x @ candidate.input_projection.kernel + candidate.input_projection.bias
                    + r * (h @ candidate.hidden_projection.kernel
                           + candidate.hidden_projection.bias))
        h'   = (1 - u) * c + u * h

    Parameters (TF names ``gates/kernel``, ``candidate/input_projection/kernel``, ...):
    ``gates.kernel`` [input_size + H, 2H], ``gates.bias`` [2H] (ones),
    ``candidate.input_projection.kernel`` [input_size, H],
    ``candidate.hidden_projection.kernel`` [H, H] (kernels Glorot-uniform unless
    ``kernel_initializer``), ``candidate.input_projection.bias`` and
    ``candidate.hidden_projection.bias`` [H] (zeros).

    Equals ``torch.nn.GRU`` / cuDNN with ``b_hn`` = ``hidden_projection.bias``; differs from
    :class:`GRUCell` (TF's own GRU), which multiplies ``h`` by ``r`` before the matmul and has
    no separate recurrent candidate bias.

    Shapes: inputs [B, input_size], state [B, H] -> output, state: [B, H].
    """

    def __init__(
        self,
        num_units: int,
        reuse: Any = None,
        kernel_initializer: Initializer | None = None,
        *,
        input_size: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        check_initializer("CudnnCompatibleGRUCell", "kernel_initializer", kernel_initializer)
        self._kernel_initializer = kernel_initializer  # used by the build inside __init__
        super().__init__(
            check_num_units("CudnnCompatibleGRUCell", num_units),
            input_size=input_size,
            dtype=dtype,
            device=device,
            name=None,
            reuse=reuse,
        )

    def _declare_parameters(self) -> None:
        self.gates = nn.Module()
        self.candidate = nn.Module()
        self.candidate.input_projection = nn.Module()
        self.candidate.hidden_projection = nn.Module()
        for part in (self.gates, self.candidate.input_projection, self.candidate.hidden_projection):
            part.register_parameter("kernel", None)
            part.register_parameter("bias", None)

    def _kernel_name(self) -> str:
        return "gates.kernel"

    @property
    def state_size(self) -> int:
        return self.num_units

    def _create_parameters(self, input_size: int, *, dtype, device) -> None:
        units = self.num_units
        parts = (  # (module, kernel rows read from x, from h, kernel columns, bias value)
            (self.gates, input_size, units, 2 * units, 1.0),
            (self.candidate.input_projection, input_size, 0, units, 0.0),
            (self.candidate.hidden_projection, 0, units, units, 0.0),
        )
        for part, x_rows, h_rows, columns, bias_value in parts:
            register_dense(
                part,
                input_size=x_rows,
                num_units=h_rows,
                out_features=columns,
                kernel_initializer=self._kernel_initializer,
                bias_value=bias_value,
                dtype=dtype,
                device=device,
            )

    def forward(self, inputs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        self._prepare(inputs, state)
        r, u = torch.sigmoid(dense(self.gates, inputs, state)).chunk(2, dim=1)  # each [B, H]
        inp, hid = self.candidate.input_projection, self.candidate.hidden_projection
        candidate = torch.addmm(inp.bias, inputs, inp.kernel) + r * torch.addmm(
            hid.bias, state, hid.kernel
        )
        c = torch.tanh(candidate)
        new_h = (1 - u) * c + u * state
        return new_h, new_h
