"""The table of MNIST-style IDX datasets: files, published checksums, mirrors, class names.

Torch-free and numpy-free (``rnnflow download --help`` lists the names without importing torch);
``rnnflow.data.datasets`` re-exports every name and does the finding, verifying and loading.
Where the checksums come from: ``rnnflow.data.datasets`` and docs/DATA.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["CLASS_NAMES", "DATASETS", "DatasetSpec", "IdxFile", "Split", "canonical_name"]

Split = Literal["train", "test"]


@dataclass(frozen=True)
class IdxFile:
    """One IDX file of a dataset, with the published checksums and sizes.

    ``name`` is the canonical uncompressed name; mirrors serve ``name + ".gz"``.
    """

    name: str
    gz_sha256: str  # of the .gz archive the mirrors serve
    gz_size: int
    sha256: str  # of the uncompressed IDX bytes (holds however the file is compressed locally)
    size: int

    @property
    def archive(self) -> str:
        return self.name + ".gz"


@dataclass(frozen=True)
class DatasetSpec:
    """A four-file IDX dataset: train/test images and labels, mirrors, class names."""

    name: str
    mirrors: tuple[str, ...]  # base URLs; file URL = mirror + IdxFile.archive
    train_images: IdxFile
    train_labels: IdxFile
    test_images: IdxFile
    test_labels: IdxFile
    class_names: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    os_package: str | None = None  # Debian package that installs the files in a system folder
    system_dirs: tuple[str, ...] = field(default=())

    @property
    def files(self) -> tuple[IdxFile, ...]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)

    def split_files(self, split: Split) -> tuple[IdxFile, IdxFile]:
        """(images, labels) files of ``split``."""
        if split == "train":
            return self.train_images, self.train_labels
        return self.test_images, self.test_labels


def _files(**rows: tuple[str, int, str, int]) -> dict[str, IdxFile]:
    """``train_images=(gz_sha256, gz_size, sha256, size), ...`` -> IdxFile per role."""
    names = {
        "train_images": "train-images-idx3-ubyte",
        "train_labels": "train-labels-idx1-ubyte",
        "test_images": "t10k-images-idx3-ubyte",
        "test_labels": "t10k-labels-idx1-ubyte",
    }
    return {role: IdxFile(names[role], *row) for role, row in rows.items()}


# Checksums: archive sha256/size as published by TensorFlow Datasets' url_checksums (mnist.txt,
# fashion_mnist.txt); uncompressed sha256 as published by several projects, and recomputed here
# from Debian's dataset-fashion-mnist (whose files' md5 match torchvision's raw_data md5 list).
# See docs/DATA.md. Adding another IDX dataset (KMNIST, ...) is one more entry.
DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        **_files(
            train_images=(
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                9912422,
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                47040016,
            ),
            train_labels=(
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                28881,
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                60008,
            ),
            test_images=(
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                1648877,
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                7840016,
            ),
            test_labels=(
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                4542,
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                10008,
            ),
        ),
        class_names=tuple(str(d) for d in range(10)),
        system_dirs=("/usr/share/datasets/mnist",),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        mirrors=(
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
            # S3 *website* endpoints serve plain HTTP only; the sha256 check makes that safe.
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ),
        **_files(
            train_images=(
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                26421880,
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                47040016,
            ),
            train_labels=(
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                29515,
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                60008,
            ),
            test_images=(
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                4422102,
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                7840016,
            ),
            test_labels=(
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                5148,
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                10008,
            ),
        ),
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        aliases=("fashion_mnist",),
        os_package="dataset-fashion-mnist",
        system_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
}

CLASS_NAMES: dict[str, tuple[str, ...]] = {n: s.class_names for n, s in DATASETS.items()}


def canonical_name(name: str) -> str:
    """``"fashion_mnist"`` -> ``"fashion-mnist"``; raises ``ValueError`` for an unknown name."""
    key = name.strip().lower() if isinstance(name, str) else name
    for known_name, spec in DATASETS.items():
        if key == known_name or key in spec.aliases:
            return known_name
    known = ", ".join(sorted(DATASETS))
    raise ValueError(f"unknown dataset {name!r}: expected one of {known}")
