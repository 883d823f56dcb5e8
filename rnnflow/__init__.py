"""rnnflow: TensorFlow-1 RNN cells and ``dynamic_rnn`` on PyTorch, numerically equal to TF1."""

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
    LSTMStateTuple,
    MultiRNNCell,
    ResidualWrapper,
    RNNCell,
)
from rnnflow.recurrence import bidirectional_dynamic_rnn, dynamic_rnn

__version__ = "0.1.0"

__all__ = [
    "RNNCell",
    "BasicRNNCell",
    "BasicLSTMCell",
    "LSTMStateTuple",
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
]
