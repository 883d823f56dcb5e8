"""Text corpora for character-level models: read, clean, split, build a vocabulary, batch.

Pipeline (every step a plain function, so tests can feed small strings)::

    read_documents(paths, delimiter="%")   UTF-8 file(s) -> documents (a line holding only the
                                           delimiter separates two); ANSI colour codes stripped,
                                           CRLF -> LF, blank lines and trailing blanks dropped
    split_documents(docs, val_fraction, seed)   seeded document-level split -> (train, val)
    Vocabulary.build(train, min_count)     <pad>=0 <unk>=1 <bos>=2 <eos>=3, then characters by
                                           decreasing count (ties by code point)
    vocab.encode_document(doc)             [<bos>, c1, ..., cn, <eos>]
    make_examples(encoded, max_len)        windows of at most max_len + 1 ids (inputs = w[:-1],
                                           targets = w[1:]); a long document becomes several
    BucketBatches(examples, batch_size)    length-sorted buckets, right-padded with <pad>, each
                                           with sequence_length [B]; order a pure function of
                                           (seed, epoch), so a resumed run sees the same batches

This module depends on no other rnnflow package.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "SPECIALS",
    "UNK",
    "Batch",
    "BucketBatches",
    "CorpusError",
    "Vocabulary",
    "bucket_batch_indices",
    "clean_text",
    "make_examples",
    "pad_batch",
    "read_documents",
    "split_documents",
]

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS: tuple[str, ...] = (PAD, UNK, BOS, EOS)  # ids 0, 1, 2, 3

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # CSI sequences: colours, cursor moves
# C0/C1 controls other than tab and newline: their presence means binary, not text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class CorpusError(ValueError):
    """A text file cannot be used as a corpus (the message names the file and why)."""


def clean_text(text: str) -> str:
    """Remove ANSI escape sequences, normalise line ends to LF and strip each line's ends."""
    text = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.strip() for line in text.split("\n"))


def _decode(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise CorpusError(f"read_documents: {path} is empty: no text to train on")
    if b"\x00" in data:
        offset = data.index(b"\x00")
        raise CorpusError(
            f"read_documents: {path} looks binary (a NUL byte at offset {offset}); "
            "expected a UTF-8 text file"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"read_documents: {path} is not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at "
            f"offset {exc.start}); convert it with e.g. iconv -t UTF-8"
        ) from exc
    stripped = _ANSI.sub("", text)
    bad = _CONTROL.search(stripped)
    if bad is not None:
        raise CorpusError(
            f"read_documents: {path} looks binary (control character "
            f"U+{ord(bad.group()):04X} at character {bad.start()}); expected a UTF-8 text file"
        )
    return text


def read_documents(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    delimiter: str | None = "%",
) -> list[str]:
    """The cleaned, non-empty documents of one or more UTF-8 text files, in file order.

    A line that is exactly ``delimiter`` (after stripping) ends a document; ``delimiter=None``
    makes each file one document. Inside a document, blank lines are dropped and every line is
    stripped (see :func:`clean_text`), so ``"a\\n\\n b \\n"`` becomes ``"a\\nb"``.

    Raises ``FileNotFoundError`` for a missing file and :class:`CorpusError` for an empty,
    binary or non-UTF-8 file, or files that hold no document at all.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    if not paths:
        raise CorpusError("read_documents: no file given")
    documents: list[str] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            what = "a directory, not a file" if path.is_dir() else "no such file"
            raise FileNotFoundError(f"read_documents: {path}: {what}")
        text = clean_text(_decode(path))
        lines = text.split("\n")
        current: list[str] = []
        found = 0
        for line in lines + ([delimiter] if delimiter is not None else []):
            if delimiter is not None and line == delimiter:
                if current:
                    documents.append("\n".join(current))
                    found += 1
                current = []
            elif line:
                current.append(line)
        if delimiter is None and current:
            documents.append("\n".join(current))
            found += 1
        if not found:
            raise CorpusError(f"read_documents: {path} holds no document (only delimiters?)")
    return documents


def split_documents(
    documents: Sequence[str], *, val_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """A seeded split by document: ``round(val_fraction * N)`` documents go to validation.

    The same (documents, val_fraction, seed) always give the same split; both parts keep the
    corpus order. With at least two documents and ``val_fraction > 0`` each part gets one.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"split_documents: val_fraction must be in [0, 1), got {val_fraction}")
    n = len(documents)
    n_val = round(val_fraction * n)
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    val_ids = set(order[:n_val])
    train = [d for i, d in enumerate(documents) if i not in val_ids]
    val = [d for i, d in enumerate(documents) if i in val_ids]
    return train, val


