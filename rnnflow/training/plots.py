"""Figures of a run with matplotlib's Agg canvas (no pyplot, no display, no global backend).

Each PNG is rendered in memory and written atomically (:func:`write_run_file`): a full disk or a
kill leaves the previous figure (or none), never a truncated one, and the error names the file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

__all__ = ["plot_confusion", "plot_curves"]


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: str | os.PathLike[str]) -> None:
    from rnnflow.training.logging import write_run_file

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_run_file(path, buffer.getvalue())


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def plot_curves(records: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """``curves.png``: loss and accuracy against training examples, train and validation."""
    figure = _figure(11, 4.2)
    ax_loss, ax_acc = figure.subplots(1, 2)
    for kind, style in (("train", "-"), ("val", "o-")):
        rows = [
            r
            for r in records
            if r.get("kind") == kind
            and all(_number(r.get(k)) for k in ("examples", "loss", "accuracy"))
        ]
        if not rows:
            continue
        xs = [r["examples"] for r in rows]
        label = "train" if kind == "train" else "validation"
        ax_loss.plot(xs, [r["loss"] for r in rows], style, label=label, markersize=3)
        ax_acc.plot(xs, [r["accuracy"] for r in rows], style, label=label, markersize=3)
    for ax, title in ((ax_loss, "loss (cross-entropy)"), (ax_acc, "accuracy")):
        ax.set_title(title)
        ax.set_xlabel("training examples")
        ax.grid(True, alpha=0.3)
        if ax.get_lines():
            ax.legend()
    tests = [r for r in records if r.get("kind") == "test" and _number(r.get("accuracy"))]
    if tests:
        figure.suptitle(f"test accuracy {tests[-1]['accuracy']:.4f}")
    figure.tight_layout()
    _save(figure, path)


def plot_confusion(
    confusion: Sequence[Sequence[int]],
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "confusion matrix (test set)",
) -> None:
    """``confusion.png``: counts, true class in rows and predicted class in columns."""
    import numpy as np

    matrix = np.asarray(confusion, dtype=np.int64)
    n = len(class_names)
    figure = _figure(7.5, 6.5)
    ax = figure.subplots()
    rows = matrix.sum(axis=1, keepdims=True).clip(min=1)
    image = ax.imshow(matrix / rows, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(n), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(n):
        for j in range(n):
            frac = matrix[i, j] / rows[i, 0]
            color = "white" if frac > 0.5 else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7, color=color)
    figure.tight_layout()
    _save(figure, path)
