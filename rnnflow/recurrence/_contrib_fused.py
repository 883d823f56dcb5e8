"""The tf.contrib cells whose maths is a built-in cell's, seen as that cell by the fused path.

``LSTMBlockCell`` (and ``CudnnCompatibleLSTMCell``) without peepholes or clipping computes
``BasicLSTMCell``'s step (tanh, state tuple, ``forget_bias`` at run time); ``GRUBlockCell(V2)`` is
``GRUCell``'s. :func:`builtin_view` returns a shallow copy of such a cell whose class is the
built-in one: it shares the very same ``Parameter`` objects (gradients reach the contrib cell),
costs no copy of any tensor, and is never registered anywhere. Other contrib cells are returned
unchanged, and :func:`contrib_reason` says why the fused path does not take them.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from rnnflow.cells.basic_lstm import BasicLSTMCell
from rnnflow.cells.cudnn_compatible import CudnnCompatibleGRUCell
from rnnflow.cells.gru import GRUCell
from rnnflow.cells.gru_block import GRUBlockCell, GRUBlockCellV2
from rnnflow.cells.layer_norm_lstm import LayerNormBasicLSTMCell
from rnnflow.cells.lstm_block import LSTMBlockCell, LSTMBlockFusedCell


def builtin_view(cell: Any) -> Any:
    """``cell`` seen as the built-in cell with the same maths, or ``cell`` itself."""
    if type(cell) in (GRUBlockCellV2, GRUBlockCell):
        view = copy.copy(cell)
        view.__class__ = GRUCell
        return view
    if (
        isinstance(cell, LSTMBlockCell)
        and not isinstance(cell, LSTMBlockFusedCell)
        and not cell.use_peephole
        and cell.cell_clip <= 0
    ):
        view = copy.copy(cell)
        view.__class__ = BasicLSTMCell
        view.state_is_tuple = True
        view._activation = torch.tanh
        return view
    return cell


def contrib_reason(cell: Any) -> str | None:
    """Why the fused path has no kernel for a contrib cell ``builtin_view`` left as it is."""
    name = type(cell).__name__
    if isinstance(cell, LSTMBlockFusedCell):
        return f"{name} runs whole sequences itself (use LSTMBlockCell in dynamic_rnn)"
    if isinstance(cell, LSTMBlockCell):
        clip = cell.cell_clip if cell.cell_clip > 0 else None
        return (
            f"no fused kernel for {name} with use_peephole={cell.use_peephole}, "
            f"cell_clip={clip} (only without peepholes and clipping)"
        )
    if isinstance(cell, LayerNormBasicLSTMCell):
        return f"no fused kernel for {name} (layer normalisation)"
    if isinstance(cell, CudnnCompatibleGRUCell):
        return f"no fused kernel for {name} (cuDNN's reset-after GRU)"
    return None
