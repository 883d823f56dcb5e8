"""CharLM: embedding -> rnnflow cell(s) -> dynamic_rnn -> softmax over the vocabulary at each step.

The classic TF1 character-level generator ("char-rnn")::

    e          = dropout(embedding[tokens])                        # [B, T, E]
    out, state = dynamic_rnn(cell, e, sequence_length, initial_state)   # [B, T, H]
    logits     = dropout(out) @ W + b                              # [B, T, V]

``cell`` is one cell or a ``MultiRNNCell`` (``rnnflow.models.classifier.make_cell``). Dropout
(train mode only) acts on the embeddings, between stacked layers (``DropoutWrapper`` on every
layer but the top one) and on the top layer's outputs; a one-layer model therefore keeps the
fused ``dynamic_rnn`` path while training with dropout.

Because ``forward`` takes and returns the recurrent state, running a sequence in one call or
piece by piece (feeding each call's state to the next) gives the same logits: sampling uses that.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnflow.cells import DropoutWrapper, MultiRNNCell
from rnnflow.cells.base import RNNCell, State
from rnnflow.models.classifier import make_cell
from rnnflow.recurrence import dynamic_rnn
from rnnflow.recurrence.dynamic_rnn import Impl

__all__ = ["CharLM", "masked_cross_entropy"]


class CharLM(nn.Module):
    """Character-level language model: ``tokens`` [B, T] -> ``logits`` [B, T, V], ``state``.

    Args:
        vocab_size: V, including the special symbols.
        embed_size: E, width of the character embedding.
        cell: ``"lstm"`` (BasicLSTMCell), ``"gru"`` (GRUCell) or ``"rnn"`` (BasicRNNCell).
        num_units: H, units per layer.
        num_layers: stacked layers (a ``MultiRNNCell`` when > 1).
        dropout: drop probability on embeddings, between layers and on the top outputs.
        forget_bias: BasicLSTMCell's forget-gate bias.

    Unlike ``torch.nn.LSTM`` + ``nn.Linear``, the recurrence is TF1's (``BasicLSTMCell`` gate
    order i, j, f, o; zero outputs past each length) and the state is the cell's own structure
    (``LSTMStateTuple``, or a tuple of them for a stack), ready for ``initial_state``.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        embed_size: int = 128,
        cell: Literal["rnn", "lstm", "gru"] = "lstm",
        num_units: int = 256,
        num_layers: int = 1,
        dropout: float = 0.0,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("vocab_size", vocab_size),
            ("embed_size", embed_size),
            ("num_units", num_units),
            ("num_layers", num_layers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"CharLM: {name} must be a positive int, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"CharLM: dropout must be in [0, 1), got {dropout}")
        self.vocab_size = vocab_size
        self.num_units = num_units
        self.embedding = nn.Embedding(vocab_size, embed_size)
        layers = [
            make_cell(
                cell,
                num_units,
                input_size=embed_size if layer == 0 else num_units,
                forget_bias=forget_bias,
            )
            for layer in range(num_layers)
        ]
        if dropout > 0:  # between layers only; the top layer's dropout is self.drop below
            layers = [DropoutWrapper(c, output_keep_prob=1.0 - dropout) for c in layers[:-1]] + [
                layers[-1]
            ]
        self.cell: RNNCell = layers[0] if num_layers == 1 else MultiRNNCell(layers)
        self.drop = nn.Dropout(dropout)
        self.output = nn.Linear(num_units, vocab_size)

    def zero_state(self, batch_size: int, *, device: torch.device | None = None) -> State:
        """The cell's zero state for ``batch_size`` rows, in the model's dtype and device."""
        weight = self.output.weight
        return self.cell.zero_state(
            batch_size, dtype=weight.dtype, device=device if device is not None else weight.device
        )

    def forward(
        self,
        tokens: Tensor,
        *,
        sequence_length: Tensor | None = None,
        initial_state: State | None = None,
        impl: Impl = "auto",
    ) -> tuple[Tensor, State]:
        """Logits at every step and the final state.

        Args:
            tokens: int64 [B, T] character ids.
            sequence_length: int64 [B]; steps past a row's length are padding (their logits
                are the output bias only and the state stops changing, as in TF1).
            initial_state: the cell's state for B rows; default zeros.
            impl: ``dynamic_rnn``'s path (same results; ``"reference"`` is the fastest for the
                one-step calls of sampling).

        Returns:
            ``(logits [B, T, V], state)``.
        """
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(
                f"CharLM: tokens must be int64 [B, T], got {tokens.dtype} {tuple(tokens.shape)}"
            )
        x = self.drop(self.embedding(tokens))  # [B, T, E]
        out, state = dynamic_rnn(
            self.cell, x, sequence_length=sequence_length, initial_state=initial_state, impl=impl
        )  # [B, T, H]
        return self.output(self.drop(out)), state  # [B, T, V]


def masked_cross_entropy(logits: Tensor, targets: Tensor, lengths: Tensor) -> tuple[Tensor, int]:
    """Summed cross-entropy over the valid steps of each row, and the number of those steps.

    ``logits`` [B, T, V], ``targets`` int64 [B, T], ``lengths`` int64 [B]: step ``t`` of row ``b``
    counts iff ``t < lengths[b]``. Divide the sum by the count for the mean per character;
    ``exp(mean)`` is the perplexity.
    """
    batch, steps, vocab = logits.shape
    valid = torch.arange(steps, device=logits.device)[None, :] < lengths.to(logits.device)[:, None]
    losses = F.cross_entropy(
        logits.reshape(batch * steps, vocab), targets.reshape(-1), reduction="none"
    ).view(batch, steps)  # [B, T]
    return losses.masked_fill(~valid, 0.0).sum(), int(valid.sum())
