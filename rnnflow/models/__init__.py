"""Models built from rnnflow cells: the row-by-row image classifier and the character-level LM."""

from rnnflow.models.char_lm import CharLM, masked_cross_entropy
from rnnflow.models.classifier import CELL_KINDS, INITS, SequenceClassifier, make_cell

__all__ = [
    "CELL_KINDS",
    "INITS",
    "SequenceClassifier",
    "make_cell",
    "CharLM",
    "masked_cross_entropy",
]
