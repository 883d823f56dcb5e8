"""ResidualWrapper: a cell whose output adds its inputs, as TF1's wrapper."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from rnnflow.cells._wrapper import CellWrapper
from rnnflow.cells.base import RNNCell

ResidualFn = Callable[[Tensor, Tensor], Tensor]


class ResidualWrapper(CellWrapper):
    """Adds a cell's inputs to its outputs, as ``tf.nn.rnn_cell.ResidualWrapper``.

        y, s' = cell(x, s)
        output = residual_fn(x, y)          # default: x + y; the state is the cell's, unchanged

    ``residual_fn(inputs, outputs)`` gets the raw inputs the wrapper received (before anything
    the wrapped cell does, e.g. an inner ``DropoutWrapper``'s input dropout) and the cell's
    outputs. As in TF1 (r1.15 ``rnn_cell_impl.py``), the default checks that both have the same
    shape, so the cell's ``output_size`` must equal the input depth. ``state_size``,
    ``output_size``, ``zero_state`` and the parameters (``cell.<name>``, no TF scope of its own)
    are the wrapped cell's.

    Shapes: inputs [B, D], state as the cell's -> output [B, D] (D == cell.output_size), state.
    Inputs on another device than the outputs (e.g. around a ``DeviceWrapper``) are moved to
    the outputs' device for the sum.

    Raises:
        TypeError: ``cell`` is not an ``RNNCell``; ``residual_fn`` is neither None nor
            callable; ``residual_fn`` returns something other than a tensor.
        ValueError: (default ``residual_fn``) inputs and outputs of different shapes;
            (any ``residual_fn``) a result that is not [B, output_size].
    """

    def __init__(self, cell: RNNCell, residual_fn: ResidualFn | None = None) -> None:
        super().__init__(cell)
        if residual_fn is not None and not callable(residual_fn):
            raise TypeError(
                f"ResidualWrapper: residual_fn must be callable or None, got {residual_fn!r}"
            )
        self.residual_fn = residual_fn

    def forward(self, inputs: Tensor, state: Any) -> tuple[Tensor, Any]:
        outputs, new_state = self.cell(inputs, state)
        if self.residual_fn is None:
            if not isinstance(outputs, Tensor) or inputs.shape != outputs.shape:
                shape = tuple(outputs.shape) if isinstance(outputs, Tensor) else type(outputs)
                raise ValueError(
                    "ResidualWrapper: the default residual_fn adds inputs and outputs, which "
                    f"must have the same shape; got inputs {tuple(inputs.shape)} and the "
                    f"cell's outputs {shape} (make the cell's num_units the input depth, or "
                    "pass residual_fn=)"
                )
            return inputs.to(outputs.device) + outputs, new_state
        result = self.residual_fn(inputs, outputs)
        if not isinstance(result, Tensor):
            raise TypeError(
                f"ResidualWrapper: residual_fn must return a torch.Tensor, "
                f"got {type(result).__name__}"
            )
        expected = (inputs.shape[0], self.output_size)
        if tuple(result.shape) != expected:
            raise ValueError(
                f"ResidualWrapper: residual_fn must return shape {expected} "
                f"[batch, cell.output_size], got {tuple(result.shape)}"
            )
        return result, new_state

    def extra_repr(self) -> str:
        return "residual_fn=" + ("None (inputs + outputs)" if self.residual_fn is None else "given")
