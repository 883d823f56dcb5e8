"""`rnnflow train --dataset idx --data-dir DIR`: any IDX set, written here (13x17, 26 classes)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from rnnflow.cli import main
from rnnflow.data import write_idx
from rnnflow.data.idx_folder import IdxFolderError, load_idx_folder_split

H, W, C = 13, 17, 26
LETTERS = [chr(ord("a") + k) for k in range(C)]


def make(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class k: pixel column k % 17 bright on rows k // 17 * 6 .. +5 (uint8 [N, 13, 17])."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.arange(C), rng.integers(0, C, n - C)]).astype(np.uint8)
    images = (rng.random((n, H, W)) * 30).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, (k // W) * 6 : (k // W) * 6 + 6, k % W] = 240
    return images, labels


def write_set(folder: Path, *, classes: bool = True, gz: bool = True) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (tx, ty), (sx, sy) = make(130, 0), make(52, 1)
    suffix = ".gz" if gz else ""
    paths = {
        "train-images-idx3-ubyte": tx,
        "train-labels-idx1-ubyte": ty,
        "t10k-images-idx3-ubyte": sx,
        "t10k-labels-idx1-ubyte": sy,
    }
    out = {}
    for name, array in paths.items():
        write_idx(folder / (name + suffix), array)
        out[name] = folder / (name + suffix)
    if classes:
        (folder / "classes.txt").write_text("\n".join(LETTERS) + "\n")
    return out


def test_train_evaluate_records_sha256(tmp_path, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    files = write_set(data)
    argv = ["train", "--dataset", "idx", "--data-dir", str(data), "--out", str(run), "--quiet"]
    small = ["--num-units", "8", "--batch-size", "32", "--train-examples", "96", "--val-size", "26"]
    assert main([*argv, *small, "--eval-every", "64", "--threads", "1"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert (config["image_height"], config["image_width"]) == (H, W)
    assert config["class_names"] == LETTERS
    expected = {  # the sha256 of each file's uncompressed bytes, by hashlib
        p.name: hashlib.sha256(gzip.decompress(p.read_bytes())).hexdigest() for p in files.values()
    }
    assert dict(s.split("=") for s in config["data_sha256"]) == expected
    assert main(["evaluate", str(run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == 52 and report["class_names"] == LETTERS
    assert len(report["confusion"]) == C
    png = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(np.zeros((28, 28), np.uint8)).save(png)
    assert main(["predict", str(run), str(png)]) == 1
    assert "trained on 13x17 images" in capsys.readouterr().err
    assert (
        main(["export", str(run), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 1
    )
    err = capsys.readouterr().err
    assert "is a --dataset idx run (13x17 images): export supports runs on the registered " in err
    assert "emnist-letters, fashion-mnist, kmnist, mnist), not idx runs yet" in err, err
    from rnnflow.serve import load_run  # the page draws 28x28: refused at start, not per request

    with pytest.raises(ValueError, match=r"trained on 13x17 images .* reads 28x28 images only"):
        load_run(run)


def test_labels_without_classes_file(tmp_path):
    write_set(tmp_path, classes=False, gz=False)
    split = load_idx_folder_split(tmp_path, "test")
    assert split.class_names == tuple(str(k) for k in range(C))
    assert tuple(split.images.shape) == (52, H, W)
    raw = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
    assert split.sha256["t10k-images-idx3-ubyte"] == hashlib.sha256(raw).hexdigest()


def test_missing_file(tmp_path):
    write_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(IdxFolderError, match=r"missing t10k-labels-idx1-ubyte \(or"):
        load_idx_folder_split(tmp_path, "test")


def test_label_count_mismatch(tmp_path):
    write_set(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", make(129, 0)[1])
    with pytest.raises(IdxFolderError, match=r"train-labels-idx1-ubyte.gz has 129 labels, .*130"):
        load_idx_folder_split(tmp_path, "train")


def test_label_out_of_range(tmp_path):
    write_set(tmp_path)
    labels = make(52, 1)[1]
    labels[3] = 26
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(IdxFolderError, match=r"t10k-labels-idx1-ubyte.gz: label 26 is out of"):
        load_idx_folder_split(tmp_path, "test")


def test_classes_file_wrong_count(tmp_path):
    write_set(tmp_path)
    (tmp_path / "classes.txt").write_text("\n".join(LETTERS[:25]))
    with pytest.raises(IdxFolderError, match=r"classes.txt names 25 classes, .* label 25"):
        load_idx_folder_split(tmp_path, "train")


def test_labels_not_contiguous(tmp_path):
    write_set(tmp_path, classes=False)
    labels = make(130, 0)[1]
    labels[labels == 5] = 6
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    with pytest.raises(IdxFolderError, match=r"contiguous from 0 .* classes \[5\] never occur"):
        load_idx_folder_split(tmp_path, "train")


def test_idx_without_data_dir_is_refused(tmp_path, capsys):
    assert main(["train", "--dataset", "idx", "--out", str(tmp_path / "r")]) == 2
    assert "argument --data-dir: required with --dataset idx" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_resume_refuses_changed_files(tmp_path, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    write_set(data)
    argv = ["train", "--dataset", "idx", "--data-dir", str(data), "--out", str(run), "--quiet"]
    small = ["--num-units", "8", "--batch-size", "32", "--train-examples", "96", "--val-size", "26"]
    assert main([*argv, *small, "--eval-every", "32", "--stop-at-step", "1"]) == 0
    capsys.readouterr()
    recorded = dict(
        s.split("=") for s in json.loads((run / "config.json").read_text())["data_sha256"]
    )
    # the same bytes decompressed (another copy of the folder): the same files, resumable
    raw = tmp_path / "raw"
    raw.mkdir()
    for path in data.glob("*.gz"):
        (raw / path.name.removesuffix(".gz")).write_bytes(gzip.decompress(path.read_bytes()))
    (raw / "classes.txt").write_text((data / "classes.txt").read_text())
    assert main(["train", "--resume", str(run), "--data-dir", str(raw), "--stop-at-step", "2"]) == 0
    capsys.readouterr()
    other = make(52, 7)[0]  # other images, same shape
    write_idx(data / "t10k-images-idx3-ubyte.gz", other)
    new = hashlib.sha256(gzip.decompress((data / "t10k-images-idx3-ubyte.gz").read_bytes()))
    message = (  # only the file that differs, with both digests
        f"--dataset idx: the files in {data} differ from those this run recorded (sha256 of the "
        f"uncompressed IDX bytes): t10k-images-idx3-ubyte.gz: recorded "
        f"{recorded['t10k-images-idx3-ubyte.gz']}, found {new.hexdigest()}\n"
    )
    assert main(["train", "--resume", str(run), "--data-dir", str(data), "--quiet"]) == 1
    assert capsys.readouterr().err == "rnnflow train: " + message
    # evaluate on another folder's files is refused the same way (it evaluated them silently)
    assert main(["evaluate", str(run), "--data-dir", str(data)]) == 1
    assert capsys.readouterr().err == "rnnflow evaluate: " + message
    assert main(["evaluate", str(run), "--data-dir", str(raw), "--json"]) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cat\n\ndog\nbird\n", r"classes\.txt line 2 is blank: one class name per line"),
        ("cat\n  \ndog\n", r"classes\.txt line 2 is blank"),
        ("cat\ndog\ncat\n", r"classes\.txt line 3: class name 'cat' repeats line 1; class "
                             r"names must be distinct"),
        ("only\n", r"a classifier needs at least 2 classes, \S*classes\.txt gives 1"),
    ],
)  # fmt: skip
def test_classes_file_blank_duplicate_or_single_names_are_refused(tmp_path, text, message):
    """A blank line would shift every later name onto another label, a repeated name make two
    labels indistinguishable: refused naming the line (trailing blank lines are harmless)."""
    write_set(tmp_path, classes=False)
    labels = make(130, 0)[1] % 2
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", make(52, 1)[1] % 2)
    (tmp_path / "classes.txt").write_text(text)
    with pytest.raises(IdxFolderError, match=r"^--dataset idx: .*" + message):
        load_idx_folder_split(tmp_path, "train")
    (tmp_path / "classes.txt").write_text("cat\ndog\n\n\n")  # trailing blank lines: fine
    assert load_idx_folder_split(tmp_path, "train").class_names == ("cat", "dog")


def test_a_single_class_training_set_is_refused(tmp_path):
    write_set(tmp_path, classes=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(130, np.uint8))
    with pytest.raises(
        IdxFolderError,
        match=r"a classifier needs at least 2 classes, .*train-labels-idx1-ubyte\.gz \(labels "
        r"0 \.\. 0, no classes\.txt\) gives 1",
    ):
        load_idx_folder_split(tmp_path, "train")


def test_config_records_only_for_idx():
    from rnnflow.training.config import TrainConfig

    with pytest.raises(ValueError, match=r"dataset 'idx' needs data_dir"):
        TrainConfig(dataset="idx")
    with pytest.raises(ValueError, match=r"recorded for dataset 'idx' only, not 'mnist'"):
        TrainConfig(image_width=17)
    assert TrainConfig(dataset="idx", data_dir="d", class_names=("a", "b")).num_classes == 2


@pytest.mark.parametrize("val_size", ["5000", "130"])
def test_val_size_too_large_names_the_flag(tmp_path, capsys, val_size):
    data, run = tmp_path / "data", tmp_path / "run"
    write_set(data)  # 130 training images
    argv = ["train", "--dataset", "idx", "--data-dir", str(data), "--out", str(run), "--quiet"]
    assert main([*argv, "--num-units", "8", "--val-size", val_size]) == 1
    err = capsys.readouterr().err
    assert f"--val-size {val_size}: the training split holds 130 images" in err
    assert "between 1 and 129 of them" in err and "use --val-size 13 (a tenth)" in err
    assert "Traceback" not in err and not (run / "config.json").exists()


def test_a_model_too_large_for_memory_is_one_line_and_leaves_nothing(tmp_path, capsys):
    """torch's "can't allocate memory" becomes one line naming the size flag set above the
    preset and the bytes torch asked for; the new run's files go, a user's file stays."""
    data, run = tmp_path / "data", tmp_path / "run"
    write_set(data)
    run.mkdir()
    (run / "notes.txt").write_text("mine")  # an --out folder that already held a user's file
    argv = ["train", "--dataset", "idx", "--data-dir", str(data), "--out", str(run), "--quiet"]
    small = ["--batch-size", "32", "--val-size", "26", "--num-units", "1000000000"]
    assert main([*argv, *small]) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(
        r"rnnflow train: the model or a batch does not fit in memory: torch asked for "
        r"[\d,]+ bytes; lower the sizes \(--num-units 1000000000\); this run's files were "
        r"removed from .*run\n",
        err,
    ), err
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    run2 = tmp_path / "run2"  # a folder the run created goes with its files
    assert main([*argv[:-3], "--out", str(run2), "--quiet", *small]) == 1
    assert not run2.exists()
    tiny = [*small[:4], "--num-units", "8", "--train-examples", "96", "--threads", "1"]
    assert main([*argv[:-3], "--out", str(run2), "--quiet", *tiny]) == 0


def test_memory_error_message_kinds():
    from rnnflow.cli.train import memory_error_message
    from rnnflow.training.config import PRESETS

    preset = PRESETS["tutorial"]
    config = dataclasses.replace(preset, batch_size=10**7)
    cuda = RuntimeError("CUDA out of memory. Tried to allocate 3.73 GiB (GPU 0; 79 GiB total)")
    assert memory_error_message(cuda, config, preset) == (
        "the model or a batch does not fit in memory: torch asked for 3.73 GiB; lower the "
        "sizes (--batch-size 10000000)"
    )
    overflow = RuntimeError("Storage size calculation overflowed with sizes=[10, 10]")
    same = memory_error_message(overflow, preset, preset)
    assert same is not None and "more bytes than an int64 can count" in same
    assert "--num-units 128, --num-layers 1, --batch-size 128" in same  # none above: all
    assert memory_error_message(RuntimeError("shape mismatch"), config, preset) is None
    assert memory_error_message(ValueError("out of memory"), config, preset) is None
