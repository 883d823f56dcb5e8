"""CharLM: embedding -> rnnflow cell(s) -> dynamic_rnn -> softmax over the vocabulary at each step.

The classic TF1 character-level generator ("char-rnn")::

    e          = dropout(embedding[tokens])                        # [B, T, E]
    out, state = dynamic_rnn(cell, e, sequence_length, initial_state)   # [B, T, H]
    logits     = dropout(out) @ W + b                              # [B, T, V]

The output layer is a full softmax (``nn.Linear`` to V logits) or, with ``softmax="adaptive"``,
PyTorch's ``nn.AdaptiveLogSoftmaxWithLoss`` (Grave et al. 2017, "Efficient softmax approximation
for GPUs"): a head over the ``cutoffs[0]`` most frequent ids plus one entry per tail cluster, and
tail clusters of rarer ids scored through smaller projections (width H / 4**k). It is an exact
distribution over all V ids, not an approximation of the full softmax's: ``forward`` returns its
full log-probabilities (they sum to 1; usable wherever logits are), while training passes
``targets`` and pays only for the head plus the clusters the targets fall in. The ids must be
ordered by frequency (``rnnflow.text.corpus.Vocabulary.build`` does this after its 4 specials).

``cell`` is one cell or a ``MultiRNNCell`` (``rnnflow.models.classifier.make_cell``). Dropout
(train mode only) acts on the embeddings, between stacked layers (``DropoutWrapper`` on every
layer but the top one) and on the top layer's outputs; a one-layer model therefore keeps the
fused ``dynamic_rnn`` path while training with dropout.

Because ``forward`` takes and returns the recurrent state, running a sequence in one call or
piece by piece (feeding each call's state to the next) gives the same logits: sampling uses that.
"""

from __future__ import annotations

from collections.abc import Sequence
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
        softmax: ``"full"`` (Linear + softmax) or ``"adaptive"`` (adaptive softmax).
        cutoffs: with ``"adaptive"`` only: increasing ids ``0 < c1 < c2 < ... < V``; ids below
            ``c1`` form the head, ``[c1, c2)`` the first tail cluster, ... (e.g. ``(500, 2000)``).

    Raises:
        ValueError: naming the argument, for a non-positive size, dropout outside [0, 1), an
            unknown ``softmax``, or ``cutoffs`` that are not increasing ids inside (0, V) (or
            given with the full softmax).

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
        softmax: Literal["full", "adaptive"] = "full",
        cutoffs: Sequence[int] = (),
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
        cutoffs = tuple(cutoffs)
        _check_softmax(softmax, cutoffs, vocab_size)
        self.vocab_size = vocab_size
        self.num_units = num_units
        self.softmax = softmax
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
        self.output: nn.Linear | nn.AdaptiveLogSoftmaxWithLoss
        if softmax == "adaptive":
            self.output = nn.AdaptiveLogSoftmaxWithLoss(
                num_units, vocab_size, list(cutoffs), div_value=4.0, head_bias=True
            )
        else:
            self.output = nn.Linear(num_units, vocab_size)

    def zero_state(self, batch_size: int, *, device: torch.device | None = None) -> State:
        """The cell's zero state for ``batch_size`` rows, in the model's dtype and device."""
        weight = self.embedding.weight
        return self.cell.zero_state(
            batch_size, dtype=weight.dtype, device=device if device is not None else weight.device
        )

    def forward(
        self,
        tokens: Tensor,
        *,
        targets: Tensor | None = None,
        sequence_length: Tensor | None = None,
        initial_state: State | None = None,
        impl: Impl = "auto",
    ) -> tuple[Tensor, State]:
        """Logits at every step (or, given ``targets``, the loss at every step) and the final state.

        Args:
            tokens: int64 [B, T] character ids.
            targets: int64 [B, T] next-character ids, or None. Given, the first result is the
                per-step negative log-likelihood (nats, float [B, T], 0 past each row's length)
                computed on the valid steps only: the cheap training path of the adaptive
                softmax (no [B, T, V] tensor is built).
            sequence_length: int64 [B]; steps past a row's length are padding (their logits
                are the output bias only and the state stops changing, as in TF1).
            initial_state: the cell's state for B rows; default zeros.
            impl: ``dynamic_rnn``'s path (same results; ``"reference"`` is the fastest for the
                one-step calls of sampling).

        Returns:
            ``(logits [B, T, V], state)``; with the adaptive softmax the "logits" are its
            log-probabilities (each row's logsumexp is 0). With ``targets``: ``(nll [B, T],
            state)``.
        """
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(
                f"CharLM: tokens must be int64 [B, T], got {tokens.dtype} {tuple(tokens.shape)}"
            )
        if targets is not None and (targets.shape != tokens.shape or targets.dtype != torch.long):
            raise ValueError(
                f"CharLM: targets must be int64 {tuple(tokens.shape)} like tokens, got "
                f"{targets.dtype} {tuple(targets.shape)}"
            )
        x = self.drop(self.embedding(tokens))  # [B, T, E]
        out, state = dynamic_rnn(
            self.cell, x, sequence_length=sequence_length, initial_state=initial_state, impl=impl
        )  # [B, T, H]
        out = self.drop(out)
        if targets is None:
            if isinstance(self.output, nn.AdaptiveLogSoftmaxWithLoss):
                flat = self.output.log_prob(out.reshape(-1, out.shape[-1]))  # [B*T, V]
                return flat.view(*out.shape[:2], -1), state  # [B, T, V]
            return self.output(out), state  # [B, T, V]
        batch, steps = tokens.shape
        valid = torch.ones_like(tokens, dtype=torch.bool)  # [B, T]
        if sequence_length is not None:
            lengths = sequence_length.to(tokens.device)
            valid = torch.arange(steps, device=tokens.device)[None, :] < lengths[:, None]
        hidden, wanted = out[valid], targets[valid]  # [N, H], [N]
        if isinstance(self.output, nn.AdaptiveLogSoftmaxWithLoss):
            nll = -self.output(hidden, wanted).output  # [N]
            # a tail no target falls in is skipped; DistributedDataParallel needs a gradient
            # for every parameter on every rank, so each tail also adds an exact zero
            nll = nll + sum(p.sum() for p in self.output.tail.parameters()) * 0.0
        else:
            nll = F.cross_entropy(self.output(hidden), wanted, reduction="none")  # [N]
        return out.new_zeros(batch, steps).masked_scatter(valid, nll), state  # [B, T]


def _check_softmax(softmax: str, cutoffs: tuple[int, ...], vocab_size: int) -> None:
    """CharLM's ``softmax``/``cutoffs`` arguments: ValueError naming the bad one."""
    if softmax not in ("full", "adaptive"):
        raise ValueError(f"CharLM: softmax must be 'full' or 'adaptive', got {softmax!r}")
    if softmax == "full":
        if cutoffs:
            raise ValueError(
                f"CharLM: cutoffs are for softmax='adaptive', got cutoffs={list(cutoffs)} with "
                "softmax='full'"
            )
        return
    ints = all(isinstance(c, int) and not isinstance(c, bool) for c in cutoffs)
    increasing = ints and all(a < b for a, b in zip(cutoffs, cutoffs[1:]))
    if not cutoffs or not increasing or not 0 < cutoffs[0] or not cutoffs[-1] < vocab_size:
        raise ValueError(
            f"CharLM: softmax='adaptive' needs cutoffs: increasing ints in (0, vocab_size="
            f"{vocab_size}), e.g. (500, 2000), got {list(cutoffs)}"
        )


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
