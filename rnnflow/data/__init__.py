"""Data: IDX files, the table of registered datasets (MNIST, Fashion-MNIST, KMNIST, EMNIST) and
its loaders, and user images.

Import by path (``from rnnflow.data import load_split``); ``rnnflow`` itself does not re-export
these. This package depends on no other rnnflow package.

The names are imported on first use (PEP 562), so that the CLI's argument parsers, which read
only the dataset table (``rnnflow.data.catalog``), do not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rnnflow._lazy_names import lazy_names as _lazy_names

if TYPE_CHECKING:
    from rnnflow.data.datasets import (
        CLASS_NAMES,
        DATASETS,
        BatchIterator,
        DatasetChecksumError,
        DatasetNotFoundError,
        DatasetSpec,
        IdxFile,
        canonical_name,
        download_dataset,
        load_split,
        resolve_dataset_dir,
        train_val_split,
        verify_dataset_dir,
    )
    from rnnflow.data.download import DownloadError, fetch, tqdm_progress
    from rnnflow.data.idx import IdxFormatError, read_idx, write_idx
    from rnnflow.data.images import ImageError, load_image, preprocess_image

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "BatchIterator",
    "DatasetChecksumError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "DownloadError",
    "IdxFile",
    "IdxFormatError",
    "ImageError",
    "canonical_name",
    "download_dataset",
    "fetch",
    "load_image",
    "load_split",
    "preprocess_image",
    "read_idx",
    "resolve_dataset_dir",
    "tqdm_progress",
    "train_val_split",
    "verify_dataset_dir",
    "write_idx",
]

_HOME = {
    "CLASS_NAMES": "rnnflow.data.datasets",
    "DATASETS": "rnnflow.data.datasets",
    "BatchIterator": "rnnflow.data.datasets",
    "DatasetChecksumError": "rnnflow.data.datasets",
    "DatasetNotFoundError": "rnnflow.data.datasets",
    "DatasetSpec": "rnnflow.data.datasets",
    "IdxFile": "rnnflow.data.datasets",
    "canonical_name": "rnnflow.data.datasets",
    "download_dataset": "rnnflow.data.datasets",
    "load_split": "rnnflow.data.datasets",
    "resolve_dataset_dir": "rnnflow.data.datasets",
    "train_val_split": "rnnflow.data.datasets",
    "verify_dataset_dir": "rnnflow.data.datasets",
    "DownloadError": "rnnflow.data.download",
    "fetch": "rnnflow.data.download",
    "tqdm_progress": "rnnflow.data.download",
    "IdxFormatError": "rnnflow.data.idx",
    "read_idx": "rnnflow.data.idx",
    "write_idx": "rnnflow.data.idx",
    "ImageError": "rnnflow.data.images",
    "load_image": "rnnflow.data.images",
    "preprocess_image": "rnnflow.data.images",
}

__getattr__, __dir__ = _lazy_names(__name__, _HOME, __all__)
