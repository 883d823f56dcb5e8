"""Models built from rnnflow cells: the row-by-row image classifier, the character-level LM and
the text classifier.

The names are imported on first use (PEP 562), so that ``rnnflow.models.cell_kinds`` (read by the
run config, whose CLI parsers must not import torch) imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rnnflow._lazy_names import lazy_names

if TYPE_CHECKING:
    from rnnflow.models.cell_kinds import CELL_KINDS, INITS
    from rnnflow.models.char_lm import CharLM, masked_cross_entropy
    from rnnflow.models.classifier import SequenceClassifier, make_cell
    from rnnflow.models.text_classifier import TextClassifier

__all__ = [
    "CELL_KINDS",
    "INITS",
    "SequenceClassifier",
    "make_cell",
    "CharLM",
    "masked_cross_entropy",
    "TextClassifier",
]

_HOME = {
    "CELL_KINDS": "rnnflow.models.cell_kinds",
    "INITS": "rnnflow.models.cell_kinds",
    "SequenceClassifier": "rnnflow.models.classifier",
    "make_cell": "rnnflow.models.classifier",
    "CharLM": "rnnflow.models.char_lm",
    "masked_cross_entropy": "rnnflow.models.char_lm",
    "TextClassifier": "rnnflow.models.text_classifier",
}
__getattr__, __dir__ = lazy_names(__name__, _HOME, __all__)
