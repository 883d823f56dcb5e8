"""rnnflow: TensorFlow-1 RNN cells and ``dynamic_rnn`` on PyTorch, numerically equal to TF1.

The names below are imported on first use (PEP 562), so that ``import rnnflow.cli`` (and
``rnnflow --help``) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rnnflow._lazy_names import lazy_names as _lazy_names

if TYPE_CHECKING:
    from rnnflow.cells import (
        BasicLSTMCell,
        BasicRNNCell,
        CudnnCompatibleGRUCell,
        CudnnCompatibleLSTMCell,
        DeviceWrapper,
        DropoutWrapper,
        GRUBlockCell,
        GRUBlockCellV2,
        GRUCell,
        LayerNormBasicLSTMCell,
        LSTMBlockCell,
        LSTMBlockFusedCell,
        LSTMCell,
        LSTMStateTuple,
        MultiRNNCell,
        ResidualWrapper,
        RNNCell,
    )
    from rnnflow.recurrence import (
        bidirectional_dynamic_rnn,
        dynamic_rnn,
        raw_rnn,
        stack_bidirectional_dynamic_rnn,
        stack_bidirectional_rnn,
        static_bidirectional_rnn,
        static_rnn,
        static_state_saving_rnn,
    )

__version__ = "0.1.0"

__all__ = [
    "RNNCell",
    "BasicRNNCell",
    "BasicLSTMCell",
    "LSTMStateTuple",
    "LSTMCell",
    "GRUCell",
    "MultiRNNCell",
    "DropoutWrapper",
    "ResidualWrapper",
    "DeviceWrapper",
    "LSTMBlockCell",
    "LSTMBlockFusedCell",
    "GRUBlockCell",
    "GRUBlockCellV2",
    "LayerNormBasicLSTMCell",
    "CudnnCompatibleLSTMCell",
    "CudnnCompatibleGRUCell",
    "dynamic_rnn",
    "bidirectional_dynamic_rnn",
    "static_rnn",
    "static_bidirectional_rnn",
    "static_state_saving_rnn",
    "raw_rnn",
    "stack_bidirectional_dynamic_rnn",
    "stack_bidirectional_rnn",
]

# the public names defined in rnnflow.recurrence; every other one is in rnnflow.cells
_RECURRENCE = {
    "dynamic_rnn",
    "bidirectional_dynamic_rnn",
    "static_rnn",
    "static_bidirectional_rnn",
    "static_state_saving_rnn",
    "raw_rnn",
    "stack_bidirectional_dynamic_rnn",
    "stack_bidirectional_rnn",
}
_HOME = {n: "rnnflow.recurrence" if n in _RECURRENCE else "rnnflow.cells" for n in __all__}

__getattr__, __dir__ = _lazy_names(__name__, _HOME, __all__)
