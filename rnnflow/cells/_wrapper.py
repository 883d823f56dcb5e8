"""What TF1's cell wrappers share: one wrapped cell, its sizes, its building and its zero state."""

from __future__ import annotations

from typing import Any, SupportsIndex

import torch

from rnnflow.cells.base import RNNCell, State, StateSize, build_cell, check_wrapped_cell


class CellWrapper(RNNCell):
    """A cell around one ``cell`` (registered as ``self.cell``), as TF1's ``RNNCell`` wrappers.

    ``state_size``, ``output_size``, ``built``/``build`` and ``zero_state`` are the wrapped
    cell's; the wrapper adds no variable scope, so its parameters are ``cell.<name>``. Subclasses
    define ``forward``.

    Raises:
        TypeError: ``cell`` is not an ``nn.Module`` with a ``state_size`` (an ``RNNCell``).
    """

    def __init__(self, cell: RNNCell) -> None:
        super().__init__()
        check_wrapped_cell(type(self).__name__, cell)
        self.cell = cell

    @property
    def wrapped_cell(self) -> RNNCell:
        """The cell inside (TF1's ``wrapped_cell``)."""
        return self.cell

    @property
    def built(self) -> bool:
        return getattr(self.cell, "built", True)

    def build(
        self, input_size: int, *, dtype: torch.dtype, device: torch.device | str | None
    ) -> None:
        build_cell(self.cell, input_size, dtype=dtype, device=device)

    @property
    def state_size(self) -> StateSize:
        return self.cell.state_size

    @property
    def output_size(self) -> Any:
        return self.cell.output_size

    def zero_state(
        self,
        batch_size: SupportsIndex,
        dtype: torch.dtype | None = None,
        *,
        device: torch.device | str | None = None,
    ) -> State:
        """The wrapped cell's ``zero_state`` (TF1's wrappers delegate it)."""
        return self._inner_zero_state(self.cell, batch_size, dtype, device)
