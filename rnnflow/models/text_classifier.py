"""TextClassifier: character embedding -> SequenceClassifier (a bidirectional GRU/LSTM) -> logits.

    tokens [B, T] int64 -> embedding, dropout                               # [B, T, E]
      -> SequenceClassifier(input_size=E): x @ weights_in + biases_in       # [B, T, P]
         -> bidirectional_dynamic_rnn(cell_fw, cell_bw, sequence_length)    # [B, T, 2H]
         -> pooling="last": concat(out_fw[b, len_b - 1], out_bw[b, 0])      # [B, 2H]
            pooling="max":  max over the valid steps t < len_b, per feature # [B, 2H]
         -> dropout -> @ weights_out + biases_out                           # [B, C] logits

The recurrent part is :class:`rnnflow.models.classifier.SequenceClassifier` itself (parameters
``classifier.*``), so every cell kind and stacking of the image classifier works here too, and
so does its masked pooling (:func:`rnnflow.models.classifier.pool_outputs`); only the embedding
(``embedding.weight`` [V, E], ~N(0, 1) as ``nn.Embedding``) and the two dropouts are new. Ids
past each row's ``sequence_length`` are never read: padding changes nothing. Max pooling over
time for text classification: Collobert et al., "Natural Language Processing (Almost) from
Scratch", JMLR 2011; Lai et al., "Recurrent Convolutional Neural Networks for Text
Classification", AAAI 2015 (max over a bidirectional RNN's outputs).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnflow.models.cell_kinds import CellKind
from rnnflow.models.classifier import SequenceClassifier

__all__ = ["POOLINGS", "Pooling", "TextClassifier"]

Pooling = Literal["last", "max"]
POOLINGS: tuple[str, ...] = get_args(Pooling)


class TextClassifier(nn.Module):
    """Classify token-id sequences [B, T] of varying length into C classes.

    Args:
        vocab_size: V, number of token ids (ids must be in [0, V)).
        num_classes: C.
        embedding_size: E, width of each token's vector.
        cell: a cell kind of :class:`SequenceClassifier` (``"gru"``, ``"lstm"``, ...).
        num_units: H, units per layer and direction.
        num_layers: stacked layers per direction.
        bidirectional: read the text both ways (features [B, 2H]) or left to right ([B, H]).
        pooling: ``"last"``: each direction's last valid output (what the TF1 tutorial feeds
            its output layer); ``"max"``: the largest value of each feature over the valid
            steps.
        dropout: drop probability on the pooled features (training mode only).
        embedding_dropout: drop probability on the embedded characters (training mode only).
        projection_size: P, width of the projection between embedding and cell (default H).

    Raises ``ValueError`` for a non-positive size, and :meth:`forward` for ids or lengths of the
    wrong shape, dtype or range.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        num_classes: int,
        embedding_size: int = 64,
        cell: CellKind = "gru",
        num_units: int = 128,
        num_layers: int = 1,
        bidirectional: bool = True,
        pooling: Pooling = "last",
        dropout: float = 0.0,
        embedding_dropout: float = 0.0,
        projection_size: int | None = None,
    ) -> None:
        super().__init__()
        owner = "TextClassifier"
        for name, value in (("vocab_size", vocab_size), ("embedding_size", embedding_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
        for name, value in (("dropout", dropout), ("embedding_dropout", embedding_dropout)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
                raise ValueError(f"{owner}: {name} must be a float in [0, 1), got {value!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"{owner}: pooling must be one of {POOLINGS}, got {pooling!r}")
        self.vocab_size = vocab_size
        self.pooling = pooling
        self.dropout = float(dropout)
        self.embedding_dropout = float(embedding_dropout)
        self.embedding = nn.Embedding(vocab_size, embedding_size)  # [V, E]
        self.classifier = SequenceClassifier(
            input_size=embedding_size,
            num_classes=num_classes,
            cell=cell,
            num_units=num_units,
            num_layers=num_layers,
            bidirectional=bidirectional,
            projection_size=projection_size,
            init="glorot",
            pooling=pooling,
        )

    @property
    def num_classes(self) -> int:
        return self.classifier.num_classes

    def forward(self, tokens: Tensor, sequence_length: Tensor) -> Tensor:
        """Logits float [B, C] for ``tokens`` int64 [B, T] and ``sequence_length`` int [B],
        each length in [1, T]; ids past a row's length are ignored (any value in [0, V))."""
        owner = "TextClassifier"
        if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.dtype != torch.long:
            got = (
                f"{tokens.dtype} {tuple(tokens.shape)}"
                if isinstance(tokens, Tensor)
                else type(tokens).__name__
            )
            raise ValueError(f"{owner}: tokens must be an int64 tensor [batch, time], got {got}")
        batch, max_time = tokens.shape
        if (
            not isinstance(sequence_length, Tensor)
            or sequence_length.shape != (batch,)
            or sequence_length.dtype.is_floating_point
            or sequence_length.dtype in (torch.bool, torch.complex64, torch.complex128)
        ):
            got = (
                f"{sequence_length.dtype} {tuple(sequence_length.shape)}"
                if isinstance(sequence_length, Tensor)
                else type(sequence_length).__name__
            )
            raise ValueError(
                f"{owner}: sequence_length must be an integer tensor of shape ({batch},), got {got}"
            )
        if batch and (int(sequence_length.min()) < 1 or int(sequence_length.max()) > max_time):
            raise ValueError(
                f"{owner}: sequence_length must be in [1, {max_time}] (the tokens' time "
                f"dimension), got values in [{int(sequence_length.min())}, "
                f"{int(sequence_length.max())}]"
            )
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(
                f"{owner}: token ids must be in [0, {self.vocab_size}), got values in "
                f"[{int(tokens.min())}, {int(tokens.max())}]"
            )
        x = F.dropout(self.embedding(tokens), self.embedding_dropout, self.training)  # [B, T, E]
        c = self.classifier
        features = c.features(x, sequence_length)  # [B, F]: pool_outputs over the valid steps
        features = F.dropout(features, self.dropout, self.training)
        return features @ c.weights_out + c.biases_out  # [B, C]

    def extra_repr(self) -> str:
        return (
            f"pooling={self.pooling!r}, dropout={self.dropout}, "
            f"embedding_dropout={self.embedding_dropout}"
        )
