"""MultiRNNCell: a stack of cells that is itself a cell."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, SupportsIndex

import torch
from torch import Tensor

from rnnflow.cells.base import RNNCell, StateSize, build_cell, check_int, check_state


class MultiRNNCell(RNNCell):
    """Cells applied in sequence at every step, as ``tf.nn.rnn_cell.MultiRNNCell``.

        x_0 = inputs;  x_{k+1}, s_k' = cell_k(x_k, s_k);  output = x_n

    Sub-cells are registered as ``cell_0``, ``cell_1``, ... (TF's scope names), so their
    parameters are ``cell_0.kernel`` and so on.

    State: a tuple with one state per cell (``state_is_tuple=True``), or, with
    ``state_is_tuple=False``, every cell's state concatenated on dim 1 (cells must then have
    plain, non-tuple states, as in TF1).
    """

    def __init__(self, cells: Sequence[RNNCell], state_is_tuple: bool = True) -> None:
        super().__init__()
        if isinstance(cells, RNNCell) or not isinstance(cells, Sequence) or len(cells) == 0:
            raise ValueError(
                f"MultiRNNCell: cells must be a non-empty list of cells, got {cells!r}"
            )
        for k, cell in enumerate(cells):
            if not isinstance(cell, torch.nn.Module) or not hasattr(cell, "state_size"):
                raise TypeError(
                    f"MultiRNNCell: cells[{k}] must be an RNNCell, got {type(cell).__name__}"
                )
        _check_no_shared_cells(cells)
        self.state_is_tuple = bool(state_is_tuple)
        if not self.state_is_tuple:
            for k, cell in enumerate(cells):
                if not isinstance(cell.state_size, int):
                    raise ValueError(
                        "MultiRNNCell: state_is_tuple=False needs cells with plain states, "
                        f"got cells[{k}].state_size={cell.state_size!r}"
                    )
        for k, cell in enumerate(cells):
            self.add_module(f"cell_{k}", cell)
        self._num_cells = len(cells)

    @property
    def cells(self) -> list[RNNCell]:
        return [getattr(self, f"cell_{k}") for k in range(self._num_cells)]

    def __len__(self) -> int:
        return self._num_cells

    @property
    def built(self) -> bool:
        return all(getattr(c, "built", True) for c in self.cells)

    def build(
        self, input_size: int, *, dtype: torch.dtype, device: torch.device | str | None
    ) -> None:
        for cell in self.cells:
            build_cell(cell, input_size, dtype=dtype, device=device)
            input_size = cell.output_size

    def zero_state(
        self,
        batch_size: SupportsIndex,
        dtype: torch.dtype | None = None,
        *,
        device: torch.device | str | None = None,
    ) -> Any:
        """Each cell's own ``zero_state`` (a tuple), as TF1; concatenated when not a tuple."""
        if not self.state_is_tuple:
            return super().zero_state(batch_size, dtype, device=device)
        check_int("MultiRNNCell.zero_state", "batch_size", batch_size, minimum=0)
        return tuple(self._inner_zero_state(cell, batch_size, dtype, device) for cell in self.cells)

    @property
    def state_size(self) -> StateSize:
        sizes = tuple(cell.state_size for cell in self.cells)
        return sizes if self.state_is_tuple else sum(sizes)  # type: ignore[arg-type]

    @property
    def output_size(self) -> int:
        return self.cells[-1].output_size

    def _split_state(self, state: Any) -> list[Any]:
        if self.state_is_tuple:
            return list(state)
        return list(state.split([cell.state_size for cell in self.cells], dim=1))

    def forward(self, inputs: Tensor, state: Any) -> tuple[Tensor, Any]:
        if isinstance(inputs, Tensor) and inputs.dim() == 2:
            check_state("MultiRNNCell", "state", state, self.state_size, inputs.shape[0])
        x = inputs
        new_states = []
        for cell, sub_state in zip(self.cells, self._split_state(state)):
            x, new_sub = cell(x, sub_state)
            new_states.append(new_sub)
        if self.state_is_tuple:
            return x, tuple(new_states)
        return x, torch.cat(new_states, dim=1)

    def extra_repr(self) -> str:
        return f"state_is_tuple={self.state_is_tuple}"


def _check_no_shared_cells(cells: Sequence[Any]) -> None:
    """Refuse a cell (or a cell inside a wrapper) that serves two layers, as in ``[cell] * n``.

    TF1 either shared one kernel between the layers silently (equal sizes) or failed with a
    variable-shape error; rnnflow refuses it at once.
    """
    owner: dict[int, int] = {}
    for k, cell in enumerate(cells):
        for module in cell.modules():
            if not hasattr(module, "state_size"):
                continue
            j = owner.setdefault(id(module), k)
            if j != k:
                raise ValueError(
                    f"MultiRNNCell: cells[{j}] and cells[{k}] are (or wrap) the same "
                    f"{type(module).__name__} object; a list like [cell] * n would share one "
                    "kernel between layers (TF1 shares it silently or fails with a shape error). "
                    f"Create one cell per layer: [{type(module).__name__}(...) for _ in range(n)]"
                )
