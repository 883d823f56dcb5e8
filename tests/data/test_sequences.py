"""Sequence data: the SequenceDataset checks, the .npz/.ts/.csv readers on files written here,
aeon's real JapaneseVowels/PickupGestureWiimoteZ files, training-only normalisation (hand-computed)
and the resumable, length-keeping batches."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnflow.data.sequence_batches import SequenceBatchIterator
from rnnflow.data.sequence_files import (
    load_uea,
    read_sequence_npz,
    read_sequence_ts,
    read_series_file,
    uea_path,
)
from rnnflow.data.sequence_norm import ChannelStats, delta_stats
from rnnflow.data.sequences import SequenceDataError, SequenceDataset

HAS_AEON = importlib.util.find_spec("aeon") is not None
needs_aeon = pytest.mark.skipif(
    not HAS_AEON, reason="aeon (the optional extra 'sequence') is not installed"
)


def f32(*rows: list[float]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def small() -> SequenceDataset:
    return SequenceDataset.from_arrays(
        [f32([1.0, 10.0], [3.0, 10.0]), f32([5.0, 10.0])], [0, 1], ["a", "b"], source="t"
    )


# ------------------------------------------------------------------------------------------------
# SequenceDataset


def test_dataset_lengths_and_shape() -> None:
    d = small()
    assert d.lengths.tolist() == [2, 1]
    assert (d.num_channels, d.num_classes, len(d)) == (2, 2, 2)
    assert d.series[0].dtype == np.float32 and d.labels.dtype == np.int64


@pytest.mark.parametrize(
    ("series", "labels", "names", "match"),
    [
        (
            [f32([1.0, 2.0]), f32([1.0])],
            [0, 0],
            ["a"],
            r"t: every series must have the same number "
            r"of channels: series 0 has 2, series 1 has 1",
        ),
        ([f32([1.0]), np.zeros((0, 1), np.float32)], [0, 0], ["a"], r"t: series 1 is empty"),
        (
            [f32([1.0], [math.nan])],
            [0],
            ["a"],
            r"t: series 0 holds a non-finite value \(nan\) at "
            r"step 1, channel 0",
        ),
        (
            [f32([1.0])],
            [2],
            ["a", "b"],
            r"t: labels must be in \[0, 2\) \(2 classes\), got 2 at "
            r"series 0",
        ),
        ([f32([1.0])], [-1], ["a"], r"labels must be in \[0, 1\) \(1 class\), got -1"),
        (
            [f32([1.0])],
            [0, 0],
            ["a"],
            r"t: labels must be int64 \[1\] \(one per series\), got "
            r"int64 \[2\]",
        ),
        ([f32([1.0])], [0.0], ["a"], r"t: labels must be integers, got dtype float64"),
        ([], [], ["a"], r"t: expected at least one series, got none"),
        ([f32([1.0])], [0], ["a", "a"], r"t: class names must be distinct, repeated: \['a'\]"),
        ([np.array([["x"]])], [0], ["a"], r"t: series 0 must hold numbers, got dtype <U1"),
        (
            [np.zeros(3, np.float32)],
            [0],
            ["a"],
            r"t: series 0 must be a float32 array \[time, "
            r"channels\], got float32 \[3\]",
        ),
    ],
)
def test_dataset_refuses_bad_data(series, labels, names, match) -> None:
    with pytest.raises(SequenceDataError, match=match):
        SequenceDataset.from_arrays(series, labels, names, source="t")


# ------------------------------------------------------------------------------------------------
# .npz


def test_npz_padded_with_lengths_ignores_values_past_each_length(tmp_path: Path) -> None:
    x = np.full((2, 3, 1), 99.0, np.float32)
    x[0, :2, 0] = [1.0, 2.0]
    x[1, :1, 0] = [7.0]
    path = tmp_path / "d.npz"
    np.savez(path, x=x, lengths=np.array([2, 1]), labels=np.array([1, 0]))
    d = read_sequence_npz(path)
    assert [s[:, 0].tolist() for s in d.series] == [[1.0, 2.0], [7.0]]
    assert d.labels.tolist() == [1, 0] and d.class_names == ("0", "1")


def test_npz_two_splits_and_class_names(tmp_path: Path) -> None:
    path = tmp_path / "both.npz"
    np.savez(
        path,
        x_train=np.ones((2, 4, 3)),
        lengths_train=np.array([4, 2]),
        labels_train=np.array([0, 2]),
        x_test=np.zeros((1, 5, 3)),
        labels_test=np.array([1]),
        class_names=np.array(["cat", "dog", "eel"]),
    )
    train = read_sequence_npz(path, split="train")
    test = read_sequence_npz(path, split="test")
    assert train.lengths.tolist() == [4, 2] and test.lengths.tolist() == [5]
    assert train.class_names == test.class_names == ("cat", "dog", "eel")
    with pytest.raises(SequenceDataError, match=r"both.npz: holds two splits .*say which one"):
        read_sequence_npz(path)


def test_npz_object_list_needs_allow_pickle(tmp_path: Path) -> None:
    path = tmp_path / "list.npz"
    x = np.empty(2, dtype=object)
    x[0], x[1] = np.ones((3, 2)), np.zeros((5, 2))
    np.savez(path, x=x, labels=np.array([0, 1]))
    with pytest.raises(SequenceDataError, match=r"list.npz: holds object arrays .*--allow-pickle"):
        read_sequence_npz(path)
    d = read_sequence_npz(path, allow_pickle=True)
    assert d.lengths.tolist() == [3, 5]


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        (
            {"x": np.ones((2, 3, 1)), "lengths": np.array([4, 1]), "labels": np.array([0, 0])},
            r"lengths must be in \[1, 3\] \(the padded time axis of 'x'\), got 4 for series 0",
        ),
        (
            {"x": np.ones((2, 3, 1)), "lengths": np.array([0, 1]), "labels": np.array([0, 0])},
            r"lengths must be in \[1, 3\] .*got 0 for series 0",
        ),
        (
            {"x": np.ones((2, 3, 1)), "lengths": np.array([1.0, 1.0]), "labels": np.array([0, 0])},
            r"lengths must be integers \[2\] \(one per series\), got float64 \[2\]",
        ),
        (
            {"x": np.ones((2, 3)), "labels": np.array([0, 0])},
            r"'x' must be a padded array \[series, time, channels\] .*got shape \[2, 3\]",
        ),
        ({"x": np.ones((2, 3, 1))}, r"missing key 'labels' \(found \['x'\]\)"),
        (
            {"x": np.ones((2, 3, 1)), "labels": np.array([0.5, 1])},
            r"'labels' must be integers \[2\] .*got float64 \[2\]",
        ),
        (
            {"x": np.ones((2, 3, 1)), "labels": np.array([0, 2])},
            r"labels must be contiguous from 0 \(0 .. 2\); classes \[1\] never occur",
        ),
        (
            {"x": np.ones((1, 3, 1)), "labels": np.array([3]), "class_names": np.array(["a", "b"])},
            r": 'labels' must be in \[0, 2\) \(2 classes in 'class_names'\), got 3",
        ),
        (
            {"x": np.full((1, 2, 1), np.inf), "labels": np.array([0])},
            r"series 0 holds a non-finite value \(inf\)",
        ),
    ],
)
def test_npz_bad_files_name_the_file(tmp_path: Path, arrays, match) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(SequenceDataError, match=r"bad.npz.*" + match):
        read_sequence_npz(path)


def test_npz_not_a_zip_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(SequenceDataError, match=r"junk.npz: not a readable .npz file"):
        read_sequence_npz(path)
    with pytest.raises(SequenceDataError, match=r"nope.npz: no such file"):
        read_sequence_npz(tmp_path / "nope.npz")


# ------------------------------------------------------------------------------------------------
# .ts (aeon's loader) on files written here

TS_HEADER = "@problemName T\n@timeStamps false\n@missing false\n@univariate false\n@dimensions 2\n"


def write_ts(path: Path, body: str, classes: str = "up down") -> Path:
    path.write_text(
        TS_HEADER + f"@equalLength false\n@classLabel true {classes}\n@data\n" + body,
        encoding="utf-8",
    )
    return path


@needs_aeon
def test_ts_reads_series_time_major_with_header_classes(tmp_path: Path) -> None:
    path = write_ts(tmp_path / "a.ts", "1,2,3:4,5,6:down\n7,8:9,10:up\n")
    d = read_sequence_ts(path)
    assert d.class_names == ("up", "down")
    assert d.labels.tolist() == [1, 0]
    np.testing.assert_array_equal(d.series[0], f32([1, 4], [2, 5], [3, 6]))
    np.testing.assert_array_equal(d.series[1], f32([7, 9], [8, 10]))


@needs_aeon
def test_ts_test_file_maps_labels_onto_training_classes(tmp_path: Path) -> None:
    path = write_ts(tmp_path / "t.ts", "1:2:down\n", classes="down")
    assert read_sequence_ts(path, class_names=["up", "down"]).labels.tolist() == [1]
    other = write_ts(tmp_path / "o.ts", "1:2:left\n", classes="left")
    with pytest.raises(
        SequenceDataError, match=r"o.ts: series 0 has label 'left', not one of the classes"
    ):
        read_sequence_ts(other, class_names=["up", "down"])


@needs_aeon
@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("1,2:3:up\n", r"bad.ts: not a readable .ts file: .*different number of observations"),
        ("1,2:3,4:up\n1:2:3:up\n", r"bad.ts: not a readable .ts file: Inconsistent number"),
        ("1,NaN:3,4:up\n", r"bad.ts: series 0 holds a non-finite value \(nan\) at step 1"),
        ("1,x:3,4:up\n", r"bad.ts: not a readable .ts file"),
    ],
)
def test_ts_bad_files_name_the_file(tmp_path: Path, body: str, match: str) -> None:
    with pytest.raises(SequenceDataError, match=match):
        read_sequence_ts(write_ts(tmp_path / "bad.ts", body))


@needs_aeon
def test_ts_without_class_labels_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "reg.ts"
    path.write_text(
        TS_HEADER + "@equalLength true\n@classLabel false\n@data\n1,2:3,4\n", encoding="utf-8"
    )
    with pytest.raises(SequenceDataError, match=r"reg.ts: expected a classification file"):
        read_sequence_ts(path)


# ------------------------------------------------------------------------------------------------
# aeon's real files (published sizes: timeseriesclassification.com)


@needs_aeon
@pytest.mark.parametrize(
    ("name", "split", "n", "channels", "lo", "hi", "classes"),
    [
        ("japanese-vowels", "train", 270, 12, 7, 26, 9),
        ("japanese-vowels", "test", 370, 12, 7, 29, 9),
        ("pickup-gesture-wiimote-z", "train", 50, 1, 29, 361, 10),
        ("pickup-gesture-wiimote-z", "test", 50, 1, 37, 324, 10),
    ],
)
def test_builtin_sets_from_the_installed_aeon(name, split, n, channels, lo, hi, classes) -> None:
    d = load_uea(name, split)
    assert (len(d), d.num_channels, d.num_classes) == (n, channels, classes)
    assert (int(d.lengths.min()), int(d.lengths.max())) == (lo, hi)
    assert d.class_names == tuple(str(i) for i in range(1, classes + 1))
    if name == "japanese-vowels" and split == "train":  # 30 utterances per speaker
        assert np.bincount(d.labels).tolist() == [30] * 9
        # the file's first value (case 1, channel 1, step 1) is 1.860936
        assert d.series[0][0, 0] == np.float32(1.860936) and d.series[0].shape == (20, 12)


def test_builtin_set_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"uea_path: name must be one of \['japanese-vowels', "):
        uea_path("gunpoint", "train")
    with pytest.raises(ValueError, match=r"uea_path: split must be 'train' or 'test', got 'dev'"):
        uea_path("japanese-vowels", "dev")  # type: ignore[arg-type]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ModuleNotFoundError, match=r"needs the package aeon.*rnnflow\[sequence\]"):
        uea_path("japanese-vowels", "train")


# ------------------------------------------------------------------------------------------------
# series files for predict


def test_series_csv_with_header_and_npz(tmp_path: Path) -> None:
    csv = tmp_path / "s.csv"
    csv.write_text("a,b\n1,2\n3,4.5\n\n5,6\n", encoding="utf-8")
    (s,) = read_series_file(csv, num_channels=2)
    np.testing.assert_array_equal(s, f32([1, 2], [3, 4.5], [5, 6]))
    npz = tmp_path / "s.npz"
    np.savez(npz, x=np.ones((4, 2)))  # one series [T, D]
    assert [a.shape for a in read_series_file(npz, num_channels=2)] == [(4, 2)]
    np.savez(npz, x=np.ones((2, 4, 2)), lengths=np.array([4, 1]))
    assert [a.shape for a in read_series_file(npz, num_channels=2)] == [(4, 2), (1, 2)]


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("w.csv", "1,2\n3\n", r"w.csv: every row must have the same number of columns"),
        ("n.csv", "1,2\n3,x\n", r"n.csv: line 2: not numbers: '3,x'"),
        ("e.csv", "a,b\n", r"e.csv: the series is empty"),
        ("c.csv", "1,2,3\n", r"c.csv: the model reads 2 channels per step, the file has 3"),
        ("s.txt", "1,2\n", r"s.txt: expected a .csv or .npz series file, got '.txt'"),
    ],
)
def test_series_file_errors(tmp_path: Path, name: str, text: str, match: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SequenceDataError, match=match):
        read_series_file(path, num_channels=2)


def one_split_npz(path: Path, labels: list[int]) -> Path:
    """A one-split file (keys x, labels): len(labels) series of 3 steps x 2 channels."""
    x = np.ones((len(labels), 3, 2), np.float32)
    np.savez(path, x=x, labels=np.asarray(labels, np.int64))
    return path


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_split_of_a_one_split_file_is_refused(tmp_path: Path, split: str) -> None:
    path = one_split_npz(tmp_path / "one.npz", [0, 1, 0])
    with pytest.raises(
        SequenceDataError,
        match=rf"one\.npz: split='{split}' needs a file holding both splits \(keys x_train, "
        r"labels_train, x_test, labels_test; .*got one split \(keys \['labels', 'x'\]\); give "
        r"the test series in a second file",
    ):
        read_sequence_npz(path, split=split)
    assert read_sequence_npz(path).labels.tolist() == [0, 1, 0]  # without a split it reads


def test_negative_labels_are_named_negative(tmp_path: Path) -> None:
    path = one_split_npz(tmp_path / "neg.npz", [0, -1, 1, -3])
    with pytest.raises(
        SequenceDataError,
        match=r"neg\.npz: 'labels' must be class indices >= 0, got negative labels \[-3, -1\] "
        r"\(first at series 1\)",
    ):
        read_sequence_npz(path)
    with pytest.raises(SequenceDataError, match=r"got negative labels \[-3, -1\]"):
        read_sequence_npz(path, class_names=["a", "b"])  # with names too


def test_a_file_without_series_says_so(tmp_path: Path) -> None:
    with pytest.raises(SequenceDataError, match=r"empty\.npz: 'x' holds no series \(0 rows\)"):
        read_sequence_npz(one_split_npz(tmp_path / "empty.npz", []))


def test_csv_header_only_when_no_cell_is_a_number(tmp_path: Path) -> None:
    header = tmp_path / "h.csv"
    header.write_text("a,b\n1,2\n3,4\n")
    np.testing.assert_array_equal(read_series_file(header, num_channels=2)[0], [[1, 2], [3, 4]])
    mixed = tmp_path / "m.csv"
    mixed.write_text("1,x\n1,2\n3,4\n")  # a data row with a typo, not a header
    with pytest.raises(SequenceDataError, match=r"m\.csv: line 1: not numbers: '1,x'"):
        read_series_file(mixed, num_channels=2)


@pytest.mark.parametrize(
    ("sep", "name"), [("\t", "tabs"), (";", "semicolons"), ("|", "vertical bars")]
)
def test_csv_with_another_separator_is_refused(tmp_path: Path, sep: str, name: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(f"1{sep}2\n3{sep}4\n")
    with pytest.raises(
        SequenceDataError,
        match=rf"t\.csv: line 1: expected comma-separated numbers, got a row separated by {name}",
    ):
        read_series_file(path, num_channels=2)


# ------------------------------------------------------------------------------------------------
# normalisation


def test_channel_stats_use_valid_training_steps_only() -> None:
    # channel 0 values 1, 3, 5 -> mean 3, population std sqrt(8/3); channel 1 constant -> std 1
    stats = ChannelStats.fit(small())
    assert stats.mean == (3.0, 10.0)
    assert stats.std[0] == pytest.approx(math.sqrt(8.0 / 3.0), rel=1e-15) and stats.std[1] == 1.0
    test = SequenceDataset.from_arrays([f32([1000.0, -5.0])], [0], ["a", "b"], source="test")
    (z,) = stats.apply(test.series)  # the test split is transformed, never measured
    np.testing.assert_allclose(z, [[(1000.0 - 3.0) / math.sqrt(8.0 / 3.0), -15.0]], rtol=1e-6)
    assert ChannelStats.from_dict(stats.to_dict()) == stats


def test_channel_stats_errors() -> None:
    with pytest.raises(ValueError, match=r"ChannelStats: std must be > 0, got 0"):
        ChannelStats((0.0,), (0,))
    with pytest.raises(ValueError, match=r"mean and std must have the same length >= 1, got 1 and"):
        ChannelStats((0.0,), (1.0, 1.0))
    with pytest.raises(
        SequenceDataError, match=r"series 0 must have shape \[time, 2\], got \[1, 3\]"
    ):
        ChannelStats((0.0, 0.0), (1.0, 1.0)).apply([np.zeros((1, 3), np.float32)])
    with pytest.raises(ValueError, match=r"ChannelStats.from_dict: expected"):
        ChannelStats.from_dict({"mean": [0.0]})


# ------------------------------------------------------------------------------------------------
# batches


def ramp(n: int = 23) -> SequenceDataset:
    rng = np.random.default_rng(0)
    series = [np.full((1 + int(rng.integers(9)), 2), i, np.float32) for i in range(n)]
    return SequenceDataset.from_arrays(series, np.arange(n) % 3, ["a", "b", "c"])


@pytest.mark.parametrize("bucket", [False, True])
def test_batches_keep_lengths_and_cover_each_example_once(bucket: bool) -> None:
    data = ramp()
    it = SequenceBatchIterator(data, 4, shuffle=True, seed=3, bucket=bucket)
    seen = []
    for x, lengths, y in it:
        assert x.shape[1] == int(lengths.max())  # trimmed to the batch's longest series
        for row, length, label in zip(x, lengths, y):
            i = int(row[0, 0])
            assert int(length) == len(data.series[i]) and int(label) == i % 3
            assert row[length:].eq(0).all() and row[:length].eq(i).all()
            seen.append(i)
    assert sorted(seen) == list(range(len(data))) and len(it) == 6 and it.epoch == 1


@pytest.mark.parametrize("bucket", [False, True])
def test_batches_are_a_function_of_seed_and_epoch_and_resume_mid_epoch(bucket: bool) -> None:
    a = SequenceBatchIterator(ramp(), 4, shuffle=True, seed=3, bucket=bucket)
    b = SequenceBatchIterator(ramp(), 4, shuffle=True, seed=3, bucket=bucket)
    full = [[t.clone() for t in batch] for batch in a.iter_from(2)]
    resumed = list(b.iter_from(2, 4))
    assert len(resumed) == 2
    for got, want in zip(resumed, full[4:]):
        for g, w in zip(got, want):
            assert torch.equal(g, w)
    first = [batch[2].tolist() for batch in a.iter_from(0)]
    assert first != [batch[2].tolist() for batch in a.iter_from(1)]
    assert first == [batch[2].tolist() for batch in b.iter_from(0)]


def test_bucketing_reduces_padding() -> None:
    data = ramp(200)

    def padded_steps(bucket: bool) -> int:
        it = SequenceBatchIterator(data, 8, shuffle=True, seed=0, bucket=bucket)
        return sum(x.shape[0] * x.shape[1] for x, _, _ in it)

    assert padded_steps(True) < padded_steps(False)


def test_batches_resume_errors() -> None:
    it = SequenceBatchIterator(ramp(), 4, shuffle=False)
    with pytest.raises(ValueError, match=r"start_batch must be in \[0, 6\], got 7"):
        it.iter_from(0, 7)
    with pytest.raises(ValueError, match=r"epoch must be an int >= 0, got -1"):
        it.iter_from(-1)


def test_delta_stats_by_hand() -> None:
    """Series [1, 3, 6] and [2] (one channel): differences 0, 2, 3 and 0 (each series' first
    step 0); mean 5 / 4, population variance ((1.25)^2 + 0.75^2 + 1.75^2 + 1.25^2) / 4."""
    data = SequenceDataset.from_arrays(
        [np.array([[1.0], [3.0], [6.0]]), np.array([[2.0]])], [0, 1], ("a", "b")
    )
    stats = delta_stats(data)
    assert stats.mean == pytest.approx((1.25,), rel=1e-15)
    assert stats.std == pytest.approx((math.sqrt(6.75 / 4),), rel=1e-15)
