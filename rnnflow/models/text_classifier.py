"""TextClassifier: character embedding -> SequenceClassifier (a bidirectional GRU/LSTM) -> logits.

    tokens [B, T] int64 -> embedding [B, T, E]
      -> SequenceClassifier(input_size=E): x @ weights_in + biases_in       # [B, T, P]
         -> bidirectional_dynamic_rnn(cell_fw, cell_bw, sequence_length)    # [B, T, H] x 2
         -> concat(out_fw[b, len_b - 1], out_bw[b, 0])                      # [B, 2H]
         -> @ weights_out + biases_out                                      # [B, C] logits

The recurrent part is :class:`rnnflow.models.classifier.SequenceClassifier` itself (parameters
``classifier.*``), so every cell kind, stacking and dropout option of the image classifier works
here too; only the embedding (``embedding.weight`` [V, E], ~N(0, 1) as ``nn.Embedding``) is
new. Ids past each row's ``sequence_length`` are never read: padding changes nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnflow.models.cell_kinds import CellKind
from rnnflow.models.classifier import SequenceClassifier

__all__ = ["TextClassifier"]


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
        dropout: drop probability on each layer's outputs (training mode only).
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
        dropout: float = 0.0,
        projection_size: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("embedding_size", embedding_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"TextClassifier: {name} must be a positive int, got {value!r}")
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_size)  # [V, E]
        self.classifier = SequenceClassifier(
            input_size=embedding_size,
            num_classes=num_classes,
            cell=cell,
            num_units=num_units,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            projection_size=projection_size,
            init="glorot",
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
        x = self.embedding(tokens)  # [B, T, E]
        return self.classifier(x, sequence_length)  # [B, C]
