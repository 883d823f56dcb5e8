"""The dataset table, resolution order, downloading through it, load_split, splits and batches.

Resolution and download run on a tiny fake dataset (patched in as "mnist") served from 127.0.0.1.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnflow.data import datasets as ds
from rnnflow.data.datasets import (
    CLASS_NAMES,
    DATASETS,
    BatchIterator,
    DatasetChecksumError,
    DatasetNotFoundError,
    canonical_name,
    load_split,
    resolve_dataset_dir,
    train_val_split,
    verify_dataset_dir,
)
from rnnflow.data.idx import IdxFormatError

# ------------------------------------------------------------------------------------------------
# The table


def test_table_rows_are_well_formed() -> None:
    assert set(DATASETS) == {
        "mnist",
        "fashion-mnist",
        "kmnist",
        "emnist-letters",
        "emnist-balanced",
    }
    digits = {"sha256": 64, "md5": 32}
    for name, spec in DATASETS.items():
        assert spec.name == name and CLASS_NAMES[name] == spec.class_names
        assert len(set(spec.class_names)) == len(spec.class_names)  # distinct names
        assert (spec.bundle is None) == bool(spec.mirrors)  # files from mirrors, or one archive
        assert all(re.fullmatch(r"https?://\S+/", m) for m in spec.mirrors)
        prefix, test = ("", "t10k") if spec.bundle is None else (f"{name}-", "test")
        assert [f.name for f in spec.files] == [
            f"{prefix}train-images-idx3-ubyte",
            f"{prefix}train-labels-idx1-ubyte",
            f"{prefix}{test}-images-idx3-ubyte",
            f"{prefix}{test}-labels-idx1-ubyte",
        ]
        n_train, n_test = (spec.files[1].size - 8, spec.files[3].size - 8)  # from label files
        assert [f.size for f in spec.files] == [
            16 + n_train * 784,
            8 + n_train,
            16 + n_test * 784,
            8 + n_test,
        ]
        for f in spec.files:
            checksum = f.archive_checksum
            assert re.fullmatch(f"[0-9a-f]{{{digits[checksum.algorithm]}}}", checksum.hexdigest)
            assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256)
            assert f.archive == f.name + ".gz"
            assert f.archive_size is None or 0 < f.archive_size < f.size
        checksums = [f.archive_checksum.hexdigest for f in spec.files]
        assert len(set(checksums)) == 4
    # every checksum of every row is distinct: no row copied from another
    every = [f.archive_checksum.hexdigest for s in DATASETS.values() for f in s.files]
    assert len(set(every)) == len(every)
    sizes = {n: (s.files[1].size - 8, s.files[3].size - 8) for n, s in DATASETS.items()}
    assert sizes == {
        "mnist": (60000, 10000),
        "fashion-mnist": (60000, 10000),
        "kmnist": (60000, 10000),
        "emnist-letters": (124800, 20800),  # Cohen et al. 2017, table II
        "emnist-balanced": (112800, 18800),
    }
    assert CLASS_NAMES["mnist"] == tuple("0123456789")
    assert (
        CLASS_NAMES["fashion-mnist"][0] == "T-shirt/top"
        and CLASS_NAMES["fashion-mnist"][9] == "Ankle boot"
    )
    assert CLASS_NAMES["kmnist"] == ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
    assert len(CLASS_NAMES["emnist-letters"]) == 26
    assert CLASS_NAMES["emnist-letters"][0] == "A/a" and CLASS_NAMES["emnist-letters"][25] == "Z/z"
    # EMNIST's balanced mapping file: 0-9, A-Z, then a b d e f g h n q r t (labels 36..46)
    assert "".join(CLASS_NAMES["emnist-balanced"]) == (
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt"
    )


def test_how_each_row_is_checked_and_read() -> None:
    """Only MNIST and Fashion-MNIST publish uncompressed checksums; the rest are checked on the
    .gz as published. KMNIST is fetched per file by sha256; EMNIST from NIST's zip, by md5."""
    for name in ("mnist", "fashion-mnist", "kmnist"):
        spec = DATASETS[name]
        assert all(f.archive_checksum.algorithm == "sha256" for f in spec.files)
        assert (spec.bundle, spec.label_offset, spec.transposed) == (None, 0, False)
    assert all(f.sha256 for n in ("mnist", "fashion-mnist") for f in DATASETS[n].files)
    assert all(
        f.archive_size for n in ("mnist", "fashion-mnist", "kmnist") for f in DATASETS[n].files
    )
    assert DATASETS["kmnist"].mirrors == ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",)
    letters, balanced = DATASETS["emnist-letters"], DATASETS["emnist-balanced"]
    assert letters.bundle is balanced.bundle is not None
    bundle = letters.bundle
    assert bundle.urls == ("https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",)
    assert (bundle.checksum.algorithm, bundle.checksum.hexdigest, bundle.size) == (
        "md5",
        "58c8d27c78d21e728a6bc7b3cc06412e",
        561753746,
    )
    assert bundle.member_dir == "gzip/" and bundle.name == "emnist-gzip.zip"
    for spec, offset in ((letters, 1), (balanced, 0)):
        assert spec.transposed and spec.label_offset == offset
        assert all(f.sha256 is None and f.archive_checksum.algorithm == "md5" for f in spec.files)


