"""TensorFlow-1 RNN cells as PyTorch modules, with TF's parameter names and layouts."""

from rnnflow.cells.base import RNNCell, State, StateSize
from rnnflow.cells.basic_lstm import BasicLSTMCell, LSTMStateTuple
from rnnflow.cells.basic_rnn import BasicRNNCell
from rnnflow.cells.dropout import DropoutWrapper
from rnnflow.cells.gru import GRUCell
from rnnflow.cells.lstm import LSTMCell
from rnnflow.cells.multi import MultiRNNCell

__all__ = [
    "RNNCell",
    "State",
    "StateSize",
    "BasicRNNCell",
    "BasicLSTMCell",
    "LSTMStateTuple",
    "LSTMCell",
    "GRUCell",
    "MultiRNNCell",
    "DropoutWrapper",
]
