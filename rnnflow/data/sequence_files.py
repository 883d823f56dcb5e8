"""Reading labelled series from files: ``.npz``, ``.ts`` (via aeon), the UEA/UCR sets inside aeon,
and single unlabelled series (``.npz``/``.csv``) for prediction.

``.npz`` layouts (NumPy's own format, read with ``allow_pickle=False`` unless asked):

- padded: ``x`` float [N, T, D], ``lengths`` int [N] (1 <= lengths[i] <= T; omitted: every
  series is T long; values past a length are ignored), ``labels`` int [N] in [0, C);
- list: ``x`` an object array of N float arrays [T_i, D] (needs ``allow_pickle=True``: pickle can
  run code, so only for files you trust), ``labels`` as above;
- optional ``class_names`` str [C] (default: ``"0" .. str(max label)``, every class present);
- both splits in one file: the keys above with ``_train`` / ``_test`` appended
  (``x_train``, ``lengths_train``, ``labels_train``, ``x_test``, ...; ``class_names`` shared).

``.ts``: the sktime/aeon text format of the UEA/UCR archive (``@classLabel true ...`` header; one
case per line, channels separated by ``:``), parsed by ``aeon.datasets.load_from_ts_file`` (the
optional extra ``sequence``). Class names and their order come from the ``@classLabel`` line.
Note that aeon lower-cases labels.

Built-in sets (:data:`UEA_DATASETS`) are the ``.ts`` files shipped inside the installed ``aeon``
wheel, read offline.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from rnnflow._paths import path_problem
from rnnflow.data.sequences import (
    SequenceDataError,
    SequenceDataset,
    check_class_names,
    classes,
)

__all__ = [
    "UEA_DATASETS",
    "load_uea",
    "read_sequence_npz",
    "read_sequence_ts",
    "read_series_file",
    "uea_path",
]

Split = Literal["train", "test"]

#: CLI name -> the archive's name (aeon's folder ``aeon/datasets/data/<name>/``).
UEA_DATASETS: dict[str, str] = {
    "japanese-vowels": "JapaneseVowels",
    "pickup-gesture-wiimote-z": "PickupGestureWiimoteZ",
}
EXTRA_HINT = "pip install 'rnnflow[sequence]' (the optional extra that installs aeon)"


def _check_split(func: str, split: object) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"{func}: split must be 'train' or 'test', got {split!r}")


def _aeon_missing(what: str) -> ModuleNotFoundError:
    return ModuleNotFoundError(
        f"{what} needs the package aeon, which is not installed: {EXTRA_HINT}"
    )


def uea_path(name: str, split: Split) -> Path:
    """The ``.ts`` file of a built-in set (``"japanese-vowels"``, ...) inside the installed aeon.

    Does not import aeon. Raises ``ValueError`` for an unknown name, ``ModuleNotFoundError``
    (naming the extra) when aeon is absent, ``FileNotFoundError`` when aeon lacks the file."""
    _check_split("uea_path", split)
    if name not in UEA_DATASETS:
        raise ValueError(f"uea_path: name must be one of {sorted(UEA_DATASETS)}, got {name!r}")
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise _aeon_missing(f"the dataset {name!r}")
    archive = UEA_DATASETS[name]
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / archive
    path = folder / f"{archive}_{split.upper()}.ts"
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset {name!r}: {path} not found in the installed aeon; reinstall it: {EXTRA_HINT}"
        )
    return path


def load_uea(name: str, split: Split) -> SequenceDataset:
    """A built-in UEA/UCR set's split, read offline from aeon's own files (see :func:`uea_path`).

    ``japanese-vowels``: 12 channels, lengths 7-29, 9 classes, 270 train / 370 test series.
    ``pickup-gesture-wiimote-z``: 1 channel, lengths 29-361, 10 classes, 50 / 50.
    The test split maps its labels onto the training file's class names."""
    classes = read_sequence_ts(uea_path(name, "train")).class_names if split == "test" else None
    return read_sequence_ts(uea_path(name, split), class_names=classes)


