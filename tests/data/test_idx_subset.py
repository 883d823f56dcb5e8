"""The issue's case: a 4,000/1,000-image 28x28 subset in IDX files trains through the CLI with
``--dataset idx`` (cut by tools/make_idx_subset.py, as docs/DATA.md records for Fashion-MNIST)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnflow.cli import main
from rnnflow.data import read_idx, write_idx

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "make_idx_subset.py"
NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("make_idx_subset", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_source(folder: Path, n_train: int, n_test: int) -> dict[str, np.ndarray]:
    """A 28x28, 10-class IDX set; image i's first pixel encodes i, so rows can be traced."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n) % 251
        images[:, 0, 1] = np.arange(n) // 251
        labels = (np.arange(n) % 10).astype(np.uint8)
        arrays[NAMES[split][0]], arrays[NAMES[split][1]] = images, labels
    folder.mkdir(parents=True)
    for name, array in arrays.items():
        write_idx(folder / (name + ".gz"), array)
    return arrays


def source_index(images: np.ndarray) -> np.ndarray:
    return images[:, 0, 0].astype(int) + 251 * images[:, 0, 1].astype(int)


def test_the_subset_is_a_seeded_sample_of_the_source_rows(tool, tmp_path: Path) -> None:
    source = write_source(tmp_path / "src", 60, 25)
    tool.make_subset(tmp_path / "src", tmp_path / "a", n_train=40, n_test=10, seed=3)
    tool.make_subset(tmp_path / "src", tmp_path / "b", n_train=40, n_test=10, seed=3, gz=False)
    for split, n in (("train", 40), ("test", 10)):
        images_name, labels_name = NAMES[split]
        images = read_idx(tmp_path / "a" / (images_name + ".gz"))
        labels = read_idx(tmp_path / "a" / (labels_name + ".gz"))
        picked = source_index(images)
        assert len(picked) == n and len(set(picked)) == n and list(picked) == sorted(picked)
        np.testing.assert_array_equal(images, source[images_name][picked])  # whole rows
        np.testing.assert_array_equal(labels, source[labels_name][picked])  # with their labels
        np.testing.assert_array_equal(read_idx(tmp_path / "b" / images_name), images)  # raw: same
    tool.make_subset(tmp_path / "src", tmp_path / "c", n_train=40, n_test=10, seed=4)
    other = source_index(read_idx(tmp_path / "c" / "train-images-idx3-ubyte.gz"))
    assert list(other) != list(
        source_index(read_idx(tmp_path / "a" / "train-images-idx3-ubyte.gz"))
    )


def test_the_tool_refuses_too_many_images_and_overwriting(tool, tmp_path: Path) -> None:
    write_source(tmp_path / "src", 60, 25)
    with pytest.raises(
        ValueError, match=r"make_idx_subset: asked for 61 images, the source has 60"
    ):
        tool.make_subset(tmp_path / "src", tmp_path / "out", n_train=61, n_test=5, seed=0)
    tool.make_subset(tmp_path / "src", tmp_path / "out", n_train=6, n_test=5, seed=0)
    with pytest.raises(FileExistsError, match=r"make_idx_subset: will not overwrite \S+/out/train"):
        tool.make_subset(tmp_path / "src", tmp_path / "out", n_train=6, n_test=5, seed=0)


def test_4000_1000_subset_trains_through_the_cli(tool, tmp_path: Path, capsys) -> None:
    write_source(tmp_path / "src", 4500, 1200)
    subset = tmp_path / "subset"
    done = subprocess.run(
        [
            sys.executable,
            str(TOOL),
            str(tmp_path / "src"),
            str(subset),
            "--classes",
            "fashion-mnist",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{subset}: 4000 training and 1000 test images from ")
    run = tmp_path / "run"
    argv = ["train", "--dataset", "idx", "--data-dir", str(subset), "--preset", "tutorial"]
    small = [
        "--val-size",
        "500",
        "--train-examples",
        "256",
        "--eval-every",
        "128",
        "--threads",
        "1",
    ]
    assert main([*argv, *small, "--out", str(run), "--quiet"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert (config["dataset"], config["image_height"], config["image_width"]) == ("idx", 28, 28)
    assert config["class_names"][0] == "T-shirt/top" and len(config["class_names"]) == 10
    assert config["num_units"] == 128 and config["cell"] == "rnn"  # the tutorial preset
    assert main(["evaluate", str(run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == 1000  # the subset's test split, all of it
