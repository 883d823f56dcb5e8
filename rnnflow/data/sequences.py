"""Variable-length multivariate series with class labels: the ``SequenceDataset`` value.

A dataset is N series, series i a float32 array [T_i, D] (T_i >= 1 time steps of D channels, the
same D for all), an int64 label in [0, C) each, and C class names. It is checked once, when built
(:class:`SequenceDataError` names the source file or argument, what was expected and what was
found), so everything downstream may trust it. NumPy only (no torch): the readers
(``sequence_files.py``), the normalisation (``sequence_norm.py``) and the batches
(``sequence_batches.py``) build on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["SequenceDataError", "SequenceDataset", "check_class_names", "classes", "pad_series"]


class SequenceDataError(ValueError):
    """Sequence data that cannot be used as given; the message names the file or argument."""


def classes(count: int) -> str:
    """``"1 class"``, ``"3 classes"``."""
    return f"{count} class" if count == 1 else f"{count} classes"


def check_class_names(src: str, class_names: object) -> None:
    """Refuse (:class:`SequenceDataError`, prefixed with ``src``) anything but a non-empty tuple
    of distinct, non-blank strings."""
    if not isinstance(class_names, tuple) or not class_names:
        raise SequenceDataError(f"{src}: class_names must be a non-empty tuple of names")
    for name in class_names:
        if not isinstance(name, str) or not name.strip():
            raise SequenceDataError(f"{src}: class names must be non-empty strings, got {name!r}")
    if len(set(class_names)) != len(class_names):
        dup = sorted({n for n in class_names if class_names.count(n) > 1})
        raise SequenceDataError(f"{src}: class names must be distinct, repeated: {dup}")


@dataclass(frozen=True, eq=False)
class SequenceDataset:
    """N labelled series of different lengths (validated on construction).

    Attributes:
        series: N float32 arrays [T_i, D], T_i >= 1, all finite, one D for all.
        labels: int64 [N], each in [0, len(class_names)).
        class_names: C >= 1 distinct non-empty names; ``labels[i]`` indexes them.
        source: where the data came from (a file name), used in every error message.

    Build it with :meth:`from_arrays` (which converts and checks), or from a file with the readers
    of :mod:`rnnflow.data.sequence_files`.
    """

    series: tuple[np.ndarray, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]
    source: str = "sequence data"

    def __post_init__(self) -> None:
        src = self.source
        check_class_names(src, self.class_names)
        n = len(self.series)
        if n == 0:
            raise SequenceDataError(f"{src}: expected at least one series, got none")
        labels = self.labels
        if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.shape != (n,):
            got = (
                f"{labels.dtype} {list(labels.shape)}"
                if isinstance(labels, np.ndarray)
                else (type(labels).__name__)
            )
            raise SequenceDataError(
                f"{src}: labels must be int64 [{n}] (one per series), got {got}"
            )
        num_classes = len(self.class_names)
        bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
        if bad.size:
            raise SequenceDataError(
                f"{src}: labels must be in [0, {num_classes}) ({classes(num_classes)}), "
                f"got {int(labels[bad[0]])} at series {int(bad[0])}"
            )
        depth = None
        for i, s in enumerate(self.series):
            if not isinstance(s, np.ndarray) or s.dtype != np.float32 or s.ndim != 2:
                got = (
                    f"{s.dtype} {list(s.shape)}"
                    if isinstance(s, np.ndarray)
                    else (type(s).__name__)
                )
                raise SequenceDataError(
                    f"{src}: series {i} must be a float32 array [time, channels], got {got}"
                )
            if s.shape[0] == 0:
                raise SequenceDataError(f"{src}: series {i} is empty (0 time steps)")
            if depth is None:
                depth = s.shape[1]
                if depth == 0:
                    raise SequenceDataError(f"{src}: series 0 has 0 channels")
            elif s.shape[1] != depth:
                raise SequenceDataError(
                    f"{src}: every series must have the same number of channels: series 0 has "
                    f"{depth}, series {i} has {s.shape[1]}"
                )
            if not np.isfinite(s).all():
                t, c = np.argwhere(~np.isfinite(s))[0]
                raise SequenceDataError(
                    f"{src}: series {i} holds a non-finite value ({s[t, c]}) at step {t}, "
                    f"channel {c}; fill or drop missing values first"
                )

    @classmethod
    def from_arrays(
        cls,
        series: Sequence[np.ndarray],
        labels: Sequence[int] | np.ndarray,
        class_names: Sequence[str],
        *,
        source: str = "sequence data",
    ) -> SequenceDataset:
        """Convert (float series -> float32 [T_i, D], integer labels -> int64) and validate.

        Raises :class:`SequenceDataError` for non-numeric series, values beyond float32's range,
        non-integer labels and anything the class refuses (see the attributes)."""
        converted = []
        for i, s in enumerate(series):
            a = np.asarray(s)
            if a.dtype.kind not in "fiu":
                raise SequenceDataError(
                    f"{source}: series {i} must hold numbers, got dtype {a.dtype}"
                )
            with np.errstate(over="ignore"):
                f = np.ascontiguousarray(a, dtype=np.float32)
            beyond = np.isinf(f) & np.isfinite(a)  # float64 values float32 cannot hold
            if beyond.any():
                where = [int(v) for v in np.argwhere(beyond)[0]]
                at = f"step {where[0]}, channel {where[1]}" if a.ndim == 2 else f"index {where}"
                raise SequenceDataError(
                    f"{source}: series {i} holds {a[tuple(where)]} at {at}, beyond float32's "
                    f"range (|value| <= {np.finfo(np.float32).max:.4g})"
                )
            converted.append(f)
        y = np.asarray(labels)
        if y.size and y.dtype.kind not in "iu":
            raise SequenceDataError(f"{source}: labels must be integers, got dtype {y.dtype}")
        return cls(tuple(converted), y.astype(np.int64), tuple(str(c) for c in class_names), source)

    def __len__(self) -> int:
        return len(self.series)

    @property
    def lengths(self) -> np.ndarray:
        """int64 [N]: T_i of each series."""
        return np.array([len(s) for s in self.series], dtype=np.int64)

    @property
    def num_channels(self) -> int:
        """D, values per time step."""
        return int(self.series[0].shape[1])

    @property
    def num_classes(self) -> int:
        """C."""
        return len(self.class_names)

    def __repr__(self) -> str:
        lengths = self.lengths
        return (
            f"SequenceDataset({self.source!r}, n={len(self)}, channels={self.num_channels}, "
            f"lengths={int(lengths.min())}..{int(lengths.max())}, classes={self.num_classes})"
        )


def pad_series(series: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack series [T_i, D] into a zero-padded float32 [N, max T_i, D] and int64 lengths [N]."""
    lengths = np.array([len(s) for s in series], dtype=np.int64)  # [N]
    max_time = int(lengths.max()) if len(lengths) else 0
    depth = series[0].shape[1] if len(series) else 0
    out = np.zeros((len(series), max_time, depth), dtype=np.float32)  # [N, T, D]
    for i, s in enumerate(series):
        out[i, : len(s)] = s
    return out, lengths
