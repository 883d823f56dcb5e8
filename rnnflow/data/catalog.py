"""The table of MNIST-style IDX datasets: files, published checksums, mirrors, class names.

Torch-free and numpy-free (``rnnflow download --help`` lists the names without importing torch);
``rnnflow.data.datasets`` re-exports every name and does the finding, verifying and loading.
Where each row's checksums come from is written above the row, and in docs/DATA.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "Bundle",
    "Checksum",
    "DatasetSpec",
    "IdxFile",
    "Split",
    "canonical_name",
    "check_digest",
]

Split = Literal["train", "test"]
Algorithm = Literal["sha256", "md5"]

_HEX_LENGTH: dict[str, int] = {"sha256": 64, "md5": 32}


@dataclass(frozen=True)
class Checksum:
    """A published digest: ``algorithm`` ("sha256" or "md5") and its lowercase ``hexdigest``.

    md5 is kept where it is all a dataset's publishers give (the EMNIST files); it detects
    corruption and truncation, not a deliberate forgery.
    """

    algorithm: Algorithm
    hexdigest: str

    def __post_init__(self) -> None:
        check_digest("Checksum", self.algorithm, self.hexdigest)


def check_digest(where: str, algorithm: object, hexdigest: object) -> None:
    """``ValueError`` naming ``where`` unless ``hexdigest`` is a well-formed lowercase hex digest
    of ``algorithm`` ("sha256": 64 digits, "md5": 32)."""
    length = _HEX_LENGTH.get(algorithm) if isinstance(algorithm, str) else None
    if length is None:
        raise ValueError(f"{where}: algorithm must be 'sha256' or 'md5', got {algorithm!r}")
    if not isinstance(hexdigest, str) or not re.fullmatch(f"[0-9a-f]{{{length}}}", hexdigest):
        raise ValueError(
            f"{where}: {algorithm} must be {length} lowercase hex digits, got {hexdigest!r}"
        )


def _sha256(hexdigest: str) -> Checksum:
    return Checksum("sha256", hexdigest)


def _md5(hexdigest: str) -> Checksum:
    return Checksum("md5", hexdigest)


@dataclass(frozen=True)
class IdxFile:
    """One IDX file of a dataset, with its published checksums and sizes.

    ``name`` is the canonical uncompressed name; the published archive is ``name + ".gz"``.
    ``archive_checksum`` (and ``archive_size`` where published) is of that ``.gz`` as published;
    ``sha256`` of the uncompressed IDX bytes where it is published (MNIST, Fashion-MNIST), which
    also verifies a copy stored uncompressed or recompressed. ``size`` is the uncompressed size
    (header + payload, from the published image counts): decompression stops there.
    """

    name: str
    archive_checksum: Checksum
    archive_size: int | None
    size: int
    sha256: str | None = None

    @property
    def archive(self) -> str:
        return self.name + ".gz"


@dataclass(frozen=True)
class Bundle:
    """One archive holding a dataset's ``.gz`` files (EMNIST's ``gzip.zip`` holds every split).

    Downloaded once, verified against ``checksum``/``size``, kept as ``name`` beside the split
    folders (other splits extract from the same copy), and the split's members
    ``member_dir + IdxFile.archive`` are extracted and verified one by one.
    """

    name: str  # the local file name
    urls: tuple[str, ...]
    checksum: Checksum
    size: int
    member_dir: str  # folder of the .gz members inside the archive, with a trailing "/"


@dataclass(frozen=True)
class DatasetSpec:
    """A four-file IDX dataset: train/test images and labels, where to get them, class names.

    ``label_offset``: the files' first label (EMNIST letters: 1 for "a"), subtracted on load.
    ``transposed``: the files store each image column by column (EMNIST); the loader transposes
    so that row r of an image is its r-th row from the top, time step r, as in MNIST.
    """

    name: str
    mirrors: tuple[str, ...]  # base URLs; file URL = mirror + IdxFile.archive (none: a bundle)
    train_images: IdxFile
    train_labels: IdxFile
    test_images: IdxFile
    test_labels: IdxFile
    class_names: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    os_package: str | None = None  # Debian package that installs the files in a system folder
    system_dirs: tuple[str, ...] = field(default=())
    bundle: Bundle | None = None
    label_offset: int = 0
    transposed: bool = False

    @property
    def files(self) -> tuple[IdxFile, ...]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)

    def split_files(self, split: Split) -> tuple[IdxFile, IdxFile]:
        """(images, labels) files of ``split``."""
        if split == "train":
            return self.train_images, self.train_labels
        return self.test_images, self.test_labels


_IMAGE_BYTES = 28 * 28


def _files(
    prefix: str = "", test: str = "t10k", **rows: tuple[Checksum, int | None, str | None, int]
) -> dict[str, IdxFile]:
    """``train_images=(archive_checksum, archive_size, sha256, size), ...`` -> IdxFile per role.

    File names are ``<prefix>train-images-idx3-ubyte``, ..., ``<prefix><test>-labels-idx1-ubyte``.
    """
    names = {
        "train_images": f"{prefix}train-images-idx3-ubyte",
        "train_labels": f"{prefix}train-labels-idx1-ubyte",
        "test_images": f"{prefix}{test}-images-idx3-ubyte",
        "test_labels": f"{prefix}{test}-labels-idx1-ubyte",
    }
    return {
        role: IdxFile(names[role], checksum, archive_size, size, content)
        for role, (checksum, archive_size, content, size) in rows.items()
    }


def _emnist_files(split: str, n_train: int, n_test: int, md5s: tuple[str, ...]) -> dict:
    """The four ``gzip/emnist-<split>-*.gz`` members: md5 of each ``.gz``, sizes from counts."""
    sizes = (16 + n_train * _IMAGE_BYTES, 8 + n_train, 16 + n_test * _IMAGE_BYTES, 8 + n_test)
    roles = ("train_images", "train_labels", "test_images", "test_labels")
    return _files(
        f"emnist-{split}-",
        "test",
        **{r: (_md5(h), None, None, n) for r, h, n in zip(roles, md5s, sizes, strict=True)},
    )


# EMNIST ships as one zip of every split: https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip,
# the URL torchvision's EMNIST uses, with its md5; the size is TensorFlow Datasets' (url_checksums/
# emnist.txt, for the same file at NIST's older www.itl.nist.gov address, which now redirects).
_EMNIST_ZIP = Bundle(
    name="emnist-gzip.zip",
    urls=("https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",),
    checksum=_md5("58c8d27c78d21e728a6bc7b3cc06412e"),
    size=561753746,
    member_dir="gzip/",
)

# Checksums: archive sha256/size as published by TensorFlow Datasets' url_checksums (mnist.txt,
# fashion_mnist.txt); uncompressed sha256 as published by several projects, and recomputed here
# from Debian's dataset-fashion-mnist (whose files' md5 match torchvision's raw_data md5 list).
# See docs/DATA.md. Adding another IDX dataset is one more entry.
DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        **_files(
            train_images=(
                _sha256("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
                9912422,
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                47040016,
            ),
            train_labels=(
                _sha256("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
                28881,
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                60008,
            ),
            test_images=(
                _sha256("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
                1648877,
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                7840016,
            ),
            test_labels=(
                _sha256("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
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
                _sha256("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
                26421880,
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                47040016,
            ),
            train_labels=(
                _sha256("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
                29515,
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                60008,
            ),
            test_images=(
                _sha256("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
                4422102,
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                7840016,
            ),
            test_labels=(
                _sha256("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
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
    # KMNIST (Kuzushiji-MNIST, CODH/ROIS, github.com/rois-codh/kmnist): its download script
    # publishes no checksum. Archive sha256 and sizes: TensorFlow Datasets' url_checksums/kmnist.txt
    # (torchvision's KMNIST table has their md5s: bdb82020..., e144d726..., 5c965bf0...,
    # 7320c461...). No uncompressed checksum is published: the .gz files are checked on load.
    # Class names: torchvision's (the romanised hiragana of rois-codh's kmnist_classmap.csv).
    "kmnist": DatasetSpec(
        name="kmnist",
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),  # plain HTTP: sha256-checked
        **_files(
            train_images=(
                _sha256("51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4"),
                18165135,
                None,
                16 + 60000 * _IMAGE_BYTES,
            ),
            train_labels=(
                _sha256("e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17"),
                29497,
                None,
                8 + 60000,
            ),
            test_images=(
                _sha256("edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5"),
                3041136,
                None,
                16 + 10000 * _IMAGE_BYTES,
            ),
            test_labels=(
                _sha256("20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c"),
                5120,
                None,
                8 + 10000,
            ),
        ),
        class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        aliases=("kuzushiji-mnist",),
    ),
    # EMNIST (Cohen et al. 2017, arXiv:1702.05373): the splits' .gz members of _EMNIST_ZIP. Their
    # md5: deeplearning4j's EmnistFetcher and the `mnists` package (pczarnik/mnists), which agree.
    # Counts from the paper. Images are stored transposed. Class names: torchvision's EMNIST
    # (letters: its 27 names less "N/A", for labels 1..26 that merge upper and lower case).
    "emnist-letters": DatasetSpec(
        name="emnist-letters",
        mirrors=(),
        **_emnist_files(
            "letters",
            124800,
            20800,
            (
                "8795078f199c478165fe18db82625747",
                "c16de4f1848ddcdddd39ab65d2a7be52",
                "382093a19703f68edac6d01b8dfdfcad",
                "d4108920cd86601ec7689a97f2de7f59",
            ),
        ),
        class_names=tuple(f"{c.upper()}/{c}" for c in "abcdefghijklmnopqrstuvwxyz"),
        aliases=("emnist_letters",),
        bundle=_EMNIST_ZIP,
        label_offset=1,
        transposed=True,
    ),
    "emnist-balanced": DatasetSpec(
        name="emnist-balanced",
        mirrors=(),
        **_emnist_files(
            "balanced",
            112800,
            18800,
            (
                "4041b0d6f15785d3fa35263901b5496b",
                "7a35cc7b2b7ee7671eddf028570fbd20",
                "6818d20fe2ce1880476f747bbc80b22b",
                "acd3694070dcbf620e36670519d4b32f",
            ),
        ),
        # digits, capitals, and the 11 lower-case letters not merged with their capital
        class_names=tuple("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt"),
        aliases=("emnist_balanced",),
        bundle=_EMNIST_ZIP,
        transposed=True,
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