def test_the_run_config_offers_every_registered_dataset() -> None:
    from typing import get_args

    from rnnflow.training.config import TrainConfig, field_type

    assert set(get_args(field_type("dataset"))) == {*DATASETS, "idx"}
    counts = {name: TrainConfig(dataset=name).num_classes for name in DATASETS}
    assert counts == {
        "mnist": 10,
        "fashion-mnist": 10,
        "kmnist": 10,
        "emnist-letters": 26,
        "emnist-balanced": 47,
    }


def test_a_checksum_must_be_well_formed() -> None:
    from rnnflow.data.catalog import Checksum

    with pytest.raises(
        ValueError, match=r"Checksum: md5 must be 32 lowercase hex digits, got 'AB'"
    ):
        Checksum("md5", "AB")
    with pytest.raises(
        ValueError, match=r"Checksum: algorithm must be 'sha256' or 'md5', got 'crc'"
    ):
        Checksum("crc", "00")  # type: ignore[arg-type]


def test_names_and_aliases() -> None:
    assert canonical_name("fashion_mnist") == "fashion-mnist"
    assert canonical_name("MNIST") == "mnist"
    with pytest.raises(
        ValueError,
        match=r"unknown dataset 'cifar10': expected one of emnist-balanced, emnist-letters, "
        r"fashion-mnist, kmnist, mnist$",
    ):
        canonical_name("cifar10")
    assert canonical_name("emnist_letters") == "emnist-letters"
    assert canonical_name("Kuzushiji-MNIST") == "kmnist"


# ------------------------------------------------------------------------------------------------
# Resolution order


