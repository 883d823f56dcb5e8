"""Models built from rnnflow cells: the row-by-row image classifier."""

from rnnflow.models.classifier import CELL_KINDS, INITS, SequenceClassifier, make_cell

__all__ = ["CELL_KINDS", "INITS", "SequenceClassifier", "make_cell"]
