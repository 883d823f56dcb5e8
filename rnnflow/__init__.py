"""rnnflow: TensorFlow-1 RNN cells and ``dynamic_rnn`` on PyTorch, numerically equal to TF1."""

from rnnflow.cells import (
    BasicLSTMCell,
    BasicRNNCell,
    DeviceWrapper,
    DropoutWrapper,
    GRUCell,
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
    "dynamic_rnn",
    "bidirectional_dynamic_rnn",
]
