"""MNIST-style IDX datasets: where the files are found, and loading a split (table: catalog.py).

``DATASETS`` is data (torchvision-style ``resources`` tables, but several mirrors). Each file
carries the published checksum of its ``.gz`` archive (``archive_checksum``: sha256, or md5 where
that is all there is; checked on download) and, where published (MNIST, Fashion-MNIST), the
``sha256`` of its uncompressed IDX bytes. Every load checks the uncompressed sha256 when there is
one (so a file recompressed by someone else, as Debian's ``dataset-fashion-mnist`` package does,
or stored uncompressed, is still verified), else the archive's checksum on the ``.gz`` file itself
(KMNIST, EMNIST: an uncompressed copy of those cannot be verified, and is refused by name).
EMNIST's splits come out of one zip (:class:`~rnnflow.data.catalog.Bundle`), downloaded and
verified once, whose members are extracted and verified one by one.

Resolution order of :func:`resolve_dataset_dir` (the first folder holding all four files wins):

1. ``data_dir`` (the CLI's ``--data-dir``): that folder itself, then ``data_dir/<name>``;
2. ``$RNNFLOW_DATA_DIR``: that folder, then ``$RNNFLOW_DATA_DIR/<name>``;
3. the user cache ``$XDG_CACHE_HOME/rnnflow/<name>`` (default ``~/.cache/rnnflow/<name>``);
4. system folders where OS packages install data (``/usr/share/datasets/<name>``: Debian);
5. download from the table's mirrors into ``data_dir/<name>``, else ``$RNNFLOW_DATA_DIR/<name>``,
   else the user cache.

If all fail, :class:`DatasetNotFoundError` lists every place searched and the ways to fix it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from rnnflow._paths import path_problem
from rnnflow.data.catalog import (  # re-exported: the table's home is rnnflow.data.catalog
    CLASS_NAMES,
    DATASETS,
    Bundle,
    Checksum,
    DatasetSpec,
    IdxFile,
    Split,
    canonical_name,
)
from rnnflow.data.download import (
    ChecksumMismatchError,
    DownloadError,
    ProgressCallback,
    fetch,
    file_digest,
    save_verified,
)
from rnnflow.data.idx import parse_idx, read_idx_bytes

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "BatchIterator",
    "DatasetChecksumError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "IdxFile",
    "canonical_name",
    "download_dataset",
    "download_dir",
    "find_dataset_dir",
    "load_split",
    "resolve_dataset_dir",
    "train_val_split",
    "user_cache_dir",
    "verify_dataset_dir",
]

logger = logging.getLogger(__name__)

ProgressFactory = Callable[[str], ProgressCallback]
"""Called with a file name before its download; returns that file's progress callback."""

ENV_DATA_DIR = "RNNFLOW_DATA_DIR"


class DatasetNotFoundError(FileNotFoundError):
    """No folder holds the dataset and downloading failed; the message lists where we looked."""


class DatasetChecksumError(ValueError):
    """A local dataset file's content does not match the published sha256."""


# ----------------------------------------------------------------------------------------------
# Names and places


def _spec(name: str) -> DatasetSpec:
    return DATASETS[canonical_name(name)]


def user_cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/rnnflow/<name>``, or ``~/.cache/rnnflow/<name>`` when it is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "rnnflow" / canonical_name(name)


def _file_in(folder: Path, f: IdxFile) -> Path | None:
    """The copy of ``f`` in ``folder``: uncompressed preferred (faster), then ``.gz``; the ``.gz``
    first where only the archive's checksum is published (only it can be verified).

    Also accepts the ``train-images.idx3-ubyte`` spelling some unpackers produce.
    """
    dotted = f.name.replace("-idx", ".idx")
    candidates = (f.name, f.archive, dotted, dotted + ".gz")
    if f.sha256 is None:
        candidates = (f.archive, dotted + ".gz", f.name, dotted)
    for candidate in candidates:
        path = folder / candidate
        if path.is_file():
            return path
    return None


def _missing(folder: Path, spec: DatasetSpec) -> list[str]:
    return [f.archive for f in spec.files if _file_in(folder, f) is None]