class Vocabulary:
    """Characters <-> ids. Ids 0-3 are ``<pad>``, ``<unk>``, ``<bos>``, ``<eos>``.

    Built from the training documents only; a character seen fewer than ``min_count`` times
    there maps to ``<unk>`` (so the model learns a probability for unseen characters).
    """

    def __init__(self, symbols: Sequence[str]) -> None:
        symbols = list(symbols)
        if tuple(symbols[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(
                f"Vocabulary: the first symbols must be {list(SPECIALS)}, "
                f"got {symbols[: len(SPECIALS)]}"
            )
        for s in symbols[len(SPECIALS) :]:
            if len(s) != 1:
                raise ValueError(
                    f"Vocabulary: symbols after the specials are characters, got {s!r}"
                )
        if len(set(symbols)) != len(symbols):
            raise ValueError("Vocabulary: duplicate symbols")
        self.symbols: list[str] = symbols
        self.index: dict[str, int] = {s: i for i, s in enumerate(symbols)}
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = 0, 1, 2, 3

    @classmethod
    def build(cls, documents: Sequence[str], *, min_count: int = 1) -> Vocabulary:
        if min_count < 1:
            raise ValueError(f"Vocabulary.build: min_count must be >= 1, got {min_count}")
        counts = Counter(ch for doc in documents for ch in doc)
        chars = sorted(
            (c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], c)
        )
        return cls([*SPECIALS, *chars])

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, ch: object) -> bool:
        return ch in self.index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.symbols == other.symbols

    def __hash__(self) -> int:
        return hash(tuple(self.symbols))

    def encode(self, text: str) -> list[int]:
        """Character ids of ``text`` (no ``<bos>``/``<eos>``); unknown characters -> ``<unk>``."""
        return [self.index.get(ch, self.unk_id) for ch in text]

    def encode_document(self, text: str) -> list[int]:
        """``[<bos>] + encode(text) + [<eos>]``."""
        return [self.bos_id, *self.encode(text), self.eos_id]

    def decode(self, ids: Sequence[int]) -> str:
        """Characters of ``ids``: ``<pad>``/``<bos>``/``<eos>`` skipped, ``<unk>`` shown as □."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.unk_id:
                out.append("\u25a1")
            elif i >= len(SPECIALS):
                out.append(self.symbols[i])
        return "".join(out)

    def to_json(self) -> str:
        return json.dumps({"symbols": self.symbols}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("symbols"), list):
            raise ValueError('Vocabulary.from_json: expected {"symbols": [...]}')
        return cls(data["symbols"])


def make_examples(encoded: Sequence[Sequence[int]], *, max_len: int) -> list[list[int]]:
    """Split encoded documents into windows of at most ``max_len + 1`` ids.

    Consecutive windows overlap by one id, so every (input, target) pair of a document appears in
    exactly one window: ``[b, a, b, c, e]`` with ``max_len=2`` -> ``[b, a, b]``, ``[b, c, e]``.
    """
    if max_len < 1:
        raise ValueError(f"make_examples: max_len must be >= 1, got {max_len}")
    out = []
    for ids in encoded:
        if len(ids) < 2:
            continue
        for start in range(0, len(ids) - 1, max_len):
            out.append(list(ids[start : start + max_len + 1]))
    return out


@dataclass(frozen=True)
class Batch:
    """A padded batch: ``inputs``/``targets`` int64 [B, T] (``<pad>`` past each row's length),
    ``lengths`` int64 [B] (>= 1), T = max(lengths)."""

    inputs: Tensor
    targets: Tensor
    lengths: Tensor

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())


def pad_batch(examples: Sequence[Sequence[int]], *, pad_id: int = 0) -> Batch:
    """Right-pad windows (each ``inputs + [last target]``) into a :class:`Batch`."""
    lengths = torch.tensor([len(e) - 1 for e in examples], dtype=torch.long)  # [B]
    if len(examples) == 0 or int(lengths.min()) < 1:
        raise ValueError("pad_batch: every example needs at least 2 ids")
    width = int(lengths.max()) + 1
    full = torch.full((len(examples), width), pad_id, dtype=torch.long)  # [B, T + 1]
    for row, e in enumerate(examples):
        full[row, : len(e)] = torch.tensor(e, dtype=torch.long)
    inputs = full[:, :-1].clone()  # [B, T]
    past = torch.arange(width - 1)[None, :] >= lengths[:, None]  # [B, T]
    inputs[past] = pad_id  # the row's last id is a target only
    return Batch(inputs=inputs, targets=full[:, 1:].clone(), lengths=lengths)


def bucket_batch_indices(
    lengths: Sequence[int], batch_size: int, *, shuffle: bool, seed: int, epoch: int
) -> list[list[int]]:
    """Length-bucketed batches of example indices for ``epoch``, in visiting order.

    Indices are sorted by length (ties by position) and cut into consecutive groups of
    ``batch_size``. With ``shuffle``, they are shuffled before the stable sort (ties broken
    differently each epoch) and the batch order is shuffled, from ``random.Random(seed *
    1_000_003 + epoch)``: the result is a pure function of its arguments.
    """
    order = list(range(len(lengths)))
    rng = random.Random(seed * 1_000_003 + epoch)
    if shuffle:
        rng.shuffle(order)
    order.sort(key=lambda i: lengths[i])  # stable: ties keep the shuffled order
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches


class BucketBatches:
    """Length-bucketed, padded, seeded, resumable mini-batches of windows.

    Examples are sorted by length (ties by position) and cut into consecutive groups of
    ``batch_size``: each batch holds similar lengths, so little compute goes to padding. With
    ``shuffle``, the examples are shuffled before the stable sort (ties broken differently each
    epoch) and the batch order is shuffled; epoch ``e``'s batches are a pure function of
    ``(seed, e)``, and :meth:`iter_from` starts at any batch (exact resume).
    """

    def __init__(
        self,
        examples: Sequence[Sequence[int]],
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        pad_id: int = 0,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"BucketBatches: batch_size must be a positive int, got {batch_size!r}"
            )
        short = [i for i, e in enumerate(examples) if len(e) < 2]
        if short:
            raise ValueError(f"BucketBatches: example {short[0]} has fewer than 2 ids")
        self.examples = [list(e) for e in examples]
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = int(seed)
        self.pad_id = pad_id

    def __len__(self) -> int:
        return -(-len(self.examples) // self.batch_size)

    def batch_indices(self, epoch: int) -> list[list[int]]:
        """Example indices of each batch of ``epoch``, in visiting order."""
        return bucket_batch_indices(
            [len(e) for e in self.examples],
            self.batch_size,
            shuffle=self.shuffle,
            seed=self.seed,
            epoch=epoch,
        )

    def iter_from(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Batches ``start, start + 1, ...`` of ``epoch``."""
        for indices in self.batch_indices(epoch)[start:]:
            yield pad_batch([self.examples[i] for i in indices], pad_id=self.pad_id)

    def __iter__(self) -> Iterator[Batch]:
        return self.iter_from(0)
