"""Any MNIST-layout IDX dataset in a folder (``--dataset idx --data-dir DIR``): no checksum table.

``DIR`` holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
and ``t10k-labels-idx1-ubyte``, each raw or ``.gz`` (the names of ``rnnflow.data.catalog``).
Images are uint8 [N, H, W] of any H x W (row r is time step r: the model reads H steps of W
pixels); labels are uint8 [N]. Classes: ``classes.txt`` (one distinct, non-blank name per line;
blank lines only after the last name) when present, else ``0 .. max label``; at least 2 classes;
every label must be < the number of classes and, without ``classes.txt``, every class must
occur in the training labels (contiguous from 0). The sha256 of each file's uncompressed IDX
bytes is returned so a run records exactly what it saw; :func:`check_recorded_sha256` compares
them with a run's record by IDX name, so compressing or decompressing a file changes nothing.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rnnflow._paths import path_problem
from rnnflow.data.catalog import Split
from rnnflow.data.idx import parse_idx, read_idx_bytes

__all__ = [
    "CLASSES_FILE",
    "IDX_FILES",
    "IdxFolderError",
    "IdxSplit",
    "check_recorded_sha256",
    "load_idx_folder_split",
]

IDX_FILES: dict[Split, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASSES_FILE = "classes.txt"


class IdxFolderError(ValueError):
    """A file of an IDX folder is missing, malformed or inconsistent (the message names it)."""


@dataclass(frozen=True)
class IdxSplit:
    """One split of an IDX folder.

    ``images`` float32 [N, H, W] in [0, 1]; ``labels`` int64 [N]; ``class_names`` one per class;
    ``sha256`` {file name as found: sha256 hex of its uncompressed IDX bytes}.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    sha256: dict[str, str]


def _find(folder: Path, name: str) -> Path:
    for candidate in (name, name + ".gz"):
        if (folder / candidate).is_file():
            return folder / candidate
    raise IdxFolderError(f"--dataset idx: {folder}: missing {name} (or {name}.gz)")


def _read(path: Path, sha256: dict[str, str]) -> np.ndarray:
    # A user file has no published size: bound the IDX bytes by what a raw file holds, and a
    # gzip file by 1032 times its size (deflate's maximum ratio), so a bomb stops early.
    size = path.stat().st_size
    data = read_idx_bytes(path, max_bytes=size * 1032 if path.name.endswith(".gz") else size)
    sha256[path.name] = hashlib.sha256(data).hexdigest()
    return parse_idx(data, source=str(path))


def _class_names(folder: Path, labels_path: Path, labels: np.ndarray) -> tuple[str, ...]:
    top = int(labels.max()) if labels.size else -1
    path = folder / CLASSES_FILE
    if path.is_file():
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        while lines and not lines[-1]:  # blank lines after the last name shift nothing
            lines.pop()
        seen: dict[str, int] = {}
        for number, name in enumerate(lines, 1):
            if not name:
                raise IdxFolderError(
                    f"--dataset idx: {path} line {number} is blank: one class name per line, "
                    "in label order (a blank line would shift every later name)"
                )
            if name in seen:
                raise IdxFolderError(
                    f"--dataset idx: {path} line {number}: class name {name!r} repeats line "
                    f"{seen[name]}; class names must be distinct"
                )
            seen[name] = number
        names = tuple(lines)
        _check_class_count(str(path), len(names))
        if top >= len(names):
            raise IdxFolderError(
                f"--dataset idx: {path} names {len(names)} classes, but {labels_path} has "
                f"label {top}"
            )
        return names
    present = set(np.unique(labels).tolist())
    missing = sorted(set(range(top + 1)) - present)
    if missing:
        raise IdxFolderError(
            f"--dataset idx: {labels_path}: labels must be contiguous from 0 (0 .. {top}), "
            f"classes {missing[:10]} never occur; add a {CLASSES_FILE} naming every class"
        )
    _check_class_count(f"{labels_path} (labels 0 .. {top}, no {CLASSES_FILE})", top + 1)
    return tuple(str(i) for i in range(top + 1))


