"""Shared plumbing of the built-in cells: TF1-style constructor extras and lazy building."""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import Tensor

from rnnflow.cells._dense import register_dense
from rnnflow.cells.base import Activation, RNNCell, State, check_optional_int, check_state


def _autocast_to(inputs: Tensor, param_dtype: torch.dtype) -> bool:
    """Whether ``inputs`` are in the dtype autocast computes float32 parameters in (the layers
    of a stack pass their outputs on in it)."""
    device_type = inputs.device.type
    return (
        param_dtype == torch.float32
        and device_type in ("cpu", "cuda")
        and torch.is_autocast_enabled(device_type)
        and inputs.dtype == torch.get_autocast_dtype(device_type)
    )


class LazyCell(RNNCell):
    """A cell whose parameters need the input depth: built now if ``input_size`` is given,
    else on the first call with the inputs' dtype and device (TF1 builds on first call too).

    Also what the built-in cells share: ``num_units``, the ``activation`` (tanh unless the
    subclass passes another; checked by the subclass with ``resolve_activation``) and an
    ``output_size`` of ``num_units`` (LSTMCell's projection overrides it)."""

    def __init__(
        self,
        num_units: int,
        *,
        input_size: int | None,
        dtype: torch.dtype | None,
        device: torch.device | str | None,
        name: str | None,
        reuse: Any,
        activation: Activation = torch.tanh,
    ) -> None:
        super().__init__()
        self._activation = activation
        owner = type(self).__name__
        input_size = check_optional_int(owner, "input_size", input_size)
        if dtype is not None and (
            not isinstance(dtype, torch.dtype) or not dtype.is_floating_point
        ):
            raise ValueError(
                f"{owner}: dtype must be a floating torch.dtype or None, got {dtype!r}"
            )
        self.num_units = num_units
        self.input_size = input_size
        self.name = name  # kept for TF1 name mapping; `reuse` has no meaning in eager PyTorch
        del reuse
        self._init_dtype = dtype
        self._declare_parameters()
        if input_size is not None:
            self.build(input_size, dtype=dtype or torch.get_default_dtype(), device=device)

    @property
    def activation(self) -> Activation:
        return self._activation

    @property
    def output_size(self) -> int:
        return self.num_units

    @property
    def built(self) -> bool:
        return self._built

    _built = False

    def build(
        self, input_size: int, *, dtype: torch.dtype, device: torch.device | str | None
    ) -> None:
        if self._built:
            return
        input_size = operator.index(input_size)  # e.g. a traced x.shape[-1]
        self.input_size = input_size
        # Outside inference mode: a cell first called (or made) under torch.inference_mode()
        # would otherwise hold inference tensors as parameters, which autograd refuses to save
        # for backward ever after ("Inference tensors cannot be saved for backward"): the cell
        # could never train. The values are the same (the same draws from the same generator).
        with torch.inference_mode(False):
            self._create_parameters(input_size, dtype=self._init_dtype or dtype, device=device)
        self._built = True

    # Kernel columns per unit of a one-kernel cell (BasicRNNCell 1; the LSTMs 4: i, j, f, o).
    _gates = 1

    def _declare_parameters(self) -> None:
        """Register the (not yet built) parameters as None so the attributes always exist."""
        self.register_parameter("kernel", None)
        self.register_parameter("bias", None)

    def _create_parameters(
        self, input_size: int, *, dtype: torch.dtype, device: torch.device | str | None
    ) -> None:
        """A one-kernel cell's parameters, TF's ``_linear``: ``kernel`` [input_size + recurrent
        depth, _gates * num_units] (Glorot-uniform) and ``bias`` (zeros)."""
        register_dense(
            self,
            input_size=input_size,
            num_units=self._recurrent_depth(),
            out_features=self._gates * self.num_units,
            dtype=dtype,
            device=device,
        )

    def _kernel_name(self) -> str:
        """The parameter whose first dimension is ``input_size + num_units``."""
        return "kernel"

    def _recurrent_depth(self) -> int:
        """The kernel's rows after the input rows: the width of the state fed back."""
        return self.num_units

    def _load_from_state_dict(self, state_dict, prefix, *args: Any, **kwargs: Any) -> None:
        # An unbuilt cell learns its input depth from the checkpoint's kernel, so that loading
        # works before the first call, as it does for built cells.
        kernel = state_dict.get(prefix + self._kernel_name())
        if not self._built and isinstance(kernel, Tensor) and kernel.dim() == 2:
            input_size = kernel.shape[0] - self._recurrent_depth()
            if input_size > 0:
                self.build(input_size, dtype=kernel.dtype, device=kernel.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _prepare(self, inputs: Tensor, state: State) -> None:
        """Build on first use, then check shapes and dtypes: errors here, not inside torch."""
        owner = type(self).__name__
        if not isinstance(inputs, Tensor) or inputs.dim() != 2:
            shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
            raise ValueError(f"{owner}: inputs must have shape [batch, depth], got {shape}")
        if not self._built:
            self.build(inputs.shape[1], dtype=inputs.dtype, device=inputs.device)
        if inputs.shape[1] != self.input_size:
            raise ValueError(
                f"{owner}: inputs must have depth {self.input_size} (the cell was built for it), "
                f"got shape {tuple(inputs.shape)}"
            )
        check_state(owner, "state", state, self.state_size, inputs.shape[0])
        found = self._param_dtype_device()
        if found is not None and inputs.dtype != found[0] and not _autocast_to(inputs, found[0]):
            raise TypeError(
                f"{owner}: inputs dtype must match the parameters' dtype {found[0]}, "
                f"got {inputs.dtype}"
            )

    def extra_repr(self) -> str:
        return f"num_units={self.num_units}, input_size={self.input_size}"
