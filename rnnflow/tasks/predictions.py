"""The record of one prediction, as ``rnnflow predict --json`` writes it for every classifier task
(images, series) and ``rnnflow serve`` answers it: one copy of its fields."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

__all__ = ["top_classes"]


def top_classes(probabilities: Tensor, names: Sequence[str], top: int) -> dict[str, Any]:
    """``class``, ``class_index``, ``probability`` (the most likely class) and ``top`` (the
    ``top`` most likely, each ``{"class", "class_index", "probability"}``, most likely first)
    for one example's class probabilities float [C]; ``1 <= top <= C`` (the caller clamps)."""
    values, indices = probabilities.topk(top)
    return {
        "class": names[int(indices[0])],
        "class_index": int(indices[0]),
        "probability": float(values[0]),
        "top": [
            {"class": names[int(i)], "class_index": int(i), "probability": float(v)}
            for v, i in zip(values, indices)
        ],
    }
