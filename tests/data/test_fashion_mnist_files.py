"""The real Fashion-MNIST files from Debian's dataset-fashion-mnist (`make data` installs them).

Debian recompressed the archives (their .gz bytes differ from upstream's), so the published
checksum that must hold is the one of the uncompressed IDX data; these tests check all four.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from rnnflow.data.datasets import (
    CLASS_NAMES,
    DATASETS,
    load_split,
    resolve_dataset_dir,
    verify_dataset_dir,
)
from rnnflow.data.idx import read_idx, read_idx_bytes

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
SPEC = DATASETS["fashion-mnist"]

pytestmark = pytest.mark.skipif(
    not all(
        (DEBIAN_DIR / f.archive).is_file() or (DEBIAN_DIR / f.name).is_file() for f in SPEC.files
    ),
    reason=f"Fashion-MNIST is not installed in {DEBIAN_DIR}: run `make data` or "
    "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu)",
)

# Published sha256 of the uncompressed files (zalandoresearch/fashion-mnist data, as listed by
# several projects; their md5s equal torchvision's FashionMNIST raw_data md5 list).
PUBLISHED_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
PUBLISHED_MD5 = {  # torchvision FashionMNIST.raw_data (uncompressed)
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}


def debian_file(name: str) -> Path:
    raw = DEBIAN_DIR / name
    return raw if raw.is_file() else DEBIAN_DIR / (name + ".gz")


@pytest.mark.parametrize("name", sorted(PUBLISHED_SHA256))
def test_files_match_the_published_checksums(name: str) -> None:
    data = read_idx_bytes(debian_file(name))
    assert hashlib.sha256(data).hexdigest() == PUBLISHED_SHA256[name]
    assert hashlib.md5(data).hexdigest() == PUBLISHED_MD5[name]
    (spec_file,) = [f for f in SPEC.files if f.name == name]
    assert spec_file.sha256 == PUBLISHED_SHA256[name] and spec_file.size == len(data)


def test_read_idx_shapes() -> None:
    assert read_idx(debian_file("train-images-idx3-ubyte")).shape == (60000, 28, 28)
    assert read_idx(debian_file("train-labels-idx1-ubyte")).shape == (60000,)
    assert read_idx(debian_file("t10k-images-idx3-ubyte")).shape == (10000, 28, 28)
    assert read_idx(debian_file("t10k-labels-idx1-ubyte")).shape == (10000,)


def test_the_system_folder_is_found_without_configuration(monkeypatch) -> None:
    # conftest's isolated_env already empties the user cache and unsets $RNNFLOW_DATA_DIR
    assert "RNNFLOW_DATA_DIR" not in os.environ
    assert resolve_dataset_dir("fashion_mnist", download=False) == DEBIAN_DIR
    assert set(verify_dataset_dir("fashion-mnist", DEBIAN_DIR)) == set(PUBLISHED_SHA256)


@pytest.mark.parametrize(("split", "n"), [("train", 60000), ("test", 10000)])
def test_load_split(split: str, n: int) -> None:
    x, y = load_split("fashion-mnist", split, download=False)  # type: ignore[arg-type]
    assert x.shape == (n, 28, 28) and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert y.shape == (n,) and y.dtype == torch.int64
    assert y.bincount().tolist() == [n // 10] * 10  # balanced classes 0..9
    first = {"train": [9, 0, 0, 3, 0, 2, 7, 2, 5, 5], "test": [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]}
    assert y[:10].tolist() == first[split]
    assert CLASS_NAMES["fashion-mnist"][int(y[0])] == "Ankle boot"
