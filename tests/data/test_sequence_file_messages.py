"""Every .npz/.ts error names the key or header it is about, and counts series one way: ``series
i`` from 0, the index of the series in the file (the reviewer found label and class-name errors
blamed on ``[x]``, "(1 classes)", an empty .ts file reported as empty class_names, and .ts files
counting from 0 for a NaN but from 1 for a bad label)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnflow.data.sequence_files import read_sequence_npz, read_sequence_ts, read_series_file
from rnnflow.data.sequences import SequenceDataError

needs_aeon = pytest.mark.skipif(
    importlib.util.find_spec("aeon") is None, reason="aeon (the extra 'sequence') is absent"
)


def npz(path: Path, labels: list[int], names: list[str] | None, suffix: str = "") -> Path:
    arrays = {f"x{suffix}": np.ones((len(labels), 3, 2)), f"labels{suffix}": np.array(labels)}
    if suffix:  # a two-split file: the other split too
        other = "_test" if suffix == "_train" else "_train"
        arrays |= {f"x{other}": np.ones((1, 3, 2)), f"labels{other}": np.array([0])}
    if names is not None:
        arrays["class_names"] = np.array(names)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("labels", "names", "suffix", "message"),
    [
        (
            [0, 1, 2, 1],
            ["a", "b"],
            "",
            r"'labels' must be in \[0, 2\) \(2 classes in 'class_names'\), got 2 at series 2$",
        ),
        (
            [0, 1],
            ["a"],
            "_train",
            r"'labels_train' must be in \[0, 1\) \(1 class in 'class_names'\), got 1 at series 1$",
        ),
        (
            [0, 1],
            ["a", "a"],
            "",
            r"'class_names': class names must be distinct, repeated: \['a'\]$",
        ),
        ([0, 0], [], "", r"'class_names': class_names must be a non-empty tuple of names$"),
        ([0, 0], [" "], "", r"'class_names': class names must be non-empty strings, got ' '$"),
    ],
)
def test_npz_label_and_class_name_errors_name_their_keys(tmp_path, labels, names, suffix, message):
    path = npz(tmp_path / "f.npz", labels, names, suffix)
    with pytest.raises(SequenceDataError, match=rf"^{re.escape(str(path))}: {message}"):
        read_sequence_npz(path, split=suffix[1:] or None)


def test_npz_labels_past_the_given_class_names_say_so(tmp_path: Path) -> None:
    path = npz(tmp_path / "t.npz", [0, 2], None)
    with pytest.raises(
        SequenceDataError,
        match=rf"^{re.escape(str(path))}: 'labels' must be in \[0, 2\) \(2 classes in the "
        r"class_names given\), got 2 at series 1$",
    ):
        read_sequence_npz(path, class_names=["a", "b"])
    assert read_sequence_npz(path, class_names=["a", "b", "c"]).labels.tolist() == [0, 2]


def write_ts(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


HEADER = "@problemName T\n@univariate true\n@equalLength false\n@classLabel true up down\n"


@needs_aeon
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"expected a classification file \(a '@classLabel true <names>' header line, then "),
        ("hello world\n", r"expected a classification file .*got one without class labels$"),
        (HEADER + "@data\n", r"holds no series \(no lines after '@data'\)$"),
    ],
)
def test_an_empty_or_garbage_ts_file_says_what_is_missing(tmp_path, text, message) -> None:
    path = write_ts(tmp_path / "e.ts", text)
    with pytest.raises(SequenceDataError, match=rf"^{re.escape(str(path))}: {message}"):
        read_sequence_ts(path)


@needs_aeon
def test_ts_errors_count_series_from_0_both_for_a_nan_and_a_bad_label(tmp_path) -> None:
    """Series 2 is the file's third data line in both messages."""
    nan = write_ts(tmp_path / "n.ts", HEADER + "@data\n1,2:up\n3,4:down\n5,NaN:up\n")
    with pytest.raises(
        SequenceDataError, match=rf"^{re.escape(str(nan))}: series 2 holds a non-finite value"
    ):
        read_sequence_ts(nan)
    label = write_ts(tmp_path / "l.ts", HEADER + "@data\n1,2:up\n3,4:down\n5,6:left\n")
    with pytest.raises(
        SequenceDataError, match=rf"^{re.escape(str(label))}: series 2 has label 'left', not one "
    ):
        read_sequence_ts(label, class_names=["up", "down"])


