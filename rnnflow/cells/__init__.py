"""TensorFlow-1 RNN cells as PyTorch modules, with TF's parameter names and layouts."""

from rnnflow.cells.base import RNNCell, State, StateSize
from rnnflow.cells.basic_lstm import BasicLSTMCell, LSTMStateTuple
from rnnflow.cells.basic_rnn import BasicRNNCell
from rnnflow.cells.cudnn_compatible import CudnnCompatibleGRUCell, CudnnCompatibleLSTMCell
from rnnflow.cells.device import DeviceWrapper
from rnnflow.cells.dropout import DropoutWrapper
from rnnflow.cells.gru import GRUCell
from rnnflow.cells.gru_block import GRUBlockCell, GRUBlockCellV2
from rnnflow.cells.layer_norm_lstm import LayerNormBasicLSTMCell
from rnnflow.cells.lstm import LSTMCell
from rnnflow.cells.lstm_block import LSTMBlockCell, LSTMBlockFusedCell
from rnnflow.cells.multi import MultiRNNCell
from rnnflow.cells.residual import ResidualWrapper

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
    "ResidualWrapper",
    "DeviceWrapper",
    "LSTMBlockCell",
    "LSTMBlockFusedCell",
    "GRUBlockCell",
    "GRUBlockCellV2",
    "LayerNormBasicLSTMCell",
    "CudnnCompatibleLSTMCell",
    "CudnnCompatibleGRUCell",
]