def read_sequence_ts(
    path: str | os.PathLike[str], *, class_names: Sequence[str] | None = None
) -> SequenceDataset:
    """Read a labelled ``.ts`` file with aeon's loader.

    Series come back float32 [T_i, D] (aeon's [D, T_i] transposed); labels index the header's
    ``@classLabel`` names, or ``class_names`` when given (a test file read with its training
    file's classes). Raises :class:`SequenceDataError` naming the file for a malformed file, a
    file without class labels, a label outside the classes, NaN (missing) values or channels of
    different lengths; ``ModuleNotFoundError`` naming the extra when aeon is absent."""
    path = Path(path)
    if not path.is_file():
        raise SequenceDataError(f"{path}: {path_problem(path)}")
    try:
        from aeon.datasets import load_from_ts_file
    except ImportError as exc:
        raise _aeon_missing(f"reading {path}") from exc
    try:
        data, y, meta = load_from_ts_file(str(path), return_meta_data=True)
    except (OSError, ValueError, IndexError) as exc:  # aeon's messages do not name the file
        raise SequenceDataError(f"{path}: not a readable .ts file: {exc}") from exc
    if not meta.get("classlabel") or not (class_names or meta.get("class_values")):
        # aeon reads an empty or garbage file as a classification file with no classes
        raise SequenceDataError(
            f"{path}: expected a classification file (a '@classLabel true <names>' header "
            "line, then '@data' and one series per line), got one without class labels"
        )
    if len(data) == 0:
        raise SequenceDataError(f"{path}: holds no series (no lines after '@data')")
    names = tuple(class_names) if class_names is not None else tuple(meta["class_values"])
    index = {n.lower(): i for i, n in enumerate(names)}  # aeon lower-cases the labels
    labels = []
    for i, value in enumerate(str(v) for v in y):
        if value not in index:
            raise SequenceDataError(
                f"{path}: series {i} has label {value!r}, not one of the classes {list(names)}"
            )
        labels.append(index[value])
    series = [np.asarray(case, dtype=np.float64).T for case in data]  # [T_i, D] each
    return SequenceDataset.from_arrays(series, np.array(labels, np.int64), names, source=str(path))


