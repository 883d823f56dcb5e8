"""Data: IDX files, the MNIST / Fashion-MNIST table and loaders, and user images.

Import by path (``from rnnflow.data import load_split``); ``rnnflow`` itself does not re-export
these. This package depends on no other rnnflow package.
"""

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
from rnnflow.data.download import DownloadError, fetch, text_progress
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
    "text_progress",
    "train_val_split",
    "verify_dataset_dir",
    "write_idx",
]
