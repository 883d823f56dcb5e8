"""KMNIST and EMNIST through the real table's code paths, on fake files served from 127.0.0.1.

KMNIST publishes checksums of its .gz files only (no uncompressed sha256): downloaded, found and
loaded by those. EMNIST comes as one zip of every split with md5s: the zip is downloaded once,
each split's members are extracted and checked; images are stored transposed and the letters'
labels start at 1. The real rows' values are checked in test_datasets.py.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rnnflow.cli import main
from rnnflow.data.catalog import Bundle, Checksum
from rnnflow.data.datasets import (
    DATASETS,
    DatasetChecksumError,
    DatasetNotFoundError,
    IdxFile,
    load_split,
    verify_dataset_dir,
)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("rnnflow.data.download.time.sleep", lambda s: None)


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def digest(algorithm: str, data: bytes) -> Checksum:
    return Checksum(algorithm, hashlib.new(algorithm, data).hexdigest())  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# KMNIST: .gz checksums only


@pytest.fixture
def kmnist(fake, server, monkeypatch: pytest.MonkeyPatch):
    """The fake dataset as "kmnist": archive sha256 and sizes only, as the real row has."""
    base = fake.serve(server, "/kmnist/")
    files = {
        role: IdxFile(
            f.name, digest("sha256", fake.gz[f.name]), len(fake.gz[f.name]), len(fake.raw[f.name])
        )
        for role, f in zip(
            ("train_images", "train_labels", "test_images", "test_labels"),
            fake.spec().files,
            strict=True,
        )
    }
    spec = dataclasses.replace(DATASETS["kmnist"], mirrors=(base,), **files)
    monkeypatch.setitem(DATASETS, "kmnist", spec)
    return spec


def test_kmnist_downloads_and_loads_by_its_archive_checksums(
    fake, kmnist, server, tmp_path: Path
) -> None:
    x, y = load_split("kmnist", "train", tmp_path / "d")
    folder = tmp_path / "d" / "kmnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f.archive for f in kmnist.files)
    np.testing.assert_array_equal(x.numpy() * 255, fake.arrays["train-images-idx3-ubyte"])
    assert y.tolist() == fake.arrays["train-labels-idx1-ubyte"].tolist()
    assert server.hits["/kmnist/train-images-idx3-ubyte.gz"] == 1
    load_split("kmnist", "test", tmp_path / "d")  # found now: nothing fetched again
    assert sum(server.hits.values()) == 4


def test_kmnist_with_md5_checksums_as_torchvision_lists_them(
    fake, kmnist, monkeypatch, tmp_path: Path
) -> None:
    files = {
        role: dataclasses.replace(f, archive_checksum=digest("md5", fake.gz[f.name]))
        for role, f in zip(
            ("train_images", "train_labels", "test_images", "test_labels"),
            kmnist.files,
            strict=True,
        )
    }
    monkeypatch.setitem(DATASETS, "kmnist", dataclasses.replace(kmnist, **files))
    x, _ = load_split("kmnist", "test", tmp_path / "d")
    assert x.shape == (12, 28, 28)
    (tmp_path / "d" / "kmnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(fake.raw["t10k-labels-idx1-ubyte"], mtime=1)  # same data, recompressed
    )
    with pytest.raises(
        DatasetChecksumError,
        match=r"kmnist: \S+/t10k-labels-idx1-ubyte\.gz: md5 of the file is [0-9a-f]{32}, expected "
        rf"{files['test_labels'].archive_checksum.hexdigest}: the file is corrupt, recompressed or "
        r"from another dataset",
    ):
        load_split("kmnist", "test", tmp_path / "d")


def test_an_uncompressed_kmnist_copy_is_refused_by_name(fake, kmnist, tmp_path: Path) -> None:
    folder = fake.write(tmp_path / "raw", compressed=False)
    with pytest.raises(
        DatasetChecksumError,
        match=rf"kmnist: {re.escape(str(folder))}/train-images-idx3-ubyte: an uncompressed copy "
        r"cannot be verified \(kmnist's publishers give checksums of the \.gz files only\): put "
        rf"train-images-idx3-ubyte\.gz as published in {re.escape(str(folder))} instead "
        r"\(`rnnflow download kmnist` fetches it\), or train on unverified files with "
        rf"--dataset idx --data-dir {re.escape(str(folder))}",
    ):
        load_split("kmnist", "train", folder, download=False)
    fake.write(folder)  # with the .gz files beside them, those are used (and verified)
    x, _ = load_split("kmnist", "train", folder, download=False)
    assert x.shape == (30, 28, 28)


def test_a_tampered_kmnist_download_is_rejected(fake, kmnist, server, tmp_path: Path) -> None:
    server.routes["/kmnist/train-labels-idx1-ubyte.gz"] = server.reply(
        gzip.compress(bytes(68), mtime=0)
    )
    with pytest.raises(
        DatasetNotFoundError,
        match=r"train-labels-idx1-ubyte\.gz: server announces \d+ bytes, expected \d+",
    ):
        load_split("kmnist", "train", tmp_path / "d")
    assert sorted(p.name for p in (tmp_path / "d" / "kmnist").iterdir()) == [
        "train-images-idx3-ubyte.gz"  # the verified file stays; nothing half-written
    ]


# ------------------------------------------------------------------------------------------------
# EMNIST: one zip, md5s, transposed images, 1-based letters


@dataclasses.dataclass
class FakeEmnist:
    upright: dict[str, np.ndarray]  # split -> train images as a reader sees them [N, H, W]
    labels: dict[str, np.ndarray]  # split -> train labels as stored
    zip_bytes: bytes
    members: dict[str, bytes]  # member name -> .gz bytes


def make_emnist(*, drop: str | None = None) -> FakeEmnist:
    rng = np.random.default_rng(1)
    upright, labels, members = {}, {}, {}
    for split, (low, high) in {"letters": (1, 26), "balanced": (0, 46)}.items():
        for part, n in (("train", 20), ("test", 8)):
            images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
            images[:, 0, :] = 255  # a reader's top row is bright: the stored first column
            images[:, 1:, 0] = 0
            y = rng.integers(low, high + 1, n, dtype=np.uint8)
            y[:2] = (low, high)
            stored = np.ascontiguousarray(images.transpose(0, 2, 1))  # EMNIST: column-major
            for kind, array in (("images-idx3", stored), ("labels-idx1", y)):
                name = f"gzip/emnist-{split}-{part}-{kind}-ubyte.gz"
                if name != drop:
                    members[name] = gzip.compress(idx_bytes(array), mtime=0)
            if part == "train":
                upright[split], labels[split] = images, y
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr("gzip/emnist-letters-mapping.txt", "1 65 97\n")
    return FakeEmnist(upright, labels, buffer.getvalue(), members)


def install_emnist(
    monkeypatch: pytest.MonkeyPatch, emnist: FakeEmnist, url: str, *, bad_member: str = ""
) -> Bundle:
    real = DATASETS["emnist-letters"].bundle
    assert real is not None
    bundle = dataclasses.replace(
        real, urls=(url,), checksum=digest("md5", emnist.zip_bytes), size=len(emnist.zip_bytes)
    )
    for name in ("emnist-letters", "emnist-balanced"):
        spec = DATASETS[name]
        files = {}
        for role, f in zip(
            ("train_images", "train_labels", "test_images", "test_labels"), spec.files, strict=True
        ):
            data = emnist.members.get("gzip/" + f.archive, b"")
            checksum = digest("md5", b"other bytes" if f.archive == bad_member else data)
            n = int.from_bytes(gzip.decompress(data)[4:8], "big") if data else 1
            size = 16 + n * 784 if "images" in f.name else 8 + n
            files[role] = dataclasses.replace(f, archive_checksum=checksum, size=size)
        monkeypatch.setitem(DATASETS, name, dataclasses.replace(spec, bundle=bundle, **files))
    return bundle


def test_emnist_letters_then_balanced_from_one_download(server, monkeypatch, tmp_path) -> None:
    emnist = make_emnist()
    url = server.route("/EMNIST/gzip.zip", server.reply(emnist.zip_bytes))
    install_emnist(monkeypatch, emnist, url)
    x, y = load_split("emnist-letters", "train", tmp_path / "d")
    # rows are image rows (time steps top to bottom), not the stored columns
    np.testing.assert_array_equal(x.numpy() * 255, emnist.upright["letters"])
    assert bool((x[:, 0, :] == 1).all()) and bool((x[:, 1:, 0] == 0).all())
    assert y.tolist() == (emnist.labels["letters"].astype(int) - 1).tolist()  # "a" is class 0
    assert (y.min(), y.max()) == (0, 25)
    folder = tmp_path / "d" / "emnist-letters"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f.archive for f in DATASETS["emnist-letters"].files
    )
    assert (tmp_path / "d" / "emnist-gzip.zip").read_bytes() == emnist.zip_bytes  # kept
    x, y = load_split("emnist-balanced", "train", tmp_path / "d")
    np.testing.assert_array_equal(x.numpy() * 255, emnist.upright["balanced"])
    assert y.tolist() == emnist.labels["balanced"].tolist() and int(y.max()) == 46
    assert server.hits["/EMNIST/gzip.zip"] == 1  # the second split came from the kept zip
    assert len(verify_dataset_dir("emnist-balanced", tmp_path / "d" / "emnist-balanced")) == 4


def test_emnist_through_rnnflow_download(server, monkeypatch, tmp_path, capsys) -> None:
    emnist = make_emnist()
    install_emnist(monkeypatch, emnist, server.route("/gzip.zip", server.reply(emnist.zip_bytes)))
    assert main(["download", "emnist_letters", "--data-dir", str(tmp_path / "d")]) == 0
    target = tmp_path / "d" / "emnist-letters"
    assert capsys.readouterr().out == (
        f"emnist-letters: 4 files verified in {target}\n"
        f"note: {tmp_path / 'd' / 'emnist-gzip.zip'} stays for the other splits it holds; "
        "delete it when done\n"
    )


def test_a_local_emnist_zip_is_checked_then_used(server, monkeypatch, tmp_path) -> None:
    emnist = make_emnist()
    install_emnist(monkeypatch, emnist, server.url("/nothing-here.zip"))
    (tmp_path / "d").mkdir()
    damaged = bytearray(emnist.zip_bytes)
    damaged[len(damaged) // 2] ^= 0xFF
    (tmp_path / "d" / "emnist-gzip.zip").write_bytes(bytes(damaged))
    with pytest.raises(
        DatasetChecksumError,
        match=r"emnist-letters: \S+/d/emnist-gzip\.zip: md5 of the file is [0-9a-f]{32}, expected "
        r"[0-9a-f]{32}: the archive is corrupt or another file; delete it \(it will be "
        r"downloaded again\) or give another --data-dir",
    ):
        load_split("emnist-letters", "test", tmp_path / "d")
    assert not (tmp_path / "d" / "emnist-letters").exists()
    (tmp_path / "d" / "emnist-gzip.zip").write_bytes(emnist.zip_bytes)
    x, y = load_split("emnist-letters", "test", tmp_path / "d")
    assert x.shape == (8, 28, 28) and int(y.min()) >= 0
    assert sum(server.hits.values()) == 0  # the local zip was enough


def test_a_bad_emnist_member_leaves_nothing_and_names_it(server, monkeypatch, tmp_path) -> None:
    emnist = make_emnist()
    url = server.route("/gzip.zip", server.reply(emnist.zip_bytes))
    install_emnist(monkeypatch, emnist, url, bad_member="emnist-letters-test-images-idx3-ubyte.gz")
    with pytest.raises(
        DatasetChecksumError,
        match=r"emnist-letters: \S+/emnist-gzip\.zip: a member's md5 mismatch: expected "
        r"[0-9a-f]{32}, got [0-9a-f]{32}",
    ):
        load_split("emnist-letters", "test", tmp_path / "d")
    folder = tmp_path / "d" / "emnist-letters"
    assert sorted(p.name for p in folder.iterdir()) == [  # verified members only, no .part
        "emnist-letters-train-images-idx3-ubyte.gz",
        "emnist-letters-train-labels-idx1-ubyte.gz",
    ]


def test_a_zip_without_the_member_is_refused(server, monkeypatch, tmp_path) -> None:
    emnist = make_emnist(drop="gzip/emnist-balanced-test-labels-idx1-ubyte.gz")
    install_emnist(monkeypatch, emnist, server.route("/gzip.zip", server.reply(emnist.zip_bytes)))
    with pytest.raises(
        DatasetChecksumError,
        match=r"emnist-balanced: \S+/emnist-gzip\.zip has no member "
        r"gzip/emnist-balanced-test-labels-idx1-ubyte\.gz: not EMNIST's archive\?",
    ):
        load_split("emnist-balanced", "test", tmp_path / "d")


def test_letters_outside_1_to_26_are_refused(server, monkeypatch, tmp_path) -> None:
    emnist = make_emnist()
    install_emnist(monkeypatch, emnist, server.url("/unused.zip"))
    folder = tmp_path / "letters"
    folder.mkdir()
    for name, data in emnist.members.items():
        (folder / name.removeprefix("gzip/")).write_bytes(data)
    zero = gzip.compress(idx_bytes(np.zeros(20, np.uint8)), mtime=0)
    labels = folder / "emnist-letters-train-labels-idx1-ubyte.gz"
    labels.write_bytes(zero)
    spec = DATASETS["emnist-letters"]
    patched = dataclasses.replace(
        spec.train_labels, archive_checksum=digest("md5", zero), size=8 + 20
    )
    monkeypatch.setitem(DATASETS, "emnist-letters", dataclasses.replace(spec, train_labels=patched))
    with pytest.raises(
        ValueError,
        match=r"load_split: emnist-letters-train-labels-idx1-ubyte: labels must be in \[1, 26\], "
        r"got 0",
    ):
        load_split("emnist-letters", "train", folder, download=False)


def test_evaluate_refuses_a_dataset_with_another_class_count(
    fake, kmnist, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    argv = ["train", "--dataset", "kmnist", "--data-dir", str(tmp_path / "d"), "--out", str(run)]
    small = ["--num-units", "8", "--batch-size", "10", "--train-examples", "20", "--val-size", "10"]
    assert main([*argv, *small, "--eval-every", "20", "--threads", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["class_names"][1] == "ki"
    assert main(["evaluate", str(run), "--dataset", "emnist-letters"]) == 1
    assert capsys.readouterr().err == (
        "rnnflow evaluate: --dataset emnist-letters has 26 classes, the run's model 10 (kmnist)\n"
    )


def test_offline_emnist_download_says_where_the_zip_goes(
    dead_url, monkeypatch, tmp_path, capsys
) -> None:
    real = DATASETS["emnist-balanced"]
    assert real.bundle is not None
    url = dead_url + "gzip.zip"  # tests never touch the network
    offline = dataclasses.replace(real, bundle=dataclasses.replace(real.bundle, urls=(url,)))
    monkeypatch.setitem(DATASETS, "emnist-balanced", offline)
    code = main(
        ["download", "emnist-balanced", "--data-dir", str(tmp_path / "d"), "--retries", "1"]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "rnnflow download: fetch: could not download emnist-gzip.zip; every mirror failed" in err
    zip_path = tmp_path / "d" / "emnist-gzip.zip"
    assert err.endswith(
        f"to fix it: connect to the internet and retry, or put {url} at {zip_path}\n"
    )
    assert not (tmp_path / "d" / "emnist-balanced").exists()


def test_emnist_letters_trains_and_evaluates_with_26_classes(
    server, monkeypatch, tmp_path, capsys
) -> None:
    emnist = make_emnist()
    install_emnist(monkeypatch, emnist, server.route("/gzip.zip", server.reply(emnist.zip_bytes)))
    run = tmp_path / "run"
    argv = ["train", "--dataset", "emnist-letters", "--data-dir", str(tmp_path / "d")]
    small = ["--num-units", "8", "--batch-size", "10", "--train-examples", "20", "--val-size", "10"]
    assert main([*argv, *small, "--out", str(run), "--threads", "1", "--quiet"]) == 0
    assert json.loads((run / "config.json").read_text())["dataset"] == "emnist-letters"
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0  # the saved model has 26 outputs
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == 8 and len(report["confusion"]) == 26
    assert report["class_names"][0] == "A/a" and report["class_names"][-1] == "Z/z"
