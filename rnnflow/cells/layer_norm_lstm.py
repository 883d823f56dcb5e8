"""``tf.contrib.rnn.LayerNormBasicLSTMCell``: a basic LSTM with layer norm per gate and
recurrent dropout on the candidate (r1.15 ``tensorflow/contrib/rnn/python/ops/rnn_cell.py``
lines 1342-1463; the norm is ``tf.contrib.layers.layer_norm``, ``contrib/layers/python/layers/
layers.py`` lines 2275-2333, with ``tf.nn.moments`` and ``tf.nn.batch_normalization``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rnnflow.cells._dense import glorot_uniform_
from rnnflow.cells._lazy import LazyCell
from rnnflow.cells.base import (
    Activation,
    check_finite_float,
    check_num_units,
    resolve_activation,
)
from rnnflow.cells.basic_lstm import LSTMStateTuple
from rnnflow.cells.lstm_block import uniform_diagonal_

_NORMS = ("input", "transform", "forget", "output", "state")  # TF's variable scopes, in order


def _layer_norm(x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
    """TF's ``layer_norm`` over the last axis, in ``batch_normalization``'s operation order:
    ``x * inv + (beta - mean * inv)`` with ``inv = rsqrt(var + eps) * gamma``; eps is 1e-12, or
    1e-3 for float16, whose moments TF computes in float32 (layers.py line 2322, nn_impl.py
    ``moments``)."""
    y = x.float() if x.dtype == torch.float16 else x
    mean = y.mean(dim=1, keepdim=True)  # [B, 1]
    var = (y - mean).square().mean(dim=1, keepdim=True)  # [B, 1]
    mean, var = mean.to(x.dtype), var.to(x.dtype)
    eps = 1e-3 if x.dtype == torch.float16 else 1e-12
    inv = torch.rsqrt(var + eps) * gamma  # [B, H]
    return x * inv + (beta - mean * inv)


class LayerNormBasicLSTMCell(LazyCell):
    """LSTM with layer normalisation and recurrent dropout, as
    ``tf.contrib.rnn.LayerNormBasicLSTMCell``.

        i, j, f, o = split([x, h] @ kernel (+ bias if not layer_norm), 4)
        i, j, f, o = LN_input(i), LN_transform(j), LN_forget(f), LN_output(o)   # if layer_norm
        g  = dropout(activation(j), dropout_keep_prob)                         # training only
        c' = c * sigmoid(f + forget_bias) + sigmoid(i) * g
        c' = LN_state(c')                                                      # if layer_norm
        h' = activation(c') * sigmoid(o)

    ``LN_s(x) = (x - mean(x)) / sqrt(var(x) + 1e-12) * s.gamma + s.beta`` over the units of each
    row (Ba et al. 2016); float16 uses 1e-3, as TF. Recurrent dropout (Semeniuta et al. 2016)
    draws a new mask at every step, scales kept units by ``1 / dropout_keep_prob`` and, as
    rnnflow's DropoutWrapper, acts only in training mode (``module.train()``);
    ``dropout_prob_seed`` seeds it.

    Parameters (TF names under the scope ``layer_norm_basic_lstm_cell``): ``kernel``
    [input_size + H, 4H] (Glorot-uniform); with ``layer_norm`` ``input.gamma``,
    ``input.beta``, ... ``state.beta`` [H] (initialised to ``norm_gain`` and ``norm_shift``);
    without it ``bias`` [4H] (TF's default initialiser for it: U(-sqrt(3/4H), sqrt(3/4H))).

    ``input_size``: TF's deprecated, unused argument; here, as for every rnnflow cell, the input
    depth that builds the parameters at once.

    Shapes: inputs [B, input_size]; state ``LSTMStateTuple(c [B, H], h [B, H])``; output [B, H].
    """

    def __init__(
        self,
        num_units: int,
        forget_bias: float = 1.0,
        input_size: int | None = None,
        activation: Activation | str | None = None,
        layer_norm: bool = True,
        norm_gain: float = 1.0,
        norm_shift: float = 0.0,
        dropout_keep_prob: float = 1.0,
        dropout_prob_seed: int | None = None,
        reuse: Any = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        owner = "LayerNormBasicLSTMCell"
        if not isinstance(layer_norm, bool):
            raise TypeError(f"{owner}: layer_norm must be a bool, got {layer_norm!r}")
        keep = dropout_keep_prob
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0.0 < keep <= 1.0:
            raise ValueError(f"{owner}: dropout_keep_prob must be a float in (0, 1], got {keep!r}")
        if dropout_prob_seed is not None and (
            isinstance(dropout_prob_seed, bool) or not isinstance(dropout_prob_seed, int)
        ):
            raise TypeError(
                f"{owner}: dropout_prob_seed must be an int or None, got {dropout_prob_seed!r}"
            )
        # Plain attributes read by the build inside LazyCell.__init__.
        self.layer_norm = layer_norm
        self.norm_gain = check_finite_float(owner, "norm_gain", norm_gain)
        self.norm_shift = check_finite_float(owner, "norm_shift", norm_shift)
        act = resolve_activation(owner, activation)
        super().__init__(
            check_num_units(owner, num_units),
            input_size=input_size,
            dtype=dtype,
            device=device,
            name=None,
            reuse=reuse,
            activation=act,
        )
        self.forget_bias = check_finite_float(owner, "forget_bias", forget_bias)
        self.dropout_keep_prob = float(keep)
        self.dropout_prob_seed = dropout_prob_seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def _declare_parameters(self) -> None:
        self.register_parameter("kernel", None)
        if not self.layer_norm:
            self.register_parameter("bias", None)
            return
        for scope in _NORMS:
            part = nn.Module()
            part.register_parameter("gamma", None)
            part.register_parameter("beta", None)
            setattr(self, scope, part)

    @property
    def state_size(self) -> LSTMStateTuple:
        return LSTMStateTuple(self.num_units, self.num_units)

    def _create_parameters(self, input_size: int, *, dtype, device) -> None:
        units = self.num_units
        kernel = torch.empty(input_size + units, 4 * units, dtype=dtype, device=device)
        with torch.no_grad():
            glorot_uniform_(kernel)
        self.kernel = nn.Parameter(kernel)
        if not self.layer_norm:
            bias = torch.empty(4 * units, dtype=dtype, device=device)
            with torch.no_grad():
                uniform_diagonal_(bias)
            self.bias = nn.Parameter(bias)
            return
        for scope in _NORMS:
            part = getattr(self, scope)
            part.gamma = nn.Parameter(
                torch.full((units,), self.norm_gain, dtype=dtype, device=device)
            )
            part.beta = nn.Parameter(
                torch.full((units,), self.norm_shift, dtype=dtype, device=device)
            )

    def _norm(self, x: Tensor, scope: str) -> Tensor:
        part = getattr(self, scope)
        return _layer_norm(x, part.gamma, part.beta)

    def _dropout(self, g: Tensor) -> Tensor:
        keep = self.dropout_keep_prob
        if keep >= 1.0 or not self.training:
            return g
        generator = None
        if self.dropout_prob_seed is not None:
            if g.device not in self._generators:
                gen = torch.Generator(device=g.device).manual_seed(self.dropout_prob_seed)
                self._generators[g.device] = gen
            generator = self._generators[g.device]
        mask = torch.empty_like(g).bernoulli_(keep, generator=generator).div_(keep)
        return g * mask

    def forward(self, inputs: Tensor, state: Any) -> tuple[Tensor, LSTMStateTuple]:
        self._prepare(inputs, state)
        c, h = state
        concat = torch.cat([inputs, h], 1) @ self.kernel  # [B, 4H]
        if not self.layer_norm:
            concat = concat + self.bias
        i, j, f, o = concat.chunk(4, dim=1)  # each [B, H]
        if self.layer_norm:
            i, j = self._norm(i, "input"), self._norm(j, "transform")
            f, o = self._norm(f, "forget"), self._norm(o, "output")
        g = self._dropout(self._activation(j))
        new_c = c * torch.sigmoid(f + self.forget_bias) + torch.sigmoid(i) * g
        if self.layer_norm:
            new_c = self._norm(new_c, "state")
        new_h = self._activation(new_c) * torch.sigmoid(o)
        return new_h, LSTMStateTuple(new_c, new_h)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, forget_bias={self.forget_bias}, "
            f"layer_norm={self.layer_norm}, dropout_keep_prob={self.dropout_keep_prob}"
        )