def _search_path(
    spec: DatasetSpec, data_dir: str | os.PathLike[str] | None
) -> list[tuple[str, Path | None]]:
    """(label, folder or None when that source is not configured), in resolution order."""
    places: list[tuple[str, Path | None]] = []
    if data_dir is None:
        places.append(("data_dir/--data-dir", None))
    else:
        root = Path(data_dir).expanduser()
        places += [("data_dir/--data-dir", root), ("data_dir/--data-dir", root / spec.name)]
    env = os.environ.get(ENV_DATA_DIR)
    if not env:
        places.append((f"${ENV_DATA_DIR}", None))
    else:
        root = Path(env).expanduser()
        places += [(f"${ENV_DATA_DIR}", root), (f"${ENV_DATA_DIR}", root / spec.name)]
    places.append(("user cache", user_cache_dir(spec.name)))
    places += [("system folder", Path(d)) for d in spec.system_dirs]
    return places


def download_dir(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where a download of ``name`` goes: ``data_dir/<name>``, ``$RNNFLOW_DATA_DIR/<name>`` or
    the user cache, in that order of preference."""
    spec = _spec(name)
    if data_dir is not None:
        return Path(data_dir).expanduser() / spec.name
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser() / spec.name
    return user_cache_dir(spec.name)


def find_dataset_dir(
    name: str, data_dir: str | os.PathLike[str] | None = None
) -> tuple[Path | None, list[str]]:
    """The first local folder holding all four files of ``name`` (or None), and a report line
    per place searched. Does not download."""
    spec = _spec(name)
    report: list[str] = []
    for label, folder in _search_path(spec, data_dir):
        if folder is None:
            report.append(f"{label}: not set")
        elif not folder.is_dir():
            report.append(f"{label} {folder}: {path_problem(folder, 'folder', folder=True)}")
        elif missing := _missing(folder, spec):
            report.append(f"{label} {folder}: missing {', '.join(missing)}")
        else:
            report.append(f"{label} {folder}: found")
            return folder, report
    return None, report


def resolve_dataset_dir(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    progress: ProgressFactory | None = None,
) -> Path:
    """The folder holding the four IDX files of ``name`` (``.gz`` or not), downloading if needed.

    Searches, in order: ``data_dir`` (and ``data_dir/<name>``), ``$RNNFLOW_DATA_DIR`` (and
    ``/<name>``), the user cache, system folders (Debian: ``/usr/share/datasets/<name>``); then,
    if ``download``, fetches the missing files into :func:`download_dir`. ``progress`` is called
    with each file name and returns that file's progress callback (see ``tqdm_progress``).

    Raises ``ValueError`` for an unknown name and :class:`DatasetNotFoundError` listing every
    place searched, the download failure, and the fixes.
    """
    spec = _spec(name)
    folder, report = find_dataset_dir(spec.name, data_dir)
    if folder is not None:
        logger.info("%s: using %s", spec.name, folder)
        return folder
    target = download_dir(spec.name, data_dir)
    if not download:
        report.append(f"download into {target}: not attempted (download=False)")
    else:
        try:
            return download_dataset(spec.name, target, progress=progress)
        except DownloadError as exc:
            lines = "\n".join(f"    {f}" for f in exc.failures)
            report.append(f"download into {target}: failed:\n{lines}")
        except OSError as exc:  # e.g. the target folder cannot be created
            report.append(f"download into {target}: failed: {exc}")
    raise DatasetNotFoundError(_not_found_message(spec, report))


def _not_found_message(spec: DatasetSpec, report: list[str]) -> str:
    searched = "\n".join(f"  {i}. {line}" for i, line in enumerate(report, 1))
    kinds = "(gzip or uncompressed)" if spec.files[0].sha256 else "(as published)"
    fixes = [
        f"pass --data-dir DIR (data_dir=DIR) naming a folder that holds "
        f"{', '.join(f.archive for f in spec.files)} {kinds}",
    ]
    if spec.bundle is not None:
        fixes.append(
            f"put the archive they come in ({spec.bundle.urls[0]}) into DIR as "
            f"{spec.bundle.name} and pass --data-dir DIR: the files are extracted from it"
        )
    if spec.os_package:
        fixes.append(f"install the Debian package: sudo apt-get install {spec.os_package}")
    fixes.append(
        f"connect to the internet and run: rnnflow download {spec.name} (--data-dir DIR puts "
        "it in DIR/<name>; training then needs the same --data-dir DIR)"
    )
    how = "\n".join(f"  - {fix}" for fix in fixes)
    return (
        f"dataset {spec.name!r} not found and not downloaded. Searched:\n{searched}\n"
        f"To fix it, any of:\n{how}"
    )


def download_dataset(
    name: str,
    dest_dir: str | os.PathLike[str],
    *,
    progress: ProgressFactory | None = None,
    timeout: float = 30.0,
    retries: int = 3,
) -> Path:
    """Download the files of ``name`` missing from ``dest_dir`` (each verified against its
    published checksum, renamed atomically); returns ``dest_dir``.

    A dataset that comes in a bundle (EMNIST) takes its archive from ``dest_dir``'s parent
    (``<root>/emnist-gzip.zip``, kept there for the other splits) or downloads it there, checks
    it, and extracts and checks the split's members. Raises
    :class:`~rnnflow.data.download.DownloadError` when the download fails and
    :class:`DatasetChecksumError` for a local archive that is corrupt, unreadable or lacks a member.
    """
    spec = _spec(name)
    dest = Path(dest_dir).expanduser()
    created = not dest.exists()
    try:
        missing = [f for f in spec.files if _file_in(dest, f) is None]
        if missing and spec.bundle is not None:
            _extract_from_bundle(spec, spec.bundle, dest, missing, progress, timeout, retries)
        for f in missing if spec.bundle is None else ():
            logger.info("%s: downloading %s into %s", spec.name, f.archive, dest)
            fetch(
                [mirror + f.archive for mirror in spec.mirrors],
                dest / f.archive,
                **{f.archive_checksum.algorithm: f.archive_checksum.hexdigest},
                size=f.archive_size,
                timeout=timeout,
                retries=retries,
                progress=progress(f.archive) if progress is not None else None,
            )
    except BaseException:
        if created and dest.is_dir() and not any(dest.iterdir()):
            dest.rmdir()  # leave no empty folder behind a failed first download
        raise
    return dest


def _extract_from_bundle(
    spec: DatasetSpec,
    bundle: Bundle,
    dest: Path,
    missing: list[IdxFile],
    progress: ProgressFactory | None,
    timeout: float,
    retries: int,
) -> None:
    checksum = bundle.checksum
    archive = dest.parent / bundle.name
    if archive.is_file():
        _check_file(spec, archive, checksum, "the archive is corrupt or another file")
    else:
        logger.info("%s: downloading %s into %s", spec.name, bundle.name, dest.parent)
        fetch(
            list(bundle.urls),
            archive,
            **{checksum.algorithm: checksum.hexdigest},
            size=bundle.size,
            timeout=timeout,
            retries=retries,
            progress=progress(bundle.name) if progress is not None else None,
        )
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as z:
            for f in missing:
                member = bundle.member_dir + f.archive
                if member not in z.NameToInfo:
                    raise DatasetChecksumError(
                        f"{spec.name}: {archive} has no member {member}: not EMNIST's archive?"
                    )
                with z.open(member) as source:
                    save_verified(
                        source,
                        dest / f.archive,
                        **{f.archive_checksum.algorithm: f.archive_checksum.hexdigest},
                    )
                logger.info("%s: extracted %s from %s", spec.name, member, archive)
    except ChecksumMismatchError as exc:
        raise DatasetChecksumError(f"{spec.name}: {archive}: a member's {exc}") from exc
    except (zipfile.BadZipFile, EOFError) as exc:  # a zip damaged after its check, or a bad CRC
        raise DatasetChecksumError(f"{spec.name}: {archive}: not a readable zip: {exc}") from exc


# ----------------------------------------------------------------------------------------------
# Loading


def _read_verified(folder: Path, spec: DatasetSpec, f: IdxFile) -> np.ndarray:
    path = _file_in(folder, f)
    if path is None:
        raise DatasetNotFoundError(f"{spec.name}: {folder} has no {f.name} or {f.archive}")
    if f.sha256 is None:  # only the archive's checksum is published: check the file as it is
        _check_archive(spec, path, f)
    data = read_idx_bytes(path, max_bytes=f.size)  # a bomb stops at the published size
    actual = hashlib.sha256(data).hexdigest()
    if f.sha256 is not None and actual != f.sha256:
        raise DatasetChecksumError(
            f"{spec.name}: {path}: sha256 of the uncompressed data is {actual}, expected "
            f"{f.sha256}: the file is corrupt or from another dataset; delete it (it will be "
            "downloaded again) or give another --data-dir"
        )
    return parse_idx(data, source=str(path))


def _check_archive(spec: DatasetSpec, path: Path, f: IdxFile) -> None:
    expected = f.archive_checksum
    if not path.name.endswith(".gz"):
        raise DatasetChecksumError(
            f"{spec.name}: {path}: an uncompressed copy cannot be verified ({spec.name}'s "
            f"publishers give checksums of the .gz files only): put {f.archive} as published in "
            f"{path.parent} instead (`rnnflow download {spec.name}` fetches it), or train on "
            f"unverified files with --dataset idx --data-dir {path.parent}"
        )
    _check_file(spec, path, expected, "the file is corrupt, recompressed or from another dataset")


def _check_file(spec: DatasetSpec, path: Path, expected: Checksum, why: str) -> None:
    """:class:`DatasetChecksumError` unless ``path``'s bytes have the ``expected`` digest."""
    actual = file_digest(path, expected.algorithm)
    if actual != expected.hexdigest:
        raise DatasetChecksumError(
            f"{spec.name}: {path}: {expected.algorithm} of the file is {actual}, expected "
            f"{expected.hexdigest}: {why}; delete it (it will be downloaded again) or give "
            "another --data-dir"
        )


def verify_dataset_dir(name: str, folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Check every file of ``name`` in ``folder`` against its published checksum (of the
    uncompressed data where published, else of the ``.gz`` file).

    Returns {canonical file name: path}. Raises :class:`DatasetNotFoundError` for a missing file,
    :class:`DatasetChecksumError` for a mismatch.
    """
    spec = _spec(name)
    folder = Path(folder)
    found: dict[str, Path] = {}
    for f in spec.files:
        _read_verified(folder, spec, f)
        found[f.name] = _file_in(folder, f)  # type: ignore[assignment]
    return found


def load_split(
    name: str,
    split: Split,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of one split, each file verified against its published checksum.

    Returns ``images`` float32 [N, 28, 28] in [0, 1] (row r of an image, from the top, is time
    step r; EMNIST's column-major files are transposed to that) and ``labels`` int64 [N] in
    [0, number of classes) (EMNIST letters' 1-based labels are shifted down by one). N is 60000
    for "train" and 10000 for "test" (MNIST, Fashion-MNIST, KMNIST); see docs/DATA.md for EMNIST.
    """
    if split not in ("train", "test"):
        raise ValueError(f"load_split: split must be 'train' or 'test', got {split!r}")
    spec = _spec(name)
    folder = resolve_dataset_dir(spec.name, data_dir, download=download)
    images_file, labels_file = spec.split_files(split)
    images = _read_verified(folder, spec, images_file)  # uint8 [N, 28, 28]
    labels = _read_verified(folder, spec, labels_file)  # uint8 [N]
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"load_split: {images_file.name}: expected uint8 images [N, H, W], "
            f"got {images.dtype} {list(images.shape)}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(
            f"load_split: label count != image count: {labels_file.name} has shape "
            f"{list(labels.shape)}, {images_file.name} has {len(images)} images"
        )
    low, high = spec.label_offset, spec.label_offset + len(spec.class_names) - 1
    if labels.size and not low <= int(labels.min()) <= int(labels.max()) <= high:
        bad = int(labels.min()) if int(labels.min()) < low else int(labels.max())
        raise ValueError(
            f"load_split: {labels_file.name}: labels must be in [{low}, {high}], got {bad}"
        )
    if spec.transposed:  # stored column by column: make row r of each image its r-th row
        images = np.ascontiguousarray(images.transpose(0, 2, 1))  # [N, H, W]
    x = torch.from_numpy(images).to(torch.float32).div_(255.0)  # [N, 28, 28] in [0, 1]
    y = torch.from_numpy(labels).to(torch.int64) - spec.label_offset  # [N], from 0
    return x, y


# ----------------------------------------------------------------------------------------------
# Splitting and batching


def train_val_split(
    images: torch.Tensor, labels: torch.Tensor, *, val_size: int | float, seed: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Carve a held-out validation set from a training set, reproducibly.

    ``val_size``: a count (int, 0 < n < N) or a fraction (float, 0 < f < 1, rounded to a count).
    The same ``seed`` always picks the same examples; both parts keep the original order.
    Returns ``((train_x, train_y), (val_x, val_y))``. Use it on the training split only: the test
    split is never used for model selection.
    """
    n = len(images)
    if len(labels) != n:
        raise ValueError(
            f"train_val_split: images and labels must have the same length, got {n} and "
            f"{len(labels)}"
        )
    if isinstance(val_size, bool) or not isinstance(val_size, int | float):
        raise ValueError(f"train_val_split: val_size must be an int or a float, got {val_size!r}")
    if isinstance(val_size, float):
        if not 0.0 < val_size < 1.0:
            raise ValueError(f"train_val_split: a float val_size must be in (0, 1), got {val_size}")
        n_val = round(n * val_size)
    else:
        n_val = val_size
    if not 0 < n_val < n:
        raise ValueError(
            f"train_val_split: val_size must leave both parts non-empty (0 < n_val < {n}), "
            f"got n_val={n_val}"
        )
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator)  # [N]
    val_idx = perm[:n_val].sort().values.to(images.device)
    train_idx = perm[n_val:].sort().values.to(images.device)
    return (
        (images.index_select(0, train_idx), labels.index_select(0, train_idx.to(labels.device))),
        (images.index_select(0, val_idx), labels.index_select(0, val_idx.to(labels.device))),
    )


def _epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for (seed, epoch): nearby pairs give unrelated orders."""
    state = np.random.SeedSequence([seed % 2**64, epoch]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class BatchIterator:
    """Seeded, resumable mini-batches over in-memory tensors.

    ``for x, y in loader`` yields ``x`` [B, 28, 28] and ``y`` [B] (the last batch is smaller
    unless ``drop_last``). With ``shuffle``, epoch ``e``'s order is a pure function of
    ``(seed, e)``: :meth:`set_epoch` picks the epoch, and :meth:`iter_from` starts at any batch,
    so a run resumed from a checkpoint sees exactly the batches it would have seen.

    A full pass over epoch ``e`` leaves :attr:`epoch` at ``e + 1``, so consecutive ``for`` loops
    walk epochs 0, 1, 2, ... without calling ``set_epoch`` (calling it each epoch, as with
    ``DistributedSampler``, gives the same result). Without shuffling, batches are views of
    ``images``; with it, fresh tensors. Put ``images``/``labels`` on the GPU first for the
    fastest loop: indices follow the tensors' device.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(
                f"BatchIterator: images and labels must have the same length, got "
                f"{len(images)} and {len(labels)}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"BatchIterator: batch_size must be a positive int, got {batch_size!r}"
            )
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter(self)`` produce epoch ``epoch``'s order."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"BatchIterator.set_epoch: epoch must be an int >= 0, got {epoch!r}")
        self.epoch = epoch

    def order(self, epoch: int) -> torch.Tensor:
        """The example indices of ``epoch`` in visiting order, int64 [N] on the CPU."""
        n = len(self.images)
        if not self.shuffle:
            return torch.arange(n)
        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        return torch.randperm(n, generator=generator)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iter_from(self.epoch, 0)

    def iter_from(
        self, epoch: int, start_batch: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start_batch, start_batch + 1, ...`` of epoch ``epoch`` (to resume mid-epoch).

        Equal to skipping the first ``start_batch`` batches of ``set_epoch(epoch); iter(self)``,
        without computing them. Completing the pass sets :attr:`epoch` to ``epoch + 1``.
        """
        self.set_epoch(epoch)
        if isinstance(start_batch, bool) or not isinstance(start_batch, int):
            raise ValueError(
                f"BatchIterator.iter_from: start_batch must be an int, got {start_batch!r}"
            )
        if not 0 <= start_batch <= len(self):
            raise ValueError(
                f"BatchIterator.iter_from: start_batch must be in [0, {len(self)}], "
                f"got {start_batch}"
            )
        return self._batches(epoch, start_batch)

    def _batches(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, bs = len(self.images), self.batch_size
        if self.shuffle:
            order = self.order(epoch)  # [N]
            img_idx = order.to(self.images.device)
            lab_idx = order.to(self.labels.device)
        for b in range(start, len(self)):
            lo, hi = b * bs, min((b + 1) * bs, n)
            if self.shuffle:
                yield (
                    self.images.index_select(0, img_idx[lo:hi]),  # [B, 28, 28]
                    self.labels.index_select(0, lab_idx[lo:hi]),  # [B]
                )
            else:
                yield self.images[lo:hi], self.labels[lo:hi]
        self.epoch = epoch + 1

    def __repr__(self) -> str:
        return (
            f"BatchIterator(n={len(self.images)}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last}, "
            f"epoch={self.epoch})"
        )