@pytest.fixture
def patched(fake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Install the fake dataset as "mnist", with one system folder under tmp_path."""
    system = tmp_path / "usr-share-datasets-mnist"

    def install(mirrors: tuple[str, ...] = (), **changes):
        spec = fake.spec(mirrors, system_dirs=(str(system),), **changes)
        monkeypatch.setitem(DATASETS, spec.name, spec)
        return spec

    install()
    return install, system


def test_resolution_order(fake, patched, isolated_env: Path, tmp_path: Path, monkeypatch) -> None:
    _, system = patched
    given, env, cache = tmp_path / "given", tmp_path / "env", isolated_env / "rnnflow" / "mnist"
    fake.write(system)
    assert resolve_dataset_dir("mnist", download=False) == system
    fake.write(cache)
    assert resolve_dataset_dir("mnist", download=False) == cache
    fake.write(env / "mnist")  # $RNNFLOW_DATA_DIR/<name>
    monkeypatch.setenv("RNNFLOW_DATA_DIR", str(env))
    assert resolve_dataset_dir("mnist", download=False) == env / "mnist"
    fake.write(env)  # $RNNFLOW_DATA_DIR itself beats its <name> sub-folder
    assert resolve_dataset_dir("mnist", download=False) == env
    fake.write(given, compressed=False)  # data_dir beats everything; uncompressed files are fine
    assert resolve_dataset_dir("mnist", given, download=False) == given


def test_a_folder_missing_one_file_is_skipped(fake, patched, tmp_path: Path) -> None:
    _, system = patched
    fake.write(system)
    partial = fake.write(tmp_path / "partial")
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    assert resolve_dataset_dir("mnist", partial, download=False) == system


def test_dotted_file_names_are_accepted(fake, patched, tmp_path: Path) -> None:
    folder = fake.write(tmp_path / "dotted", compressed=False)
    for f in folder.iterdir():
        f.rename(folder / f.name.replace("-idx", ".idx"))
    x, y = load_split("mnist", "test", folder, download=False)
    assert x.shape == (12, 28, 28)
    images, labels = fake.arrays["t10k-images-idx3-ubyte"], fake.arrays["t10k-labels-idx1-ubyte"]
    assert np.array_equal(x.numpy(), images / np.float32(255)) and np.array_equal(y.numpy(), labels)


def test_offline_error_lists_every_place_and_every_fix(fake, patched, dead_url: str) -> None:
    install, system = patched
    install(
        (dead_url,),
        name="fashion-mnist",
        aliases=("fashion_mnist",),
        os_package="dataset-fashion-mnist",
    )
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_dataset_dir("fashion_mnist")
    message = str(info.value)
    expected = [
        r"dataset 'fashion-mnist' not found and not downloaded\. Searched:",
        r"1\. data_dir/--data-dir: not set",
        r"2\. \$RNNFLOW_DATA_DIR: not set",
        r"3\. user cache \S+/xdg-cache/rnnflow/fashion-mnist: no such folder",
        rf"4\. system folder {re.escape(str(system))}: no such folder",
        r"5\. download into \S+/rnnflow/fashion-mnist: failed:\n"
        r"    http://127\.0\.0\.1:\d+/train-images-idx3-ubyte\.gz \(try 1/3\): cannot connect",
        r"To fix it, any of:",
        r"- pass --data-dir DIR \(data_dir=DIR\) naming a folder that holds "
        r"train-images-idx3-ubyte\.gz, train-labels-idx1-ubyte\.gz, ",
        r"- install the Debian package: sudo apt-get install dataset-fashion-mnist",
        r"- connect to the internet and run: rnnflow download fashion-mnist",
    ]
    for pattern in expected:
        assert re.search(pattern, message), f"{pattern!r} not in:\n{message}"


def test_no_download_when_told_not_to(patched) -> None:
    with pytest.raises(
        DatasetNotFoundError, match=r"5\. download into \S+: not attempted \(download=False\)"
    ):
        resolve_dataset_dir("mnist", download=False)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("rnnflow.data.download.time.sleep", lambda s: None)


def test_download_into_the_user_cache_then_load(fake, patched, server, isolated_env: Path) -> None:
    install, _ = patched
    install((server.url("/dead/"), fake.serve(server)))
    seen: list[str] = []

    def progress(name: str):
        seen.append(name)
        return lambda done, total: None

    folder = resolve_dataset_dir("mnist", progress=progress)
    assert folder == isolated_env / "rnnflow" / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f + ".gz" for f in fake.gz)
    assert seen == [f + ".gz" for f in fake.gz]
    x, y = load_split("mnist", "train")
    assert x.dtype == torch.float32 and x.shape == (30, 28, 28)
    torch.testing.assert_close(x, torch.from_numpy(fake.arrays["train-images-idx3-ubyte"]) / 255.0)
    assert y.dtype == torch.int64
    assert y.tolist() == fake.arrays["train-labels-idx1-ubyte"].tolist()
    hits = sum(server.hits.values())
    load_split("mnist", "test")  # found in the cache now: no more requests
    assert sum(server.hits.values()) == hits


def test_download_goes_into_data_dir_and_only_fetches_missing_files(
    fake, patched, server, tmp_path
) -> None:
    install, _ = patched
    install((fake.serve(server),))
    target = tmp_path / "given" / "mnist"
    target.mkdir(parents=True)
    (target / "train-images-idx3-ubyte").write_bytes(fake.raw["train-images-idx3-ubyte"])
    assert resolve_dataset_dir("mnist", tmp_path / "given") == target
    assert server.hits["/good/train-images-idx3-ubyte.gz"] == 0
    assert server.hits["/good/t10k-labels-idx1-ubyte.gz"] == 1


def test_a_corrupted_download_leaves_nothing(fake, patched, server, isolated_env: Path) -> None:
    install, _ = patched
    for name, data in fake.gz.items():
        server.route(f"/evil/{name}.gz", server.reply(data[:-8] + bytes(8)))
    install((server.url("/evil/"),))
    with pytest.raises(
        DatasetNotFoundError, match=r"sha256 mismatch: expected [0-9a-f]{64}, got [0-9a-f]{64}"
    ):
        resolve_dataset_dir("mnist")
    assert not (isolated_env / "rnnflow" / "mnist").exists()


# ------------------------------------------------------------------------------------------------
# load_split checks


def test_a_local_file_with_the_wrong_content_is_refused(fake, patched, tmp_path: Path) -> None:
    folder = fake.write(tmp_path / "d", compressed=False)
    data = bytearray(fake.raw["t10k-labels-idx1-ubyte"])
    data[-1] = (data[-1] + 1) % 10
    (folder / "t10k-labels-idx1-ubyte").write_bytes(bytes(data))
    expected = fake.spec().test_labels.sha256
    with pytest.raises(
        DatasetChecksumError,
        match=rf"mnist: {re.escape(str(folder))}/t10k-labels-idx1-ubyte: sha256 of the "
        rf"uncompressed data is [0-9a-f]{{64}}, expected {expected}: the file is corrupt or from "
        r"another dataset",
    ):
        load_split("mnist", "test", folder)
    with pytest.raises(DatasetChecksumError, match="t10k-labels-idx1-ubyte: sha256"):
        verify_dataset_dir("mnist", folder)
    load_split("mnist", "train", folder)  # the other split is fine


def test_label_count_must_match_image_count(make_fake, monkeypatch, tmp_path: Path) -> None:
    short = make_fake(n_test=12)
    other = make_fake(n_test=11, seed=1)
    short.raw["t10k-labels-idx1-ubyte"] = other.raw["t10k-labels-idx1-ubyte"]
    short.gz["t10k-labels-idx1-ubyte"] = other.gz["t10k-labels-idx1-ubyte"]
    monkeypatch.setitem(DATASETS, "mnist", short.spec())
    folder = short.write(tmp_path / "d")
    with pytest.raises(
        ValueError,
        match=r"load_split: label count != image count: t10k-labels-idx1-ubyte has shape \[11\], "
        r"t10k-images-idx3-ubyte has 12 images",
    ):
        load_split("mnist", "test", folder)


def test_labels_must_be_class_indices(fake, monkeypatch, tmp_path: Path) -> None:
    labels = np.full(30, 10, dtype=np.uint8)
    fake.raw["train-labels-idx1-ubyte"] = bytes([0, 0, 8, 1, 0, 0, 0, 30]) + labels.tobytes()
    fake.gz["train-labels-idx1-ubyte"] = b""  # not used: files are written uncompressed
    monkeypatch.setitem(DATASETS, "mnist", fake.spec())
    folder = fake.write(tmp_path / "d", compressed=False)
    with pytest.raises(
        ValueError, match=r"load_split: train-labels-idx1-ubyte: labels must be in \[0, 9\], got 10"
    ):
        load_split("mnist", "train", folder)


def test_bad_split_name(patched) -> None:
    with pytest.raises(ValueError, match=r"load_split: split must be 'train' or 'test', got 'val'"):
        load_split("mnist", "val")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# train_val_split


def data(n: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.arange(n, dtype=torch.float32)[:, None, None].expand(n, 28, 28).clone()
    return images, torch.arange(n)


def test_train_val_split_is_disjoint_complete_and_seeded() -> None:
    x, y = data()
    (tx, ty), (vx, vy) = train_val_split(x, y, val_size=20, seed=3)
    assert len(vy) == 20 and len(ty) == 80
    assert sorted(ty.tolist() + vy.tolist()) == list(range(100))
    assert ty.tolist() == sorted(ty.tolist())  # original order kept
    torch.testing.assert_close(vx[:, 0, 0], vy.float())  # images travel with their labels
    (_, ty2), (_, vy2) = train_val_split(x, y, val_size=20, seed=3)
    assert vy2.tolist() == vy.tolist()
    (_, _), (_, vy3) = train_val_split(x, y, val_size=20, seed=4)
    assert vy3.tolist() != vy.tolist()
    (_, _), (_, vf) = train_val_split(x, y, val_size=0.1, seed=0)
    assert len(vf) == 10


@pytest.mark.parametrize(
    ("val_size", "message"),
    [
        (0, r"val_size must leave both parts non-empty \(0 < n_val < 100\), got n_val=0"),
        (100, r"val_size must leave both parts non-empty .*, got n_val=100"),
        (1.0, r"a float val_size must be in \(0, 1\), got 1\.0"),
        (0.001, r"val_size must leave both parts non-empty .*, got n_val=0"),
        (True, r"val_size must be an int or a float, got True"),
    ],
)
def test_train_val_split_rejects_bad_sizes(val_size, message: str) -> None:
    with pytest.raises(ValueError, match=rf"train_val_split: {message}"):
        train_val_split(*data(), val_size=val_size, seed=0)


def test_train_val_split_needs_matching_lengths() -> None:
    x, y = data()
    with pytest.raises(
        ValueError, match=r"images and labels must have the same length, got 100 and 99"
    ):
        train_val_split(x, y[:99], val_size=10, seed=0)


# ------------------------------------------------------------------------------------------------
# BatchIterator


def labels_of(batches) -> list[list[int]]:
    return [y.tolist() for _, y in batches]


def test_each_epoch_is_a_seeded_permutation() -> None:
    loader = BatchIterator(*data(), 32, shuffle=True, seed=7)
    assert len(loader) == 4
    first = labels_of(loader)
    assert [len(b) for b in first] == [32, 32, 32, 4]
    assert sorted(sum(first, [])) == list(range(100))
    assert loader.epoch == 1  # a full pass advances the epoch
    second = labels_of(loader)
    assert second != first and sorted(sum(second, [])) == list(range(100))
    again = BatchIterator(*data(), 32, shuffle=True, seed=7)
    assert labels_of(again) == first and labels_of(again) == second
    other = BatchIterator(*data(), 32, shuffle=True, seed=8)
    assert labels_of(other) != first


def test_images_travel_with_labels() -> None:
    for x, y in BatchIterator(*data(), 16, shuffle=True, seed=0):
        assert x.shape == (len(y), 28, 28)
        torch.testing.assert_close(x[:, 5, 5], y.float())


def test_set_epoch_and_iter_from_resume_exactly() -> None:
    loader = BatchIterator(*data(), 10, shuffle=True, seed=1)
    loader.set_epoch(5)
    full = labels_of(loader)
    assert loader.epoch == 6
    resumed = BatchIterator(*data(), 10, shuffle=True, seed=1)
    assert labels_of(resumed.iter_from(5, 7)) == full[7:]
    assert resumed.epoch == 6
    assert labels_of(resumed.iter_from(5, 10)) == []
    assert resumed.order(5).tolist() == sum(full, [])


def test_a_partial_pass_does_not_advance_the_epoch() -> None:
    loader = BatchIterator(*data(), 10, shuffle=True, seed=1)
    for i, _ in enumerate(loader):
        if i == 2:
            break
    assert loader.epoch == 0


def test_no_shuffle_gives_views_in_order_and_drop_last() -> None:
    x, y = data()
    loader = BatchIterator(x, y, 30, shuffle=False, drop_last=True)
    assert len(loader) == 3
    batches = list(loader)
    assert labels_of(batches) == [list(range(i, i + 30)) for i in (0, 30, 60)]
    assert batches[0][0].data_ptr() == x.data_ptr()  # a view, no copy


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, r"BatchIterator: batch_size must be a positive int, got 0"),
        ({"batch_size": 2.5}, r"BatchIterator: batch_size must be a positive int, got 2\.5"),
        (
            {"labels": torch.zeros(3)},
            r"BatchIterator: images and labels must have the same length, got 100 and 3",
        ),
    ],
)
def test_batch_iterator_rejects_bad_arguments(kwargs, message: str) -> None:
    x, y = data()
    args = {"images": x, "labels": y, "batch_size": 10} | kwargs
    with pytest.raises(ValueError, match=message):
        BatchIterator(**args, shuffle=True, seed=0)


def test_iter_from_rejects_bad_positions() -> None:
    loader = BatchIterator(*data(), 10, shuffle=True, seed=0)
    with pytest.raises(
        ValueError, match=r"BatchIterator.iter_from: start_batch must be in \[0, 10\], got 11"
    ):
        loader.iter_from(0, 11)
    with pytest.raises(
        ValueError, match=r"BatchIterator.set_epoch: epoch must be an int >= 0, got -1"
    ):
        loader.set_epoch(-1)


def test_epoch_seeds_do_not_collide() -> None:
    seeds = {ds._epoch_seed(s, e) for s in range(50) for e in range(50)}
    assert len(seeds) == 2500


def test_a_gzip_bomb_in_the_data_folder_stops_at_the_published_size(
    fake, patched, tmp_path: Path
) -> None:
    import gzip

    folder = fake.write(tmp_path / "d")
    bomb = folder / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(bomb, "wb") as f:  # claims 300 M labels: 300 MB, published size 20 bytes
        f.write(bytes([0, 0, 8, 1]) + (300_000_000).to_bytes(4, "big"))
        for _ in range(300):
            f.write(bytes(1 << 20))
    size = fake.spec().test_labels.size
    with pytest.raises(
        IdxFormatError,
        match=rf"{re.escape(str(bomb))}: header declares 300000000 uint8 \(300000008 bytes in "
        rf"all\), more than the {size} bytes expected of this file",
    ):
        load_split("mnist", "test", folder)
