"""rnnflow: TensorFlow-1 RNN cells and ``dynamic_rnn`` on PyTorch, numerically equal to TF1."""

from rnnflow.cells import (
    BasicLSTMCell,
    BasicRNNCell,
    DropoutWrapper,
    GRUCell,
    LSTMCell,
    LSTMStateTuple,
    MultiRNNCell,
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
    "dynamic_rnn",
    "bidirectional_dynamic_rnn",
    "static_rnn",
    "static_bidirectional_rnn",
    "static_state_saving_rnn",
    "raw_rnn",
    "stack_bidirectional_dynamic_rnn",
    "stack_bidirectional_rnn",
]
