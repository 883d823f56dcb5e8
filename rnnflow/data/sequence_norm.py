"""Per-channel standardisation of series with statistics of the training split only.

    mean[d] = sum_i sum_{t < T_i} x_i[t, d] / sum_i T_i           # over valid steps, not padding
    std[d]  = sqrt(sum_i sum_{t < T_i} (x_i[t, d] - mean[d])^2 / sum_i T_i)   # population (ddof 0)
    x'      = (x - mean) / std          # std 0 (a constant channel) is replaced by 1

The statistics are plain floats, stored in the run (config and checkpoint metadata) and applied
unchanged by evaluate, predict and export, so test data never influences them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rnnflow.data.sequences import SequenceDataError, SequenceDataset

__all__ = ["ChannelStats", "delta_stats"]


@dataclass(frozen=True)
class ChannelStats:
    """Mean and standard deviation per channel (D floats each; every std > 0)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(
                f"ChannelStats: mean and std must have the same length >= 1, got "
                f"{len(self.mean)} and {len(self.std)}"
            )
        for name, values in (("mean", self.mean), ("std", self.std)):
            for v in values:
                if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
                    raise ValueError(f"ChannelStats: {name} must hold finite floats, got {v!r}")
        if min(self.std) <= 0:
            raise ValueError(f"ChannelStats: std must be > 0, got {min(self.std)}")

    @classmethod
    def fit(cls, train: SequenceDataset) -> ChannelStats:
        """Statistics over every valid step of every series of ``train`` (float64 sums)."""
        steps = np.concatenate(train.series).astype(np.float64)  # [sum T_i, D]
        mean = steps.mean(axis=0)
        std = steps.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        return cls(tuple(float(m) for m in mean), tuple(float(s) for s in std))

    @property
    def num_channels(self) -> int:
        """D."""
        return len(self.mean)

    def apply(self, series: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Standardise float32 [T_i, D] series; returns new float32 arrays (inputs untouched).

        Raises :class:`SequenceDataError` when a series has another number of channels."""
        mean = np.asarray(self.mean, dtype=np.float64)
        std = np.asarray(self.std, dtype=np.float64)
        out = []
        for i, s in enumerate(series):
            if s.ndim != 2 or s.shape[1] != len(mean):
                raise SequenceDataError(
                    f"ChannelStats.apply: series {i} must have shape [time, {len(mean)}], got "
                    f"{list(s.shape)}"
                )
            out.append(((s - mean) / std).astype(np.float32))
        return out

    def normalise(self, data: SequenceDataset) -> SequenceDataset:
        """``data`` with every series standardised (labels, classes and source kept)."""
        return SequenceDataset(
            tuple(self.apply(data.series)), data.labels, data.class_names, data.source
        )

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready form (floats round-trip exactly through ``json``)."""
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> ChannelStats:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(tuple(d["mean"]), tuple(d["std"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"ChannelStats.from_dict: expected {{'mean': [...], 'std': [...]}}, got {d!r}"
            ) from exc


def delta_stats(train: SequenceDataset) -> ChannelStats:
    """:meth:`ChannelStats.fit` of the series' first differences: for each series x [T_i, D],
    ``d[0] = 0`` and ``d[t] = x[t] - x[t - 1]`` (every step inside its own length), the
    statistics over every step of every series. A model with deltas standardises its delta
    channels with them (``rnnflow.models.classifier.append_deltas``)."""
    deltas = tuple(np.diff(x, axis=0, prepend=x[:1]) for x in train.series)  # [T_i, D] each
    return ChannelStats.fit(SequenceDataset(deltas, train.labels, train.class_names, train.source))
