"""``tf.contrib.rnn.LSTMBlockCell`` and ``LSTMBlockFusedCell``: TF's monolithic LSTM kernels.

Both compute TensorFlow's ``LSTMBlockCell`` op (r1.15 ``tensorflow/contrib/rnn/python/ops/
lstm_ops.py`` lines 39-136 for the equations, ``tensorflow/core/kernels/rnn/lstm_ops.h`` for the
kernel), gate order i, j(=ci), f, o:

    i, ci, f, o = split([x, h] @ kernel + bias, 4)
    i  = sigmoid(i + w_i_diag * c)                  # peephole terms only with use_peephole
    f  = sigmoid(f + forget_bias + w_f_diag * c)
    c' = clip(i * tanh(ci) + f * c, cell_clip)     # only when cell_clip > 0
    o  = sigmoid(o + w_o_diag * c')
    h' = tanh(c') * o

TF's gradient op (``LSTMBlockCellGrad``, ``BlockLSTMGrad``) does not differentiate the clip: the
gradient passes through it unchanged even where ``c'`` was clipped. rnnflow reproduces that
(:func:`straight_through_clip`), so gradients equal TensorFlow's, not those of ``clip_by_value``
(which ``tf.nn.rnn_cell.LSTMCell`` uses and whose gradient is zero where it clips).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

from rnnflow.cells._dense import dense
from rnnflow.cells._lazy import LazyCell
from rnnflow.cells.base import check_finite_float, check_num_units, check_state
from rnnflow.cells.basic_lstm import LSTMStateTuple

_PEEPHOLES = ("w_i_diag", "w_f_diag", "w_o_diag")


class _StraightThroughClip(torch.autograd.Function):
    # setup_context style with a generated vmap rule and a jvp: it runs under torch.func
    # transforms (vmap, grad, jacrev, jacfwd), where the RNN then runs the reference loop
    generate_vmap_rule = True

    @staticmethod
    def forward(c: Tensor, clip: float) -> Tensor:
        return c.clamp(-clip, clip)

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None

    @staticmethod
    def jvp(ctx: Any, tangent: Tensor, _clip: Any) -> Tensor:
        return tangent


def straight_through_clip(c: Tensor, clip: float) -> Tensor:
    """``clamp(c, -clip, clip)`` forward, identity backward (TF's LSTMBlockCellGrad); no-op
    for ``clip <= 0`` (the op's "no clipping")."""
    if clip <= 0:
        return c
    return _StraightThroughClip.apply(c, clip)


def _check_cell_clip(owner: str, cell_clip: Any) -> float:
    """TF's convention: None (or any value <= 0) means no clipping, stored as -1."""
    if cell_clip is None:
        return -1.0
    if isinstance(cell_clip, bool) or not isinstance(cell_clip, (int, float)):
        raise TypeError(f"{owner}: cell_clip must be a number or None, got {cell_clip!r}")
    if math.isnan(cell_clip):
        raise ValueError(f"{owner}: cell_clip must not be NaN")
    return float(cell_clip) if cell_clip > 0 else -1.0


def uniform_diagonal_(tensor: Tensor) -> Tensor:
    """TF1's default (Glorot-uniform) initialiser for a 1-D variable of size n: fan_in =
    fan_out = n, so U(-sqrt(3 / n), sqrt(3 / n))."""
    limit = math.sqrt(3.0 / tensor.shape[0])
    return nn.init.uniform_(tensor, -limit, limit)


class LSTMBlockCell(LazyCell):
    """LSTM cell of ``tf.contrib.rnn.LSTMBlockCell`` (one fused TF op per step).

        i, ci, f, o = split([x, h] @ kernel + bias, 4)                 # TF gate order i, j, f, o
        i = sigmoid(i + w_i_diag * c);  f = sigmoid(f + forget_bias + w_f_diag * c)
        c' = clip(i * tanh(ci) + f * c, cell_clip);  o = sigmoid(o + w_o_diag * c')
        h' = tanh(c') * o

    Parameters (TF names under the cell scope ``lstm_cell``, as ``tf.nn.rnn_cell.LSTMCell``):
    ``kernel`` [input_size + num_units, 4 * num_units] (Glorot-uniform), ``bias``
    [4 * num_units] (zeros), and with ``use_peephole`` ``w_i_diag``, ``w_f_diag``, ``w_o_diag``
    [num_units] (U(-sqrt(3/H), sqrt(3/H)), TF1's default for a 1-D variable).

    ``cell_clip``: None or a value <= 0 disables clipping (TF stores -1). Where the clip acts,
    the gradient passes through unchanged, as TF's ``LSTMBlockCellGrad`` does.

    Shapes: inputs [B, input_size]; state ``LSTMStateTuple(c [B, H], h [B, H])`` (always a
    tuple); output [B, H]. Activation is tanh (the op has no other).

    Differs from ``torch.nn.LSTMCell``: gate order i, j, f, o; one stacked kernel;
    ``forget_bias`` added at run time; optional peepholes and cell clipping.
    """

    _gates = 4  # kernel columns i, j, f, o per unit

    def __init__(
        self,
        num_units: int,
        forget_bias: float = 1.0,
        cell_clip: float | None = None,
        use_peephole: bool = False,
        dtype: torch.dtype | None = None,
        reuse: Any = None,
        name: str = "lstm_cell",
        *,
        input_size: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        owner = type(self).__name__
        forget = check_finite_float(owner, "forget_bias", forget_bias)
        clip = _check_cell_clip(owner, cell_clip)
        if not isinstance(use_peephole, bool):
            raise TypeError(f"{owner}: use_peephole must be a bool, got {use_peephole!r}")
        self.use_peephole = use_peephole  # read by _create_parameters, inside __init__ below
        super().__init__(
            check_num_units(owner, num_units),
            input_size=input_size,
            dtype=dtype,
            device=device,
            name=name,
            reuse=reuse,
        )
        self.forget_bias = forget
        self.cell_clip = clip

    def _declare_parameters(self) -> None:
        super()._declare_parameters()
        if self.use_peephole:
            for pname in _PEEPHOLES:
                self.register_parameter(pname, None)

    @property
    def state_size(self) -> LSTMStateTuple:
        return LSTMStateTuple(self.num_units, self.num_units)

    def _create_parameters(self, input_size: int, *, dtype, device) -> None:
        super()._create_parameters(input_size, dtype=dtype, device=device)  # kernel, bias
        if self.use_peephole:
            for pname in _PEEPHOLES:
                diag = torch.empty(self.num_units, dtype=dtype, device=device)
                with torch.no_grad():
                    uniform_diagonal_(diag)
                setattr(self, pname, nn.Parameter(diag))

    def _step(self, inputs: Tensor, c: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """One step of the op on checked tensors: (c', h')."""
        i, ci, f, o = dense(self, inputs, h).chunk(4, dim=1)  # each [B, H]
        if self.use_peephole:
            i = i + self.w_i_diag * c
            f = f + self.w_f_diag * c
        new_c = torch.sigmoid(f + self.forget_bias) * c + torch.sigmoid(i) * torch.tanh(ci)
        new_c = straight_through_clip(new_c, self.cell_clip)
        if self.use_peephole:
            o = o + self.w_o_diag * new_c
        return new_c, torch.tanh(new_c) * torch.sigmoid(o)

    def forward(self, inputs: Tensor, state: Any) -> tuple[Tensor, LSTMStateTuple]:
        self._prepare(inputs, state)
        c, h = state
        new_c, new_h = self._step(inputs, c, h)
        return new_h, LSTMStateTuple(new_c, new_h)

    def extra_repr(self) -> str:
        clip = None if self.cell_clip <= 0 else self.cell_clip
        return (
            f"{super().extra_repr()}, forget_bias={self.forget_bias}, cell_clip={clip}, "
            f"use_peephole={self.use_peephole}"
        )


class LSTMBlockFusedCell(LSTMBlockCell):
    """``tf.contrib.rnn.LSTMBlockFusedCell``: the whole sequence in one call (TF's BlockLSTM op).

        outputs, final_state = cell(inputs, initial_state=None, dtype=None, sequence_length=None)

    The same step as :class:`LSTMBlockCell` (same parameters, default TF scope
    ``lstm_fused_cell``), but called once on a **time-major** sequence, as TF1's
    ``LSTMBlockWrapper.call``: inputs [T, B, input_size]; ``initial_state`` a pair ``(c, h)`` of
    [B, H] (zeros of ``dtype``, default the inputs' dtype, when None); ``sequence_length`` [B]
    integers in [0, T]. Returns outputs [T, B, H], zero at and past each row's length, and
    ``LSTMStateTuple(c, h)`` at step ``length - 1`` (the initial state for length 0).

    It is not a per-step cell: ``dynamic_rnn`` and ``MultiRNNCell`` take :class:`LSTMBlockCell`,
    whose variables are the same (only the scope name differs). The call runs that step through
    ``dynamic_rnn``, so it uses the fused kernels when there are no peepholes and no clipping.
    """

    def __init__(
        self,
        num_units: int,
        forget_bias: float = 1.0,
        cell_clip: float | None = None,
        use_peephole: bool = False,
        reuse: Any = None,
        dtype: torch.dtype | None = None,
        name: str = "lstm_fused_cell",
        *,
        input_size: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(
            num_units,
            forget_bias=forget_bias,
            cell_clip=cell_clip,
            use_peephole=use_peephole,
            dtype=dtype,
            reuse=reuse,
            name=name,
            input_size=input_size,
            device=device,
        )

    def forward(  # type: ignore[override]
        self,
        inputs: Tensor,
        initial_state: Any = None,
        dtype: torch.dtype | None = None,
        sequence_length: Any = None,
    ) -> tuple[Tensor, LSTMStateTuple]:
        owner = type(self).__name__
        if not isinstance(inputs, Tensor) or inputs.dim() != 3 or not inputs.is_floating_point():
            got = (
                f"shape {tuple(inputs.shape)} dtype {inputs.dtype}"
                if isinstance(inputs, Tensor)
                else type(inputs).__name__
            )
            raise ValueError(
                f"{owner}: inputs must be a floating time-major tensor [time, batch, depth] "
                f"(the whole sequence; use LSTMBlockCell for one step), got {got}"
            )
        if dtype is not None and dtype != inputs.dtype:
            raise TypeError(f"{owner}: dtype {dtype} does not match the inputs' {inputs.dtype}")
        max_time, batch = inputs.shape[0], inputs.shape[1]
        if not self.built:
            self.build(inputs.shape[2], dtype=inputs.dtype, device=inputs.device)
        if initial_state is None:
            zeros = inputs.new_zeros(batch, self.num_units)
            initial_state = LSTMStateTuple(zeros, zeros)
        else:
            if not isinstance(initial_state, tuple) or len(initial_state) != 2:
                raise ValueError(
                    f"{owner}: initial_state must be a pair (c, h) or None, got "
                    f"{type(initial_state).__name__}"
                )
            initial_state = LSTMStateTuple(*initial_state)
            check_state(owner, "initial_state", initial_state, self.state_size, batch)
        # Imported here because rnnflow.recurrence imports rnnflow.cells.
        from rnnflow.recurrence._masking import check_sequence_length
        from rnnflow.recurrence.dynamic_rnn import dynamic_rnn

        lengths = check_sequence_length(
            owner, sequence_length, batch=batch, max_time=max_time, device=inputs.device
        )
        # TF's BlockLSTM runs every row to max(lengths); LSTMBlockWrapper then zeroes outputs
        # past each length and gathers the state at step length - 1, which is dynamic_rnn's
        # contract exactly. dynamic_rnn runs this cell's step (seen as an LSTMBlockCell sharing
        # the parameters), on the fused kernels where fusable() allows.
        step = copy.copy(self)
        step.__class__ = LSTMBlockCell
        outputs, state = dynamic_rnn(
            step, inputs, sequence_length=lengths, initial_state=initial_state, time_major=True
        )
        return outputs, state