def _load_npz(path: Path, allow_pickle: bool) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise SequenceDataError(f"{path}: {path_problem(path)}")
    if not zipfile.is_zipfile(path):  # np.load would unpickle a non-zip file with allow_pickle
        raise SequenceDataError(f"{path}: not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=allow_pickle) as z:
            return {k: z[k] for k in z.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise SequenceDataError(
                f"{path}: holds object arrays (a list of series), which NumPy stores with "
                "pickle; pass allow_pickle=True (rnnflow train: --allow-pickle) only for a file "
                "you trust, or save a padded array with lengths instead"
            ) from exc
        raise SequenceDataError(f"{path}: not a readable .npz file: {exc}") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise SequenceDataError(f"{path}: not a readable .npz file: {exc}") from exc


def _series_from(path: Path, x: np.ndarray, lengths: np.ndarray | None, key: str) -> list:
    """Split an .npz ``x`` (padded [N, T, D] + lengths, or an object list) into [T_i, D] series."""
    if x.dtype == object:
        if lengths is not None:
            raise SequenceDataError(
                f"{path}: {key!r} is a list of series; drop the lengths key (each series has its "
                "own length)"
            )
        return list(x.reshape(-1))
    if x.ndim != 3:
        raise SequenceDataError(
            f"{path}: {key!r} must be a padded array [series, time, channels] or a list of "
            f"[time, channels] arrays, got shape {list(x.shape)}"
        )
    n, max_time = x.shape[0], x.shape[1]
    if lengths is None:
        return list(x)
    if lengths.dtype.kind not in "iu" or lengths.shape != (n,):
        raise SequenceDataError(
            f"{path}: lengths must be integers [{n}] (one per series), got {lengths.dtype} "
            f"{list(lengths.shape)}"
        )
    bad = np.flatnonzero((lengths < 1) | (lengths > max_time))
    if bad.size:
        raise SequenceDataError(
            f"{path}: lengths must be in [1, {max_time}] (the padded time axis of {key!r}), got "
            f"{int(lengths[bad[0]])} for series {int(bad[0])}"
        )
    return [x[i, : int(length)] for i, length in enumerate(lengths)]


def read_sequence_npz(
    path: str | os.PathLike[str],
    *,
    split: Split | None = None,
    class_names: Sequence[str] | None = None,
    allow_pickle: bool = False,
) -> SequenceDataset:
    """Read labelled series from an ``.npz`` file (layouts in the module docstring).

    ``split`` selects ``x_<split>``/``lengths_<split>``/``labels_<split>`` in a file holding both
    splits (required there, refused elsewhere: a one-split file never stands in for a split).
    ``class_names`` (a run's training classes) bound the labels of a test file. Without them the
    labels must be 0 .. C-1, every one present. Raises :class:`SequenceDataError` naming the file
    and the key for a missing key, a file without series, negative labels or labels that skip a
    class."""
    path = Path(path)
    if split is not None:
        _check_split("read_sequence_npz", split)
    z = _load_npz(path, allow_pickle)
    two_splits = "x_train" in z or "x_test" in z
    if two_splits and split is None:
        raise SequenceDataError(
            f"{path}: holds two splits (x_train/x_test); say which one (split='train'|'test'); "
            "rnnflow train reads both from it when it is the only file (no --test-file)"
        )
    if split is not None and not two_splits:
        raise SequenceDataError(
            f"{path}: split={split!r} needs a file holding both splits (keys x_train, "
            f"labels_train, x_test, labels_test; lengths_train/lengths_test optional), got one "
            f"split (keys {sorted(z)}); give the test series in a second file instead "
            "(rnnflow train: --test-file FILE)"
        )
    suffix = f"_{split}" if two_splits else ""
    x_key, len_key, y_key = f"x{suffix}", f"lengths{suffix}", f"labels{suffix}"
    for key in (x_key, y_key):
        if key not in z:
            raise SequenceDataError(f"{path}: missing key {key!r} (found {sorted(z)})")
    series = _series_from(path, z[x_key], z.get(len_key), x_key)
    if not series:
        raise SequenceDataError(f"{path}: {x_key!r} holds no series (0 rows)")
    labels = z[y_key]
    if labels.dtype.kind not in "iu" or labels.shape != (len(series),):
        raise SequenceDataError(
            f"{path}: {y_key!r} must be integers [{len(series)}] (one per series), got "
            f"{labels.dtype} {list(labels.shape)}"
        )
    names_from = "the class_names given"
    if class_names is None and "class_names" in z:
        names_from = "'class_names'"
        class_names = [str(c) for c in z["class_names"].reshape(-1)]
    if class_names is not None:
        class_names = tuple(str(c) for c in class_names)
        check_class_names(f"{path}: {names_from}", class_names)
    if labels.size and int(labels.min()) < 0:
        negative = sorted({int(v) for v in labels[labels < 0]})
        raise SequenceDataError(
            f"{path}: {y_key!r} must be class indices >= 0, got negative labels "
            f"{negative[:10]} (first at series {int(np.flatnonzero(labels < 0)[0])})"
        )
    if class_names is None:
        top = int(labels.max())
        missing = sorted(set(range(top + 1)) - set(labels.tolist()))
        if missing:
            raise SequenceDataError(
                f"{path}: labels must be contiguous from 0 (0 .. {top}); classes {missing[:10]} "
                "never occur: add a 'class_names' key naming every class"
            )
        class_names = tuple(str(i) for i in range(top + 1))
    bad = np.flatnonzero(labels >= len(class_names))
    if bad.size:
        raise SequenceDataError(
            f"{path}: {y_key!r} must be in [0, {len(class_names)}) ({classes(len(class_names))} "
            f"in {names_from}), got {int(labels[bad[0]])} at series {int(bad[0])}"
        )
    return SequenceDataset.from_arrays(series, labels, class_names, source=f"{path}[{x_key}]")


_OTHER_SEPARATORS = {"\t": "tabs", ";": "semicolons", "|": "vertical bars"}
# A number as written in a CSV file: ASCII digits, optional sign, point and exponent, or nan/inf
# (refused later as non-finite, with their step). Python's float() is looser: it takes '1_000',
# other scripts' digits and surrounding whitespace, none of which a CSV writer produces.
_NUMBER = re.compile(
    r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:nan|inf|infinity)", re.I
)


def _is_number(text: str) -> bool:
    return _NUMBER.fullmatch(text) is not None


def _read_csv_numbers(path: Path) -> list[list[float]]:
    """The rows of numbers of a comma-separated series file (rules: :func:`read_series_file`)."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: drops a BOM (Excel's "CSV UTF-8")
    except UnicodeDecodeError as exc:
        raise SequenceDataError(f"{path}: not a readable .csv file (not UTF-8 text)") from exc
    table = []
    first = True
    for line_no, row in enumerate(text.splitlines(), 1):  # line numbers of the file, from 1
        if not row.strip():
            continue
        try:
            cells = [c.strip() for c in next(csv.reader([row]))]  # csv: quoted fields "1","2"
        except csv.Error as exc:  # e.g. a field over csv.field_size_limit()
            raise SequenceDataError(
                f"{path}: line {line_no}: not a readable CSV row: {exc}"
            ) from exc
        is_first, first = first, False
        if all(_is_number(c) for c in cells):
            table.append([float(c) for c in cells])
            continue
        found = [name for sep, name in _OTHER_SEPARATORS.items() if sep in row]
        if not found and any(len(c.split()) > 1 and all(map(_is_number, c.split())) for c in cells):
            found = ["spaces"]
        if found:
            raise SequenceDataError(
                f"{path}: line {line_no}: expected comma-separated numbers, got a row "
                f"separated by {found[0]}: {row!r}"
            )
        if is_first and not any(_is_number(c) for c in cells):
            continue  # a header of channel names
        column, cell = next((j, c) for j, c in enumerate(cells, 1) if not _is_number(c))
        raise SequenceDataError(
            f"{path}: line {line_no}: not numbers: {row!r} (column {column}: {cell!r})"
        )
    return table


def read_series_file(
    path: str | os.PathLike[str], *, num_channels: int, allow_pickle: bool = False
) -> list[np.ndarray]:
    """Unlabelled series to classify: float32 [T_i, D] each.

    ``.csv``: one series, one row per time step, D comma-separated numbers per row (UTF-8, a
    byte-order mark allowed; fields may be quoted, ``"1","2"``; blank lines skipped). A number
    is written with ASCII digits, an optional sign, point and exponent (``1_000`` and other
    forms Python's ``float`` takes are refused). The first non-blank row is skipped as a header
    only when none of its cells is a number (channel names); a first row mixing names and
    numbers is refused, like any other row that is not all numbers, and so is a row of numbers
    separated by spaces, tabs, semicolons or bars. Errors give the file's line number (from 1).
    ``.npz``: ``x`` (a single series [T, D], a padded [N, T, D] with optional ``lengths``, or a
    list); labels, if present, are ignored. Raises :class:`SequenceDataError` naming the file for
    another suffix, a ``.csv`` separated by tabs, semicolons or bars instead of commas (naming
    the separator found), a wrong channel count (D must equal ``num_channels``, the model's), an
    empty series or a non-finite value."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        if not path.is_file():
            raise SequenceDataError(f"{path}: {path_problem(path)}")
        table = _read_csv_numbers(path)
        if not table:
            raise SequenceDataError(f"{path}: the series is empty (no rows of numbers)")
        widths = {len(r) for r in table}
        if len(widths) > 1:
            raise SequenceDataError(
                f"{path}: every row must have the same number of columns, got {sorted(widths)}"
            )
        series = [np.array(table, dtype=np.float64).reshape(len(table), -1)]  # float32: below
    elif suffix == ".npz":
        z = _load_npz(path, allow_pickle)
        if "x" not in z:
            raise SequenceDataError(f"{path}: missing key 'x' (found {sorted(z)})")
        x = z["x"]
        if x.dtype != object and x.ndim == 2:
            x = x[None]  # one series [T, D] -> [1, T, D]
        series = _series_from(path, x, z.get("lengths"), "x")
    else:
        raise SequenceDataError(f"{path}: expected a .csv or .npz series file, got {suffix!r}")
    placeholder = tuple(str(i) for i in range(1))
    data = SequenceDataset.from_arrays(
        series, np.zeros(len(series), np.int64), placeholder, source=str(path)
    )
    if data.num_channels != num_channels:
        raise SequenceDataError(
            f"{path}: the model reads {num_channels} channels per step, the file has "
            f"{data.num_channels}"
        )
    return list(data.series)
