"""Corpus pipeline: reading, cleaning, errors on bad files, split, vocabulary, windows, batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rnnflow.text.corpus import (
    SPECIALS,
    BucketBatches,
    CorpusError,
    Vocabulary,
    clean_text,
    make_examples,
    pad_batch,
    read_documents,
    split_documents,
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_read_documents_splits_on_delimiter_lines_and_cleans(tmp_path: Path) -> None:
    f = write(
        tmp_path / "a.txt",
        "\x1b[32mtitle\x1b[m\r\n  one  \n\n two\n%\n%\nthree 50% off\n %  \nfour\n",
    )
    assert read_documents(f) == ["title\none\ntwo", "three 50% off", "four"]


def test_read_documents_several_files_in_order_and_no_delimiter(tmp_path: Path) -> None:
    a = write(tmp_path / "a.txt", "x\n%\ny\n")
    b = write(tmp_path / "b.txt", "z%\n")
    assert read_documents([a, b]) == ["x", "y", "z%"]
    assert read_documents([a, b], delimiter=None) == ["x\n%\ny", "z%"]


def test_clean_text_strips_ansi_and_line_ends() -> None:
    assert clean_text("\x1b[1;33ma\x1b[0m \r\nb\rc") == "a\nb\nc"


def test_empty_file_is_a_clear_error(tmp_path: Path) -> None:
    f = write(tmp_path / "empty.txt", " \n\n")
    with pytest.raises(CorpusError, match=r"empty\.txt is empty: no text to train on"):
        read_documents(f)


def test_binary_file_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "model.bin"
    f.write_bytes(b"PK\x03\x04" + bytes(range(256)))
    with pytest.raises(CorpusError, match=r"model\.bin looks binary \(a NUL byte at offset 4\)"):
        read_documents(f)


def test_non_utf8_file_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "gbk.txt"
    f.write_bytes("床前明月光".encode("gbk"))
    with pytest.raises(
        CorpusError, match=r"gbk\.txt is not UTF-8 text \(invalid byte 0xb4 at offset 0\)"
    ):
        read_documents(f)


def test_control_characters_mean_binary(tmp_path: Path) -> None:
    f = tmp_path / "ctl.txt"
    f.write_bytes(b"abc\x01def")
    with pytest.raises(
        CorpusError, match=r"looks binary \(control character U\+0001 at character 3\)"
    ):
        read_documents(f)


def test_only_delimiters_and_missing_file(tmp_path: Path) -> None:
    f = write(tmp_path / "d.txt", "%\n%\n")
    with pytest.raises(CorpusError, match=r"d\.txt holds no document \(only delimiters\?\)"):
        read_documents(f)
    with pytest.raises(FileNotFoundError, match=r"nope\.txt: no such file"):
        read_documents(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match=r"read_documents: .*: a directory, not a file$"):
        read_documents(tmp_path)
    with pytest.raises(CorpusError, match="no file given"):
        read_documents([])


def test_split_is_seeded_keeps_order_and_is_disjoint() -> None:
    docs = [f"doc{i}" for i in range(20)]
    train, val = split_documents(docs, val_fraction=0.2, seed=3)
    assert (train, val) == split_documents(docs, val_fraction=0.2, seed=3)
    assert len(val) == 4 and sorted(train + val) == sorted(docs)
    assert train == [d for d in docs if d in train] and val == [d for d in docs if d in val]
    assert split_documents(docs, val_fraction=0.2, seed=4)[1] != val
    assert split_documents(["a", "b"], val_fraction=0.01, seed=0)[1] != []  # at least one
    assert split_documents(docs, val_fraction=0.0, seed=0) == (docs, [])
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\), got 1\.0"):
        split_documents(docs, val_fraction=1.0, seed=0)


def test_vocabulary_specials_order_min_count_and_round_trip() -> None:
    vocab = Vocabulary.build(["abca", "bac", "z"], min_count=2)
    assert vocab.symbols == [*SPECIALS, "a", "b", "c"]  # by count, ties by code point
    assert (vocab.pad_id, vocab.unk_id, vocab.bos_id, vocab.eos_id) == (0, 1, 2, 3)
    assert vocab.encode_document("az") == [2, 4, 1, 3]
    assert vocab.decode([2, 4, 1, 5, 3, 0]) == "a\u25a1b"
    assert Vocabulary.from_json(vocab.to_json()) == vocab
    with pytest.raises(ValueError, match=r"the first symbols must be"):
        Vocabulary(["a", "b"])
    with pytest.raises(ValueError, match=r"min_count must be >= 1, got 0"):
        Vocabulary.build(["a"], min_count=0)


def test_make_examples_windows_cover_every_pair_once() -> None:
    ids = [2, 10, 11, 12, 13, 3]
    windows = make_examples([ids], max_len=2)
    assert windows == [[2, 10, 11], [11, 12, 13], [13, 3]]
    pairs = [(w[i], w[i + 1]) for w in windows for i in range(len(w) - 1)]
    assert pairs == list(zip(ids[:-1], ids[1:]))
    assert make_examples([ids], max_len=100) == [ids]


def test_pad_batch_shapes_and_padding() -> None:
    batch = pad_batch([[2, 5, 6, 3], [2, 7]], pad_id=0)
    assert batch.lengths.tolist() == [3, 1]
    assert batch.inputs.tolist() == [[2, 5, 6], [2, 0, 0]]
    assert batch.targets.tolist() == [[5, 6, 3], [7, 0, 0]]
    assert batch.tokens == 4


def test_bucket_batches_are_length_sorted_seeded_and_resumable() -> None:
    g = torch.Generator().manual_seed(0)
    examples = [[2] + torch.randint(4, 9, (int(n),), generator=g).tolist() for n in range(1, 41)]
    loader = BucketBatches(examples, 8, shuffle=True, seed=1)
    assert len(loader) == 5
    epoch0 = loader.batch_indices(0)
    assert sorted(i for b in epoch0 for i in b) == list(range(40))  # each example once
    for b in epoch0:  # a bucket holds neighbouring lengths: 8 consecutive ranks
        lengths = sorted(len(examples[i]) for i in b)
        assert lengths[-1] - lengths[0] == 7
    assert epoch0 == loader.batch_indices(0)
    assert epoch0 != loader.batch_indices(1)
    full = list(loader.iter_from(1))
    rest = list(loader.iter_from(1, 3))
    for a, b in zip(full[3:], rest):
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.lengths, b.lengths)
    for batch in full:
        t = batch.inputs.shape[1]
        assert t == int(batch.lengths.max())
        past = torch.arange(t)[None, :] >= batch.lengths[:, None]
        assert batch.inputs[past].eq(0).all() and batch.targets[past].eq(0).all()
    with pytest.raises(ValueError, match=r"example 1 has fewer than 2 ids"):
        BucketBatches([[2, 3], [2]], 2, shuffle=False)
