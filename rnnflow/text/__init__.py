"""Text: corpora, vocabularies and batches for character-level models; poems and their forms;
sampling; the character-LM trainer.

Import by path (``from rnnflow.text import read_documents``); ``rnnflow`` itself does not
re-export these.
"""

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
