"""Text: corpora, vocabularies and batches for character-level models; poems and their forms;
sampling (the character-LM task that trains on them: ``rnnflow.tasks.charlm``).

Import by path (``from rnnflow.text import read_documents``); ``rnnflow`` itself does not
re-export these.

The names are imported on first use (PEP 562), so that the CLI's argument parsers, which read
only ``rnnflow.text.config``, do not import torch (``rnnflow train --help`` stays fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rnnflow._lazy_names import lazy_names as _lazy_names

if TYPE_CHECKING:
    from rnnflow.text.corpus import (
        BOS,
        EOS,
        PAD,
        SPECIALS,
        UNK,
        Batch,
        BucketBatches,
        CorpusError,
        Vocabulary,
        clean_text,
        make_examples,
        pad_batch,
        read_documents,
        split_documents,
    )
    from rnnflow.text.generate import Sample, generate
    from rnnflow.text.poetry import (
        BUILTIN_CORPORA,
        FORMS,
        FormMask,
        PoemForm,
        is_hanzi,
        is_well_formed,
        load_builtin_corpus,
        strip_poem_header,
    )

__all__ = [
    "BOS",
    "BUILTIN_CORPORA",
    "EOS",
    "FORMS",
    "PAD",
    "SPECIALS",
    "UNK",
    "Batch",
    "BucketBatches",
    "CorpusError",
    "FormMask",
    "PoemForm",
    "Sample",
    "Vocabulary",
    "clean_text",
    "generate",
    "is_hanzi",
    "is_well_formed",
    "load_builtin_corpus",
    "make_examples",
    "pad_batch",
    "read_documents",
    "split_documents",
    "strip_poem_header",
]

_HOME = {
    "BOS": "rnnflow.text.corpus",
    "EOS": "rnnflow.text.corpus",
    "PAD": "rnnflow.text.corpus",
    "SPECIALS": "rnnflow.text.corpus",
    "UNK": "rnnflow.text.corpus",
    "Batch": "rnnflow.text.corpus",
    "BucketBatches": "rnnflow.text.corpus",
    "CorpusError": "rnnflow.text.corpus",
    "Vocabulary": "rnnflow.text.corpus",
    "clean_text": "rnnflow.text.corpus",
    "make_examples": "rnnflow.text.corpus",
    "pad_batch": "rnnflow.text.corpus",
    "read_documents": "rnnflow.text.corpus",
    "split_documents": "rnnflow.text.corpus",
    "Sample": "rnnflow.text.generate",
    "generate": "rnnflow.text.generate",
    "BUILTIN_CORPORA": "rnnflow.text.poetry",
    "FORMS": "rnnflow.text.poetry",
    "FormMask": "rnnflow.text.poetry",
    "PoemForm": "rnnflow.text.poetry",
    "is_hanzi": "rnnflow.text.poetry",
    "is_well_formed": "rnnflow.text.poetry",
    "load_builtin_corpus": "rnnflow.text.poetry",
    "strip_poem_header": "rnnflow.text.poetry",
}

__getattr__, __dir__ = _lazy_names(__name__, _HOME, __all__)
