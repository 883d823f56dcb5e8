"""LSTMCell: TF1's full LSTM cell with peepholes, cell clipping and an output projection."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from rnnflow.cells._dense import (
    Initializer,
    check_initializer,
    dense,
    glorot_uniform_,
    register_dense,
)
from rnnflow.cells._lazy import LazyCell
from rnnflow.cells.base import (
    Activation,
    check_finite_float,
    check_num_units,
    check_optional_int,
    resolve_activation,
)
from rnnflow.cells.basic_lstm import LSTMStateTuple

_PEEPHOLES = ("w_f_diag", "w_i_diag", "w_o_diag")  # TF's creation order


def _optional_clip(owner: str, name: str, value: Any) -> float | None:
    """``None`` or a positive finite number, as a float; else ValueError."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{owner}: {name} must be None or a positive finite number, got {value!r}")
    return float(value)


class LSTMCell(LazyCell):
    """LSTM cell with optional peepholes, cell clipping and projection, as
    ``tf.nn.rnn_cell.LSTMCell`` (r1.15 ``rnn_cell_impl.py``; Sak et al. 2014 for peepholes).

        i, j, f, o = split([x, m] @ kernel + bias, 4)                   # gate order i, j, f, o
        c' = sigmoid(f + forget_bias + w_f_diag * c) * c
             + sigmoid(i + w_i_diag * c) * activation(j)                 # w_*_diag: peepholes only
        c' = clip(c', -cell_clip, cell_clip)                             # if cell_clip
        m' = sigmoid(o + w_o_diag * c') * activation(c')
        m' = clip(m' @ projection.kernel, -proj_clip, proj_clip)         # if num_proj (proj_clip)

    Parameters (TF names; ``projection/kernel`` becomes ``projection.kernel``): ``kernel``
    [input_size + (num_proj or num_units), 4 * num_units], ``bias`` [4 * num_units] (zeros),
    ``w_f_diag``, ``w_i_diag``, ``w_o_diag`` [num_units] (with ``use_peepholes``),
    ``projection.kernel`` [num_units, num_proj] (with ``num_proj``). Every weight but the bias
    is Glorot-uniform (TF1's default; for the [H] peepholes fan_in = fan_out = H) unless
    ``initializer`` is given, which then fills all of them, as in TF. ``forget_bias`` is added
    at run time, not stored in ``bias``.

    Shapes: inputs [B, input_size]; state ``LSTMStateTuple(c [B, H], m [B, P])`` with
    P = ``num_proj or num_units``, or with ``state_is_tuple=False`` ``concat([c, m], 1)``
    [B, H + P]; output ``m'`` [B, P].

    Arguments as TF's; the integer ones (``num_units``, ``num_proj``, the shard counts,
    ``input_size``) take what ``operator.index`` takes (``np.int64``, a 0-d integer tensor) and
    refuse floats and bools (``check_int``). ``num_unit_shards``/``num_proj_shards`` are
    accepted (TF partitioned the variables with them; the maths is unchanged) and the
    parameters stay whole tensors.
    ``activation`` is a callable or a name (``"tanh"``, ``"relu"``, ...). ``**kwargs`` takes
    TF's layer keyword ``trainable`` (``False``: the parameters get ``requires_grad=False``);
    any other keyword raises ``TypeError``. Differs from TF on purpose: ``proj_clip`` without
    ``num_proj`` (ignored by TF) and non-positive clip values raise ``ValueError``.

    Differs from ``torch.nn.LSTM``: gate order i, j(=g), f, o instead of i, f, g, o; one stacked
    kernel and one bias; ``forget_bias`` added to the forget gate; peepholes and clipping, which
    PyTorch lacks; ``proj_size`` there is ``num_proj`` here, with the same ``m @ W_proj``.

    Raises:
        ValueError: a bad ``num_units``, ``num_proj``, shard count or clip value, a non-finite
            ``forget_bias``; an input of the wrong shape or a state of the wrong structure when
            called.
        TypeError: a non-number ``forget_bias``, a non-callable ``initializer``, an unknown
            keyword, or inputs of another dtype than the parameters.
    """

    def __init__(
        self,
        num_units: int,
        use_peepholes: bool = False,
        cell_clip: float | None = None,
        initializer: Initializer | None = None,
        num_proj: int | None = None,
        proj_clip: float | None = None,
        num_unit_shards: int | None = None,
        num_proj_shards: int | None = None,
        forget_bias: float = 1.0,
        state_is_tuple: bool = True,
        activation: Activation | str | None = None,
        reuse: Any = None,
        name: str | None = None,
        dtype: torch.dtype | None = None,
        *,
        input_size: int | None = None,
        device: torch.device | str | None = None,
        **kwargs: Any,
    ) -> None:
        owner = "LSTMCell"
        trainable = kwargs.pop("trainable", True)
        if kwargs:
            raise TypeError(
                f"{owner}: unexpected keyword arguments {sorted(kwargs)}; of TF's layer "
                "keywords only 'trainable' is accepted"
            )
        if not isinstance(trainable, bool):
            raise TypeError(f"{owner}: trainable must be a bool, got {trainable!r}")
        if not isinstance(use_peepholes, bool):
            raise TypeError(f"{owner}: use_peepholes must be a bool, got {use_peepholes!r}")
        if not isinstance(state_is_tuple, bool):
            raise TypeError(f"{owner}: state_is_tuple must be a bool, got {state_is_tuple!r}")
        forget_bias = check_finite_float(owner, "forget_bias", forget_bias)
        check_initializer(owner, "initializer", initializer)
        cell_clip = _optional_clip(owner, "cell_clip", cell_clip)
        proj_clip = _optional_clip(owner, "proj_clip", proj_clip)
        num_proj = check_optional_int(owner, "num_proj", num_proj)
        num_unit_shards = check_optional_int(owner, "num_unit_shards", num_unit_shards)
        num_proj_shards = check_optional_int(owner, "num_proj_shards", num_proj_shards)
        if proj_clip is not None and num_proj is None:
            raise ValueError(
                f"{owner}: proj_clip={proj_clip} needs num_proj (TF ignores it without a "
                "projection); pass num_proj or drop proj_clip"
            )
        act = resolve_activation(owner, activation)
        # Plain attributes may be set before nn.Module.__init__; the build inside it needs them.
        self.use_peepholes = use_peepholes
        self.num_proj = num_proj
        self.trainable = trainable
        self._initializer = initializer
        super().__init__(
            check_num_units(owner, num_units),
            input_size=input_size,
            dtype=dtype,
            device=device,
            name=name,
            reuse=reuse,
            activation=act,
        )
        self.cell_clip = cell_clip
        self.proj_clip = proj_clip
        self.num_unit_shards = num_unit_shards
        self.num_proj_shards = num_proj_shards
        self.forget_bias = float(forget_bias)
        self.state_is_tuple = state_is_tuple

    @property
    def state_size(self) -> LSTMStateTuple | int:
        m_size = self.num_proj or self.num_units
        if self.state_is_tuple:
            return LSTMStateTuple(self.num_units, m_size)
        return self.num_units + m_size

    @property
    def output_size(self) -> int:
        return self.num_proj or self.num_units

    def _recurrent_depth(self) -> int:
        return self.num_proj or self.num_units

    def _declare_parameters(self) -> None:
        super()._declare_parameters()
        if self.use_peepholes:
            for pname in _PEEPHOLES:
                self.register_parameter(pname, None)
        if self.num_proj is not None:
            self.projection = nn.Module()
            self.projection.register_parameter("kernel", None)

    def _create_parameters(self, input_size: int, *, dtype, device) -> None:
        register_dense(
            self,
            input_size=input_size,
            num_units=self._recurrent_depth(),
            out_features=4 * self.num_units,
            kernel_initializer=self._initializer,
            dtype=dtype,
            device=device,
        )
        init = self._initializer or glorot_uniform_
        shapes = [(pname, self, (self.num_units,)) for pname in _PEEPHOLES if self.use_peepholes]
        if self.num_proj is not None:
            shapes.append(("kernel", self.projection, (self.num_units, self.num_proj)))
        for pname, owner, shape in shapes:
            value = torch.empty(shape, dtype=dtype, device=device)
            with torch.no_grad():
                init(value)
            owner.register_parameter(pname, nn.Parameter(value))
        if not self.trainable:
            self.requires_grad_(False)

    def forward(self, inputs: Tensor, state: Any) -> tuple[Tensor, Any]:
        self._prepare(inputs, state)
        if self.state_is_tuple:
            c_prev, m_prev = state
        else:
            c_prev, m_prev = state.split([self.num_units, self._recurrent_depth()], dim=1)
        i, j, f, o = dense(self, inputs, m_prev).chunk(4, dim=1)  # [B, H] each
        act = self._activation
        if self.use_peepholes:
            c = torch.sigmoid(
                f + self.forget_bias + self.w_f_diag * c_prev
            ) * c_prev + torch.sigmoid(i + self.w_i_diag * c_prev) * act(j)
        else:
            c = torch.sigmoid(f + self.forget_bias) * c_prev + torch.sigmoid(i) * act(j)
        if self.cell_clip is not None:
            c = c.clamp(-self.cell_clip, self.cell_clip)
        if self.use_peepholes:
            m = torch.sigmoid(o + self.w_o_diag * c) * act(c)
        else:
            m = torch.sigmoid(o) * act(c)
        if self.num_proj is not None:
            m = m @ self.projection.kernel  # [B, H] -> [B, P]
            if self.proj_clip is not None:
                m = m.clamp(-self.proj_clip, self.proj_clip)
        if self.state_is_tuple:
            return m, LSTMStateTuple(c, m)
        return m, torch.cat([c, m], dim=1)

    def extra_repr(self) -> str:
        extras = [f"forget_bias={self.forget_bias}", f"state_is_tuple={self.state_is_tuple}"]
        for key in ("use_peepholes", "cell_clip", "num_proj", "proj_clip"):
            value = getattr(self, key)
            if value:
                extras.append(f"{key}={value}")
        return ", ".join([super().extra_repr(), *extras])
