"""``tf.contrib.rnn.GRUBlockCellV2`` and ``GRUBlockCell``: TF's fused GRU op, GRUCell's maths."""

from __future__ import annotations

from typing import Any

import torch

from rnnflow.cells.base import check_num_units
from rnnflow.cells.gru import GRUCell


class GRUBlockCellV2(GRUCell):
    """GRU cell of ``tf.contrib.rnn.GRUBlockCellV2`` (TF's ``GRUBlockCell`` op per step).

        r, u = split(sigmoid([x, h] @ gates.kernel + gates.bias), 2)      # gates.bias starts at 1.0
        c    = tanh([x, r * h] @ candidate.kernel + candidate.bias)
        h'   = u * h + (1 - u) * c

    The op computes exactly :class:`GRUCell`'s formula (r1.15 ``contrib/rnn/python/ops/
    gru_ops.py``, GRUBlockCell docstring), and V2 names its variables as GRUCell does:
    ``<scope>/gru_cell/gates/{kernel,bias}``, ``<scope>/gru_cell/candidate/{kernel,bias}``, so a
    checkpoint of either loads into either. The activation is always tanh. ``cell_size`` is
    TF's deprecated alias of ``num_units`` (exactly one of them must be given).

    Shapes: inputs [B, input_size], state [B, num_units] -> output, state: [B, num_units].
    """

    def __init__(
        self,
        num_units: int | None = None,
        cell_size: int | None = None,
        reuse: Any = None,
        name: str = "gru_cell",
        *,
        input_size: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if (num_units is None) == (cell_size is None):
            raise ValueError(
                "GRUBlockCellV2: exactly one of num_units or cell_size must be given, got "
                f"num_units={num_units!r}, cell_size={cell_size!r}"
            )
        super().__init__(
            check_num_units("GRUBlockCellV2", num_units if num_units is not None else cell_size),
            reuse=reuse,
            name=name,
            dtype=dtype,
            input_size=input_size,
            device=device,
        )


class GRUBlockCell(GRUBlockCellV2):
    """``tf.contrib.rnn.GRUBlockCell`` (V1): :class:`GRUBlockCellV2` with r1.15's V1 names.

    The same maths and parameters (``gates.kernel`` etc.); only the TF variable names differ:
    ``<scope>/gru_cell/w_ru`` [input_size + H, 2H], ``b_ru`` [2H] (ones), ``w_c``
    [input_size + H, H], ``b_c`` [H] (zeros) (r1.15 ``gru_ops.py`` lines 174-191). Some older
    TF releases stored the two kernels under each other's names (``w_c`` for the gates); their
    shapes differ, so such a checkpoint is refused with a shape error, never loaded wrongly.
    """