# ------------------------------------------------------------------------------------------------
# predict's .csv series: the header rule, the number syntax, a BOM, quoting, line numbers


def read_csv(tmp_path: Path, text: str, encoding: str = "utf-8") -> np.ndarray:
    path = tmp_path / "s.csv"
    path.write_bytes(text.encode(encoding))
    (series,) = read_series_file(path, num_channels=3)
    return series


@pytest.mark.parametrize(
    "text",
    [
        "1,2,3\n4,5,6\n",  # no header
        '"1","2","3"\n4,5,6\n',  # quoted numbers are numbers, not a header
        "a,b,c\n1,2,3\n4,5,6\n",  # a header of names
        "\ufeff1,2,3\n4,5,6\n",  # Excel's "CSV UTF-8": a byte-order mark
        "\ufeffx,y,z\n1,2,3\n4,5,6\n",
        "\n1.0, +2e0 ,3.\n\n4,.5e1,6\n",  # blank lines, spaces around fields, number forms
    ],
)
def test_csv_reads_numbers_and_only_a_nameful_first_row_as_header(tmp_path, text) -> None:
    np.testing.assert_array_equal(read_csv(tmp_path, text), [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 2 3\n4,5,6\n", r"line 1: expected comma-separated numbers, got a row separated by sp"),
        (
            "4,5,6\n\n1 2 3\n",
            r"line 3: expected comma-separated numbers, got a row separated by sp",
        ),
        ("1_000,2,3\n4,5,6\n", r"line 1: not numbers: '1_000,2,3' \(column 1: '1_000'\)$"),
        ("a,b,c\n1,2,3\n\n4,5,٦\n", r"line 4: not numbers: '4,5,٦' \(column 3: '٦'\)$"),
        ("1,2,3\n\n\n4,5,x\n", r"line 4: not numbers: '4,5,x' \(column 3: 'x'\)$"),
        ("1,2,3\n4,nan,6\n", r"series 0 holds a non-finite value \(nan\) at step 1, channel 1"),
    ],
)
def test_csv_refuses_what_is_not_a_comma_separated_number(tmp_path, text, message) -> None:
    with pytest.raises(SequenceDataError, match=rf"s\.csv.*{message}"):
        read_csv(tmp_path, text)


def test_csv_a_field_too_long_for_the_csv_module_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        SequenceDataError, match=r"s\.csv: line 2: not a readable CSV row: field larger than "
    ):
        read_csv(tmp_path, "1,2,3\n" + "5" * 200_000 + ",1,2\n")


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.text(
        alphabet=st.sampled_from(list('0123456789.,-+eE _"\\n\\t;|ab\\ufeff٦')), max_size=40
    )
)
def test_csv_any_text_reads_or_fails_with_a_named_error(tmp_path: Path, text: str) -> None:
    """The oracle: a file of comma-separated numbers read back exactly, anything else a
    SequenceDataError naming the file (never another exception)."""
    try:
        series = read_csv(tmp_path, text)
    except SequenceDataError as exc:
        assert str(exc).startswith(str(tmp_path / "s.csv"))
        return
    assert series.shape[1] == 3 and np.isfinite(series).all()


def test_values_beyond_float32_are_refused_not_turned_into_inf(tmp_path: Path) -> None:
    with pytest.raises(
        SequenceDataError,
        match=r"s\.csv: series 0 holds 1e\+100 at step 1, channel 2, beyond float32's range "
        r"\(\|value\| <= 3\.403e\+38\)$",
    ):
        read_csv(tmp_path, "1,2,3\n4,5,1e100\n")
    x = np.ones((2, 3, 1))
    x[1, 2, 0] = -1e39
    np.savez(tmp_path / "big.npz", x=x, labels=np.array([0, 1]))
    with pytest.raises(SequenceDataError, match=r"series 1 holds -1e\+39 at step 2, channel 0, "):
        read_sequence_npz(tmp_path / "big.npz")
    np.testing.assert_array_equal(read_csv(tmp_path, "1,2,3e38\n")[0], np.float32([1, 2, 3e38]))
