"""The names of the classifier's cell kinds and initialisations: the one list that the model
(``models.classifier``) and the run config (``training.config``, whose parsers must not import
torch) both read."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["CELL_KINDS", "CONV_BRANCHES", "INITS", "CellKind", "ConvBranch", "Init"]

# rnn: BasicRNNCell; lstm: BasicLSTMCell; gru: GRUCell; lstm_cell: tf.nn.rnn_cell.LSTMCell; the
# tf.contrib cells: lstm_block (LSTMBlockCell), gru_block (GRUBlockCellV2), layer_norm_lstm
# (LayerNormBasicLSTMCell), cudnn_lstm / cudnn_gru (CudnnCompatibleLSTMCell / GRUCell).
CellKind = Literal[
    "rnn",
    "lstm",
    "gru",
    "lstm_cell",
    "lstm_block",
    "gru_block",
    "layer_norm_lstm",
    "cudnn_lstm",
    "cudnn_gru",
]
Init = Literal["normal", "glorot"]
# a convolutional branch beside the recurrent network (rnnflow.models.fcn): none, LSTM-FCN's
# (three masked conv blocks with batch norm), or MLSTM-FCN's (the same with squeeze-and-excitation)
ConvBranch = Literal["none", "fcn", "fcn-se"]
CELL_KINDS: tuple[str, ...] = get_args(CellKind)
INITS: tuple[str, ...] = get_args(Init)
CONV_BRANCHES: tuple[str, ...] = get_args(ConvBranch)
