"""rnnflow.data.sequence_files: .npz labels and splits, .csv series; every refusal pinned by its
message (the file, the key or line, the expected and the actual value)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rnnflow.data.sequence_files import read_sequence_npz, read_series_file
from rnnflow.data.sequences import SequenceDataError


def npz(path: Path, labels, n: int | None = None, **extra) -> Path:
    n = len(labels) if n is None else n
    np.savez(path, x=np.ones((n, 3, 2), np.float32), labels=np.asarray(labels, np.int64), **extra)
    return path


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_split_of_a_one_split_file_is_refused(tmp_path: Path, split: str) -> None:
    path = npz(tmp_path / "one.npz", [0, 1, 0])
    with pytest.raises(
        SequenceDataError,
        match=rf"one\.npz: split='{split}' needs a file holding both splits \(keys x_train, "
        r"labels_train, x_test, labels_test; .*got one split \(keys \['labels', 'x'\]\); give "
        r"the test series in a second file",
    ):
        read_sequence_npz(path, split=split)
    assert read_sequence_npz(path).labels.tolist() == [0, 1, 0]  # without a split it reads


def test_negative_labels_are_named_negative(tmp_path: Path) -> None:
    path = npz(tmp_path / "neg.npz", [0, -1, 1, -3])
    with pytest.raises(
        SequenceDataError,
        match=r"neg\.npz: 'labels' must be class indices >= 0, got negative labels \[-3, -1\] "
        r"\(first at series 1\)",
    ):
        read_sequence_npz(path)
    with pytest.raises(SequenceDataError, match=r"got negative labels \[-3, -1\]"):
        read_sequence_npz(path, class_names=["a", "b"])  # with names too


def test_skipped_classes_are_named(tmp_path: Path) -> None:
    with pytest.raises(
        SequenceDataError, match=r"contiguous from 0 \(0 \.\. 3\); classes \[1, 2\]"
    ):
        read_sequence_npz(npz(tmp_path / "gap.npz", [0, 3, 0]))


def test_a_file_without_series_says_so(tmp_path: Path) -> None:
    with pytest.raises(SequenceDataError, match=r"empty\.npz: 'x' holds no series \(0 rows\)"):
        read_sequence_npz(npz(tmp_path / "empty.npz", []))


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
