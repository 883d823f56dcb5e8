"""The :class:`~rnnflow.models.classifier.SequenceClassifier` arguments that the image and the
sequence task's configs both hold, read in one place so the two tasks build their models alike."""

from __future__ import annotations

from typing import Any

__all__ = ["recurrent_args"]

_SHARED = (
    "cell",
    "num_units",
    "num_layers",
    "bidirectional",
    "dropout",
    "projection_size",
    "init",
    "forget_bias",
)


def recurrent_args(config: Any) -> dict[str, Any]:
    """``{name: config.name}`` for the recurrent part of a SequenceClassifier (cell kind, units,
    layers, direction, dropout, input projection, init, forget bias); the caller adds the input
    size, the class count and any task-specific argument."""
    return {name: getattr(config, name) for name in _SHARED}
