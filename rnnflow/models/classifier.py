"""SequenceClassifier: input projection -> rnnflow cell(s) -> dynamic_rnn -> last output -> logits.

Configured as the TensorFlow-1 tutorial (``cell="rnn"``, 128 units, one layer, ``init="normal"``)
it is exactly the tutorial's graph::

    X [B, 28, 28] -> X @ weights_in + biases_in            # [B, 28, 128]
      -> dynamic_rnn(BasicRNNCell(128), zero initial state)
      -> final h @ weights_out + biases_out                # [B, 10] logits

Parameter names follow the tutorial's variables so a TF1 checkpoint maps on by name:
``weights_in`` [D, P], ``biases_in`` [P], ``weights_out`` [F, C], ``biases_out`` [C] (TF layout,
``x @ W + b``, unlike ``nn.Linear``'s ``x @ W.T + b``), and the recurrent part as ``cell``
(``cell.kernel``, ``cell.bias``, ...; ``cell.cell_0...`` for a MultiRNNCell, ``cell.cell...``
inside a DropoutWrapper). A bidirectional model has ``cell_fw`` and ``cell_bw`` instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from rnnflow.cells import (
    BasicLSTMCell,
    BasicRNNCell,
    DropoutWrapper,
    GRUCell,
    LSTMCell,
    MultiRNNCell,
)
from rnnflow.cells.base import RNNCell
from rnnflow.cells.cudnn_compatible import CudnnCompatibleGRUCell, CudnnCompatibleLSTMCell
from rnnflow.cells.gru_block import GRUBlockCellV2
from rnnflow.cells.layer_norm_lstm import LayerNormBasicLSTMCell
from rnnflow.cells.lstm_block import LSTMBlockCell
from rnnflow.models.cell_kinds import CELL_KINDS, CONV_BRANCHES, INITS, CellKind, ConvBranch, Init
from rnnflow.models.fcn import FCNBranch
from rnnflow.recurrence import bidirectional_dynamic_rnn, dynamic_rnn

__all__ = [
    "CELL_KINDS",
    "INITS",
    "POOLINGS",
    "Pooling",
    "SequenceClassifier",
    "append_deltas",
    "make_cell",
    "pool_outputs",
]

Pooling = Literal["last", "mean", "max", "last+max", "last+mean+max"]
POOLINGS: tuple[Pooling, ...] = get_args(Pooling)


def make_cell(
    kind: CellKind,
    num_units: int,
    *,
    input_size: int,
    num_layers: int = 1,
    keep_prob: float = 1.0,
    forget_bias: float = 1.0,
) -> RNNCell:
    """One rnnflow cell, or a ``MultiRNNCell`` of ``num_layers``; each layer's output wrapped in
    ``DropoutWrapper(output_keep_prob=keep_prob)`` when ``keep_prob < 1``. Built at once
    (``input_size`` given), so the parameters exist before an optimizer is created."""
    if kind not in CELL_KINDS:
        raise ValueError(f"make_cell: kind must be one of {CELL_KINDS}, got {kind!r}")
    cells: list[RNNCell] = []
    for layer in range(num_layers):
        depth = input_size if layer == 0 else num_units
        cell: RNNCell
        if kind == "rnn":
            cell = BasicRNNCell(num_units, input_size=depth)
        elif kind == "lstm":
            cell = BasicLSTMCell(num_units, forget_bias=forget_bias, input_size=depth)
        elif kind == "lstm_cell":  # tf.nn.rnn_cell.LSTMCell: TF variables .../lstm_cell/...
            cell = LSTMCell(num_units, forget_bias=forget_bias, input_size=depth)
        elif kind == "gru":
            cell = GRUCell(num_units, input_size=depth)
        elif kind == "lstm_block":  # tf.contrib.rnn.LSTMBlockCell: TF variables .../lstm_cell/...
            cell = LSTMBlockCell(num_units, forget_bias=forget_bias, input_size=depth)
        elif kind == "gru_block":  # tf.contrib.rnn.GRUBlockCellV2: .../gru_cell/...
            cell = GRUBlockCellV2(num_units, input_size=depth)
        elif kind == "layer_norm_lstm":  # tf.contrib.rnn.LayerNormBasicLSTMCell
            cell = LayerNormBasicLSTMCell(num_units, forget_bias=forget_bias, input_size=depth)
        elif kind == "cudnn_lstm":  # tf.contrib.cudnn_rnn.CudnnCompatibleLSTMCell (no forget bias)
            cell = CudnnCompatibleLSTMCell(num_units, input_size=depth)
        else:  # cudnn_gru: tf.contrib.cudnn_rnn.CudnnCompatibleGRUCell (reset after the matmul)
            cell = CudnnCompatibleGRUCell(num_units, input_size=depth)
        if keep_prob < 1.0:
            cell = DropoutWrapper(cell, output_keep_prob=keep_prob)
        cells.append(cell)
    return cells[0] if num_layers == 1 else MultiRNNCell(cells)


class SequenceClassifier(nn.Module):
    """Classify a sequence [B, T, D] from the last valid output of a recurrent network.

        x_p    = x @ weights_in + biases_in                         # [B, T, P]
        out, _ = dynamic_rnn(cell, x_p, sequence_length)            # [B, T, H]
        h      = out[b, sequence_length[b] - 1]                     # [B, H] (top layer; h of LSTM)
        logits = h @ weights_out + biases_out                       # [B, C]

    Bidirectional: ``h = concat(out_fw[b, len - 1], out_bw[b, 0])`` ([B, 2H]), the last valid
    output of each direction. Without dropout the last valid output equals the final state's h,
    which is what the TF1 tutorial feeds to its output layer.

    ``pooling="mean"`` feeds the mean of the valid outputs instead (masked mean pooling):
    ``h = sum_{t < len} out[b, t] / len`` (each direction for a bidirectional model; a row of
    length 0 gives zeros), so every step reaches the output layer directly; ``"max"`` the
    per-feature maximum over the valid steps; ``"last+max"``, ``"last+mean+max"`` concatenate.

    Args:
        input_size: D, features per time step (28 pixels of a row).
        num_classes: C.
        cell: ``"rnn"`` (BasicRNNCell, tanh), ``"lstm"`` (BasicLSTMCell), ``"gru"`` (GRUCell)
            or ``"lstm_cell"`` (LSTMCell without peepholes or projection: the same function as
            BasicLSTMCell, under TF's ``lstm_cell`` variable names); the tf.contrib cells
            ``"lstm_block"`` (LSTMBlockCell), ``"gru_block"`` (GRUBlockCellV2),
            ``"layer_norm_lstm"`` (LayerNormBasicLSTMCell, layer norm on, its own recurrent
            dropout off), ``"cudnn_lstm"`` (CudnnCompatibleLSTMCell) or ``"cudnn_gru"``
            (CudnnCompatibleGRUCell, cuDNN's reset-after GRU).
        num_units: H, units per layer and direction.
        num_layers: stacked layers (a MultiRNNCell when > 1).
        bidirectional: run ``bidirectional_dynamic_rnn`` with two cells of the same kind.
        dropout: drop probability on each layer's outputs (DropoutWrapper); 0 disables it.
            Active only in ``train()`` mode.
        projection_size: P, width of the input projection (default: ``num_units``).
        init: ``"normal"``: projection weights ~ N(0, 1), biases 0.1 (the tutorial);
            ``"glorot"``: Glorot-uniform projection weights, zero biases. Cells keep TF1's own
            initialisers either way (Glorot-uniform kernels; GRU gate bias 1.0).
        forget_bias: the forget-gate bias of BasicLSTMCell, LSTMCell, LSTMBlockCell and
            LayerNormBasicLSTMCell (CudnnCompatibleLSTMCell has none, as cuDNN; GRUs ignore it).
        pooling: ``"last"`` (the last valid output: the tutorial), ``"mean"`` or ``"max"`` (the
            mean or the per-feature maximum of the valid outputs), or the concatenations
            ``"last+max"`` and ``"last+mean+max"`` (K parts: the output layer reads K * F
            features); :func:`pool_outputs` defines each.
        conv_branch: ``"none"``; ``"fcn"`` or ``"fcn-se"``: a convolutional branch beside the
            recurrent network, LSTM-FCN's or MLSTM-FCN's (:class:`rnnflow.models.fcn.FCNBranch`,
            masked to each length; ``"fcn-se"`` with squeeze-and-excitation), reading the inputs
            (before the projection); its 128 features are concatenated after the pooled recurrent
            ones (``weights_out`` [F + 128, C]). Its batch norm uses batch statistics in
            ``train()`` mode and running statistics in ``eval()`` mode.
        deltas: append each input channel's first difference as D more channels before
            everything else (:func:`append_deltas`; the projection and the branch read 2D),
            each scaled and shifted per channel by the buffers ``delta_scale`` and
            ``delta_shift`` [D] (1 and 0 until :meth:`set_delta_standardisation`).
    """

    def __init__(
        self,
        *,
        input_size: int = 28,
        num_classes: int = 10,
        cell: CellKind = "rnn",
        num_units: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        projection_size: int | None = None,
        init: Init = "normal",
        forget_bias: float = 1.0,
        pooling: Pooling = "last",
        conv_branch: ConvBranch = "none",
        deltas: bool = False,
    ) -> None:
        super().__init__()
        owner = "SequenceClassifier"
        for name, value in (
            ("input_size", input_size),
            ("num_classes", num_classes),
            ("num_units", num_units),
            ("num_layers", num_layers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
        if projection_size is not None and (
            isinstance(projection_size, bool)
            or not isinstance(projection_size, int)
            or projection_size <= 0
        ):
            raise ValueError(
                f"{owner}: projection_size must be a positive int or None, got {projection_size!r}"
            )
        if cell not in CELL_KINDS:
            raise ValueError(f"{owner}: cell must be one of {CELL_KINDS}, got {cell!r}")
        if init not in INITS:
            raise ValueError(f"{owner}: init must be one of {INITS}, got {init!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"{owner}: pooling must be one of {POOLINGS}, got {pooling!r}")
        if conv_branch not in CONV_BRANCHES:
            raise ValueError(
                f"{owner}: conv_branch must be one of {CONV_BRANCHES}, got {conv_branch!r}"
            )
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, int | float)
            or not (0.0 <= dropout < 1.0)
        ):
            raise ValueError(f"{owner}: dropout must be a float in [0, 1), got {dropout!r}")
        self.input_size = input_size
        self.num_classes = num_classes
        self.cell_kind = cell
        self.num_units = num_units
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = float(dropout)
        self.projection_size = projection_size or num_units
        self.init = init
        self.pooling = pooling
        self.conv_branch = conv_branch
        self.deltas = bool(deltas)
        if deltas:  # the deltas' own standardisation (saved with the weights)
            self.register_buffer("delta_scale", torch.ones(input_size))  # [D]
            self.register_buffer("delta_shift", torch.zeros(input_size))  # [D]
        width = input_size * (2 if deltas else 1)  # channels the model reads per step

        p = self.projection_size
        features = len(pooling.split("+")) * num_units * (2 if bidirectional else 1)
        self.weights_in = nn.Parameter(torch.empty(width, p))  # [D, P] (2D with deltas)
        self.biases_in = nn.Parameter(torch.empty(p))  # [P]

        def build() -> RNNCell:
            return make_cell(
                cell,
                num_units,
                input_size=p,
                num_layers=num_layers,
                keep_prob=1.0 - self.dropout,
                forget_bias=forget_bias,
            )

        if bidirectional:
            self.cell_fw = build()
            self.cell_bw = build()
        else:
            self.cell = build()
        if conv_branch != "none":
            self.fcn = FCNBranch(width, squeeze_excite=conv_branch == "fcn-se")
            features += self.fcn.num_features
        self.weights_out = nn.Parameter(torch.empty(features, num_classes))  # [F, C]
        self.biases_out = nn.Parameter(torch.empty(num_classes))  # [C]
        self.reset_projections()

    def reset_projections(self) -> None:
        """(Re-)initialise the input and output projections according to ``init``."""
        with torch.no_grad():
            for w, b in ((self.weights_in, self.biases_in), (self.weights_out, self.biases_out)):
                if self.init == "normal":
                    w.normal_(0.0, 1.0)  # tf.random_normal
                    b.fill_(0.1)  # tf.constant(0.1)
                else:
                    limit = math.sqrt(6.0 / (w.shape[0] + w.shape[1]))
                    w.uniform_(-limit, limit)
                    b.zero_()

    def step_outputs(self, inputs: Tensor, sequence_length: Tensor | None = None) -> Tensor:
        """The top layer's output at every step: [B, T, D] -> [B, T, F], zeros past each row's
        length (TF1's ``dynamic_rnn``). Bidirectional: each step's forward and backward outputs
        concatenated (F = 2H; the backward direction reads each row reversed within its length,
        its output re-aligned to the step it read)."""
        x = self._projected(inputs)  # [B, T, P]
        if self.bidirectional:
            (out_fw, out_bw), _ = bidirectional_dynamic_rnn(
                self.cell_fw, self.cell_bw, x, sequence_length=sequence_length
            )  # [B, T, H] each
            return torch.cat([out_fw, out_bw], dim=2)  # [B, T, 2H]
        outputs, _ = dynamic_rnn(self.cell, x, sequence_length=sequence_length)  # [B, T, H]
        return outputs

    def _projected(self, inputs: Tensor) -> Tensor:
        """The input projection [B, T, D] -> [B, T, P] (one GEMM, bias fused), after checking
        the shape (and appending the deltas, with ``deltas``)."""
        x = self.model_inputs(inputs)  # [B, T, D or 2D]
        batch, max_time, width = x.shape
        rows_in = x.reshape(batch * max_time, width)
        x = torch.addmm(self.biases_in, rows_in, self.weights_in)
        return x.view(batch, max_time, self.projection_size)

    def set_delta_standardisation(self, scale: Sequence[float], shift: Sequence[float]) -> None:
        """Set ``delta_scale`` and ``delta_shift`` (D floats each) of a model built with
        ``deltas=True``: its delta channels become ``delta * scale + shift``. Raises
        ``ValueError`` for a model without deltas or another count."""
        if not self.deltas:
            raise ValueError(
                "SequenceClassifier.set_delta_standardisation: the model has no deltas"
            )
        if len(scale) != self.input_size or len(shift) != self.input_size:
            raise ValueError(
                f"SequenceClassifier.set_delta_standardisation: scale and shift must hold "
                f"{self.input_size} values (input_size), got {len(scale)} and {len(shift)}"
            )
        with torch.no_grad():
            self.delta_scale.copy_(torch.tensor(list(scale)))
            self.delta_shift.copy_(torch.tensor(list(shift)))

    def model_inputs(self, inputs: Tensor) -> Tensor:
        """What the model reads at each step: the inputs [B, T, D] after checking their shape;
        with ``deltas``, their scaled and shifted first differences appended ([B, T, 2D])."""
        if not isinstance(inputs, Tensor) or inputs.dim() != 3:
            shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
            raise ValueError(
                f"SequenceClassifier: inputs must have shape [batch, time, {self.input_size}], "
                f"got {shape}"
            )
        if inputs.shape[2] != self.input_size:
            raise ValueError(
                f"SequenceClassifier: inputs must have shape [batch, time, {self.input_size}], "
                f"got {tuple(inputs.shape)}"
            )
        if not self.deltas:
            return inputs
        both = append_deltas(inputs)  # [B, T, 2D]
        depth = self.input_size
        deltas = both[:, :, depth:] * self.delta_scale + self.delta_shift  # [B, T, D]
        return torch.cat([both[:, :, :depth], deltas], dim=2)  # [B, T, 2D]

    def features(self, inputs: Tensor, sequence_length: Tensor | None = None) -> Tensor:
        """What the output projection reads: [B, T, D] -> [B, F]: the pooled outputs
        (:func:`pool_outputs`), then the convolutional branch's features if there is one."""
        recurrent = self._recurrent_features(inputs, sequence_length)  # [B, F_rnn]
        if self.conv_branch == "none":
            return recurrent
        conv = self.fcn(self.model_inputs(inputs), sequence_length)  # [B, 128]
        return torch.cat([recurrent, conv], dim=1)  # [B, F]

    def _recurrent_features(self, inputs: Tensor, sequence_length: Tensor | None) -> Tensor:
        """The pooled recurrent outputs [B, F_rnn] (the last valid output(s), their mean, ...)."""
        if self.pooling == "last" and sequence_length is None and not self.bidirectional:
            x = self._projected(inputs)
            if x.shape[1] > 0:
                outputs, _ = dynamic_rnn(self.cell, x)  # [B, T, H]
                return outputs[:, -1]  # [B, H]: every row's last step, no index tensors
        outputs = self.step_outputs(inputs, sequence_length)  # [B, T, F]
        return pool_outputs(
            outputs,
            sequence_length,
            pooling=self.pooling,
            backward_units=self.num_units if self.bidirectional else 0,
        )

    def forward(self, inputs: Tensor, sequence_length: Tensor | None = None) -> Tensor:
        """Logits [B, C] for inputs [B, T, D] (rows of an image: T = D = 28)."""
        return torch.addmm(
            self.biases_out, self.features(inputs, sequence_length), self.weights_out
        )

    def prefix_features(self, inputs: Tensor) -> Tensor:
        """What the model holds after reading only the first t steps, for every t = 0..T.

        Returns [B, T + 1, F]: ``[:, t]`` is :meth:`features` of ``inputs`` cut after step t
        (``sequence_length = t``; t = 0 is the zero state's output, zeros). One-directional, it
        is the top layer's output at step t - 1. Bidirectional, it is the forward output at step
        t - 1 concatenated with the backward direction's output after it read steps t-1..0 (the
        model's own view of the prefix, not a slice of the full-sequence backward pass).
        Inputs [B, T, D] as :meth:`forward`; runs B * (T + 1) rows in one ``dynamic_rnn`` call.
        """
        if not isinstance(inputs, Tensor) or inputs.dim() != 3:
            return self.features(inputs)  # raises the shape error
        batch, max_time = inputs.shape[0], inputs.shape[1]
        cut = inputs.repeat_interleave(max_time + 1, dim=0)  # [B * (T + 1), T, D]
        lengths = torch.arange(max_time + 1, device=inputs.device).repeat(batch)  # [B * (T + 1)]
        return self.features(cut, lengths).view(batch, max_time + 1, -1)  # [B, T + 1, F]

    def prefix_logits(self, inputs: Tensor) -> Tensor:
        """The output layer applied to :meth:`prefix_features`: logits [B, T + 1, C], where
        ``[:, t]`` equals ``forward(inputs[:, :t])`` (the prediction had the input ended after t
        steps) and ``[:, T]`` equals ``forward(inputs)``."""
        return self.prefix_features(inputs) @ self.weights_out + self.biases_out

    def extra_repr(self) -> str:
        return (
            f"cell={self.cell_kind!r}, num_units={self.num_units}, num_layers={self.num_layers}, "
            f"bidirectional={self.bidirectional}, dropout={self.dropout}, "
            f"projection_size={self.projection_size}, init={self.init!r}"
            + (f", pooling={self.pooling!r}" if self.pooling != "last" else "")
            + (f", conv_branch={self.conv_branch!r}" if self.conv_branch != "none" else "")
            + (", deltas=True" if self.deltas else "")
        )


def pool_outputs(
    outputs: Tensor,
    sequence_length: Tensor | None,
    *,
    pooling: Pooling,
    backward_units: int = 0,
) -> Tensor:
    """What the output layer reads from the step outputs of one batch: [B, T, F] -> [B, K * F].

    Values past each row's length are ignored (``dynamic_rnn`` returns zeros there);
    ``sequence_length`` int [B] (None: every row has T steps); lengths outside [0, T] are the
    caller's to refuse. ``pooling`` names K components, concatenated in this order:

        last: out[b, len_b - 1]                   # the last valid output (zeros when len_b = 0)
        mean: sum_{t < len_b} out[b, t] / len_b   # masked mean (zeros when len_b = 0)
        max:  max_{t < len_b} out[b, t]           # masked max over time (zeros when len_b = 0)

    ``backward_units`` = H > 0 marks the last H features as a backward direction's (a
    bidirectional model): its "last" output is the one at step 0, which read the row last.
    Gathers by index (no advanced indexing), so an ONNX trace of it is exact."""
    if pooling not in POOLINGS:
        raise ValueError(f"pool_outputs: pooling must be one of {POOLINGS}, got {pooling!r}")
    batch, max_time, width = outputs.shape
    parts_count = len(pooling.split("+"))
    if max_time == 0:  # no step at all: every component is zeros
        return outputs.new_zeros(batch, parts_count * width)
    if sequence_length is None:
        lengths = torch.full((batch,), max_time, dtype=torch.long, device=outputs.device)
    else:
        lengths = sequence_length.to(device=outputs.device, dtype=torch.long)  # [B]
    steps = torch.arange(max_time, device=outputs.device)
    past = (steps[None, :] >= lengths[:, None])[:, :, None]  # [B, T, 1]: steps past each length
    parts = []
    for part in pooling.split("+"):
        if part == "last":
            last = (lengths - 1).clamp(min=0).view(batch, 1, 1).expand(batch, 1, width)
            at_last = outputs.gather(1, last).squeeze(1)  # [B, F]
            if backward_units:  # forward: its last valid step; backward: step 0 (read last)
                cut = width - backward_units
                at_last = torch.cat([at_last[:, :cut], outputs[:, 0, cut:]], dim=1)
            parts.append(torch.where((lengths > 0)[:, None], at_last, torch.zeros_like(at_last)))
        elif part == "mean":
            count = lengths.clamp(min=1).to(outputs.dtype)  # [B]
            parts.append(outputs.masked_fill(past, 0.0).sum(dim=1) / count[:, None])  # [B, F]
        else:  # max
            peak = outputs.masked_fill(past, float("-inf")).amax(dim=1)  # [B, F]
            parts.append(torch.where((lengths > 0)[:, None], peak, torch.zeros_like(peak)))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # [B, K * F]


def append_deltas(inputs: Tensor) -> Tensor:
    """Each channel's first difference appended as D more channels: [B, T, D] -> [B, T, 2D].

        out[b, t] = concat(x[b, t], x[b, t] - x[b, t - 1])     # the delta 0 at t = 0

    (the delta coefficients speech front ends append to cepstra, in their simplest form, a
    one-step difference; HTK's regression over +-2 steps is another). Within each row's length
    a delta reads only valid steps (t and t - 1 < length); those past it read the padding, which
    the recurrent network and the convolutional branch ignore. Slices only, so an ONNX trace of
    it is exact."""
    previous = torch.cat([inputs[:, :1], inputs[:, :-1]], dim=1)  # [B, T, D]: x[t - 1], x[0] at 0
    return torch.cat([inputs, inputs - previous], dim=2)  # [B, T, 2D]
