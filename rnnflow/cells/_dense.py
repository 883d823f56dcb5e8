"""TF1's ``_linear`` as cells use it: ``concat([x, h], 1) @ kernel + bias`` with one kernel.

TensorFlow stores a cell's input and recurrent weights stacked in a single kernel of shape
``[input_depth + num_units, k * num_units]`` (inputs first). Keeping that layout means TF1
variables copy in unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

Initializer = Callable[[Tensor], object]


def check_initializer(owner: str, argument: str, value: Any) -> Initializer | None:
    """``value`` if it is None or callable, else ``TypeError`` naming ``owner`` and ``argument``."""
    if value is not None and not callable(value):
        raise TypeError(f"{owner}: {argument} must be a callable or None, got {value!r}")
    return value


def glorot_uniform_(tensor: Tensor) -> Tensor:
    """TF1's default variable initialiser: U(-l, l), l = sqrt(6 / (fan_in + fan_out)).

    A vector [n] (LSTMCell's peepholes) has fan_in = fan_out = n, as TF's ``_compute_fans``.
    """
    if tensor.dim() == 1:
        limit = (3.0 / max(tensor.shape[0], 1)) ** 0.5
        return nn.init.uniform_(tensor, -limit, limit)
    return nn.init.xavier_uniform_(tensor)


def register_dense(
    module: nn.Module,
    *,
    input_size: int,
    num_units: int,
    out_features: int,
    dtype: torch.dtype,
    device: torch.device | str | None,
    kernel_initializer: Initializer | None = None,
    bias_initializer: Initializer | None = None,
    bias_value: float = 0.0,
) -> None:
    """Create ``module.kernel`` [input_size + num_units, out_features] (``kernel_initializer``,
    default Glorot-uniform) and ``module.bias`` [out_features] (``bias_initializer``, default
    the constant ``bias_value``)."""
    kernel = torch.empty(input_size + num_units, out_features, dtype=dtype, device=device)
    bias = torch.empty(out_features, dtype=dtype, device=device)
    with torch.no_grad():
        (kernel_initializer or glorot_uniform_)(kernel)
        if bias_initializer is None:
            bias.fill_(bias_value)
        else:
            bias_initializer(bias)
    module.kernel = nn.Parameter(kernel)
    module.bias = nn.Parameter(bias)


def dense(module: nn.Module, inputs: Tensor, state: Tensor) -> Tensor:
    """``concat([inputs, state], 1) @ kernel + bias``: [B, D] and [B, H] -> [B, out_features]."""
    return torch.addmm(module.bias, torch.cat([inputs, state], dim=1), module.kernel)
