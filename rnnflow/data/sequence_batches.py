"""Seeded, resumable mini-batches of padded series that keep each series' length.

Each batch is ``(x [B, T_b, D] float32, sequence_length [B] int64, labels [B] int64)`` where T_b is
the longest series in that batch (padding past each length is zero, and the model never reads
it: ``dynamic_rnn`` masks by ``sequence_length``). The order of an epoch is a pure function of
``(seed, epoch)``, and :meth:`SequenceBatchIterator.iter_from` starts at any batch, as
:class:`rnnflow.data.datasets.BatchIterator` (whose order it uses).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from rnnflow.data.datasets import BatchIterator, _epoch_seed
from rnnflow.data.sequences import SequenceDataset, pad_series

__all__ = ["SequenceBatch", "SequenceBatchIterator"]

SequenceBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

#: Length bucketing sorts pools of this many batches by length before cutting them into batches.
BUCKET_POOL = 32


class SequenceBatchIterator:
    """Mini-batches of a :class:`SequenceDataset` (pad once, slice each batch to its own T).

    Args:
        data: the series (already normalised, if wanted).
        batch_size: B (the last batch is smaller unless ``drop_last``).
        shuffle: visit examples in a new order each epoch (a pure function of ``(seed, epoch)``).
        seed: the order's seed.
        bucket: with ``shuffle``, group series of similar length: the epoch's shuffled order is
            cut into pools of ``BUCKET_POOL * batch_size`` series, each pool sorted by length and
            cut into batches, and the batches of the epoch shuffled (less padding, fewer steps);
            still a pure function of ``(seed, epoch)``.
        drop_last: drop a last, smaller batch.
    """

    def __init__(
        self,
        data: SequenceDataset,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        bucket: bool = False,
        drop_last: bool = False,
    ) -> None:
        x, lengths = pad_series(data.series)
        self.inputs = torch.from_numpy(x)  # [N, T, D]
        self.lengths = torch.from_numpy(lengths)  # [N]
        self.labels = torch.from_numpy(data.labels)  # [N]
        index = torch.arange(len(data))
        # the order and the batch bookkeeping of the image batches, over example indices
        self._index = BatchIterator(
            index, index, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
        self.bucket = bool(bucket)

    @property
    def epoch(self) -> int:
        """The epoch the next ``iter(self)`` produces."""
        return self._index.epoch

    def __len__(self) -> int:
        return len(self._index)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter(self)`` produce epoch ``epoch``'s order."""
        self._index.set_epoch(epoch)

    def batch_indices(self, epoch: int) -> list[torch.Tensor]:
        """The example indices of each batch of ``epoch``, in visiting order."""
        index = self._index
        order = index.order(epoch)  # [N]
        bs, count = index.batch_size, len(index)
        if not (self.bucket and index.shuffle):
            return [order[b * bs : (b + 1) * bs] for b in range(count)]
        pool = BUCKET_POOL * bs
        lengths = self.lengths[order]  # [N] in visiting order
        batches = []
        for lo in range(0, len(order), pool):
            chunk = order[lo : lo + pool]
            ranked = chunk[torch.sort(lengths[lo : lo + pool], stable=True).indices]
            batches += [ranked[i : i + bs] for i in range(0, len(ranked), bs)]
        if index.drop_last:
            batches = [b for b in batches if len(b) == bs][:count]
        # shuffle the batches with a generator of its own, also a function of (seed, epoch)
        mix = np.random.default_rng(_epoch_seed(index.seed, epoch) ^ 0x5EC)
        return [batches[i] for i in mix.permutation(len(batches))]

    def __iter__(self) -> Iterator[SequenceBatch]:
        return self.iter_from(self.epoch, 0)

    def iter_from(self, epoch: int, start_batch: int = 0) -> Iterator[SequenceBatch]:
        """Batches ``start_batch, ...`` of ``epoch``: equal to skipping the first ``start_batch``
        of ``set_epoch(epoch); iter(self)``. Completing the pass sets :attr:`epoch` to
        ``epoch + 1``. Raises ``ValueError`` for an epoch < 0 or a start outside [0, len]."""
        self._index.iter_from(epoch, start_batch)  # validates both arguments
        return self._batches(epoch, start_batch)

    def _batches(self, epoch: int, start: int) -> Iterator[SequenceBatch]:
        for idx in self.batch_indices(epoch)[start:]:
            lengths = self.lengths[idx]  # [B]
            steps = int(lengths.max())
            yield self.inputs[idx, :steps], lengths, self.labels[idx]  # [B, T_b, D], [B], [B]
        self._index.set_epoch(epoch + 1)

    def __repr__(self) -> str:
        i = self._index
        return (
            f"SequenceBatchIterator(n={len(self.labels)}, batch_size={i.batch_size}, "
            f"shuffle={i.shuffle}, bucket={self.bucket}, seed={i.seed}, epoch={i.epoch})"
        )