def _check_class_count(source: str, count: int) -> None:
    if count < 2:
        raise IdxFolderError(
            f"--dataset idx: a classifier needs at least 2 classes, {source} gives {count}"
        )


def _idx_name(name: str) -> str:
    return name.removesuffix(".gz")


def check_recorded_sha256(
    folder: str | os.PathLike[str], recorded: tuple[str, ...], found: dict[str, str]
) -> None:
    """Refuse files of ``folder`` whose sha256 differs from a run's record.

    ``recorded``: the run's ``data_sha256`` (``"file name=sha256"`` entries); ``found``:
    :attr:`IdxSplit.sha256` of the files read now (any subset of the four). Both are of the
    uncompressed IDX bytes, so they are compared by IDX name: ``x`` and ``x.gz`` are the same
    file. Raises :class:`IdxFolderError` naming each differing file and both digests (and
    files the record lacks); nothing when they agree.
    """
    was = {_idx_name(n): h for n, _, h in (entry.partition("=") for entry in recorded)}
    differ = [
        f"{name}: recorded {was.get(_idx_name(name), 'nothing')}, found {digest}"
        for name, digest in found.items()
        if was.get(_idx_name(name)) != digest
    ]
    if differ:
        raise IdxFolderError(
            f"--dataset idx: the files in {folder} differ from those this run recorded "
            f"(sha256 of the uncompressed IDX bytes): {'; '.join(differ)}"
        )


def load_idx_folder_split(
    data_dir: str | os.PathLike[str], split: Split, *, num_classes: int | None = None
) -> IdxSplit:
    """Load ``split`` ("train" or "test") of the IDX folder ``data_dir`` (see the module docstring).

    Classes come from ``classes.txt`` or the training labels (also for the test split).
    ``num_classes``, when given (a run's recorded count), bounds the labels instead.
    Raises :class:`IdxFolderError` for a missing file, images that are not uint8 [N, H, W],
    labels that are not uint8 [N] of the same N, a label outside the classes or a ``classes.txt``
    with too few names; ``IdxFormatError`` (a ``ValueError``) for a malformed IDX file.
    """
    if split not in IDX_FILES:
        raise ValueError(f"load_idx_folder_split: split must be 'train' or 'test', got {split!r}")
    folder = Path(data_dir).expanduser()
    if not folder.is_dir():
        raise IdxFolderError(
            f"--dataset idx: --data-dir {folder}: {path_problem(folder, 'folder', folder=True)}"
        )
    sha256: dict[str, str] = {}
    images_path, labels_path = (_find(folder, n) for n in IDX_FILES[split])
    images = _read(images_path, sha256)
    labels = _read(labels_path, sha256)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IdxFolderError(
            f"--dataset idx: {images_path}: expected uint8 images [N, H, W], got "
            f"{images.dtype} {list(images.shape)}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise IdxFolderError(
            f"--dataset idx: {labels_path}: expected uint8 labels [N], got "
            f"{labels.dtype} {list(labels.shape)}"
        )
    if len(labels) != len(images):
        raise IdxFolderError(
            f"--dataset idx: label count != image count: {labels_path} has {len(labels)} labels, "
            f"{images_path} has {len(images)} images"
        )
    if split == "train":
        names = _class_names(folder, labels_path, labels)
    else:
        train_labels_path = _find(folder, IDX_FILES["train"][1])
        names = _class_names(folder, train_labels_path, _read(train_labels_path, {}))
    limit = len(names) if num_classes is None else num_classes
    if labels.size and int(labels.max()) >= limit:
        raise IdxFolderError(
            f"--dataset idx: {labels_path}: label {int(labels.max())} is out of range: "
            f"{limit} classes (0 .. {limit - 1})"
        )
    x = torch.from_numpy(images).to(torch.float32).div_(255.0)  # [N, H, W] in [0, 1]
    y = torch.from_numpy(labels).to(torch.int64)  # [N]
    return IdxSplit(x, y, names, sha256)
