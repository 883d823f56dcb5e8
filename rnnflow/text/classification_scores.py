"""Accuracy, per-class and macro F1, and the confusion matrix of a classifier's predictions.

For class c, with ``confusion[t][p]`` the number of examples of true class t predicted as p:

    precision_c = confusion[c][c] / sum_t confusion[t][c]      (0 when nothing is predicted c)
    recall_c    = confusion[c][c] / sum_p confusion[c][p]      (0 when class c has no example)
    F1_c        = 2 precision_c recall_c / (precision_c + recall_c)     (0 when both are 0)
    macro F1    = mean over the classes of F1_c

as ``sklearn.metrics.f1_score(average="macro", zero_division=0)`` (the tests compare with it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ClassificationScores", "classification_scores"]


@dataclass(frozen=True)
class ClassificationScores:
    """``confusion[t][p]``: examples of true class t predicted as p."""

    accuracy: float
    macro_f1: float
    f1: tuple[float, ...]
    confusion: tuple[tuple[int, ...], ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "f1": list(self.f1),
            "confusion": [list(row) for row in self.confusion],
        }


def classification_scores(
    labels: Sequence[int], predictions: Sequence[int], *, num_classes: int
) -> ClassificationScores:
    """Scores of ``predictions`` against ``labels`` (class indices in [0, num_classes)).

    Raises ``ValueError`` for sequences of different or zero length, or an index out of range.
    """
    owner = "classification_scores"
    labels, predictions = [int(y) for y in labels], [int(p) for p in predictions]
    if len(labels) != len(predictions) or not labels:
        raise ValueError(
            f"{owner}: expected as many predictions as labels (at least one), got "
            f"{len(predictions)} and {len(labels)}"
        )
    bad = [v for v in labels + predictions if not 0 <= v < num_classes]
    if bad:
        raise ValueError(f"{owner}: class indices must be in [0, {num_classes}), got {bad[0]}")
    confusion = [[0] * num_classes for _ in range(num_classes)]
    for t, p in zip(labels, predictions):
        confusion[t][p] += 1
    f1 = []
    for c in range(num_classes):
        hits = confusion[c][c]
        predicted = sum(row[c] for row in confusion)
        actual = sum(confusion[c])
        precision = hits / predicted if predicted else 0.0
        recall = hits / actual if actual else 0.0
        f1.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return ClassificationScores(
        accuracy=sum(confusion[c][c] for c in range(num_classes)) / len(labels),
        macro_f1=sum(f1) / num_classes,
        f1=tuple(f1),
        confusion=tuple(tuple(row) for row in confusion),
    )
