"""The documents a :class:`~rnnflow.text.config.CharLMConfig` names (one place for every corpus).

==================  ===========================================================================
``corpus``          documents
==================  ===========================================================================
``tang``/``song``   Debian's ``fortunes-zh`` poems (:func:`rnnflow.text.poetry.load_builtin_corpus`)
``tang-song``       both; small, offline
``tang-full``       the cleaned Tang poems of the npm package ``chinese-poetry``
``tang-song-full``  Tang then Song (:func:`rnnflow.text.chinese_poetry.load_chinese_poetry`;
                    ``data_dir`` and ``script`` apply)
``text``            the UTF-8 ``text`` files, ``delimiter``-separated
==================  ===========================================================================

``forms`` (e.g. ``("5x8",)``) then keeps only the documents that are exactly a poem of one of
those forms (:func:`rnnflow.text.poetry.is_well_formed`).
"""

from __future__ import annotations

from rnnflow.text.config import CharLMConfig
from rnnflow.text.corpus import CorpusError, read_documents
from rnnflow.text.poetry import PoemForm, is_well_formed, load_builtin_corpus

__all__ = ["FULL_CORPORA", "filter_forms", "load_documents"]

FULL_CORPORA: dict[str, tuple[str, ...]] = {
    "tang-full": ("tang",),
    "tang-song-full": ("tang", "song"),
}


def filter_forms(documents: list[str], forms: tuple[str, ...]) -> list[str]:
    """The documents that are exactly one poem of one of ``forms`` (all kept when empty).

    Raises :class:`CorpusError` when none is.
    """
    if not forms:
        return documents
    parsed = [PoemForm.parse(f) for f in forms]
    kept = [d for d in documents if any(is_well_formed(d, f) for f in parsed)]
    if not kept:
        raise CorpusError(
            f"filter_forms: none of the {len(documents)} documents is a poem of the forms "
            f"{list(forms)}"
        )
    return kept


def load_documents(config: CharLMConfig) -> list[str]:
    """The documents ``config`` names, filtered by ``config.forms`` (see the module docstring)."""
    if config.corpus == "text":
        docs = read_documents(list(config.text), delimiter=config.delimiter or None)
    elif config.corpus in FULL_CORPORA:
        from rnnflow.text.chinese_poetry import load_chinese_poetry

        docs = load_chinese_poetry(
            FULL_CORPORA[config.corpus],  # type: ignore[arg-type]
            script=config.script,
            data_dir=config.data_dir,
        ).documents
    else:
        docs = load_builtin_corpus(config.corpus, fortunes_dir=config.fortunes_dir)
    return filter_forms(docs, config.forms)
