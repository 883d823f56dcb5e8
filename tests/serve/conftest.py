"""Runs for the serve tests, made once per session through the real `rnnflow train` entry point:
a tiny MNIST classifier on generated IDX files, a bidirectional one with ``--tta-flip``, and a
tiny character model on a generated poem corpus. No network."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnflow.cli import main
from rnnflow.data import write_idx
from rnnflow.data.datasets import DATASETS, IdxFile

HANZI = "春江花月夜山水风云雨雪天地人心秋日明光长城"


def fake_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class k: a vertical bar at columns 2k+4..2k+6 over faint noise (uint8 [N, 28, 28]), so a
    drawn vertical stroke is something the model has seen."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = (rng.random((n, 28, 28)) * 30).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, 4:24, 2 * k + 4 : 2 * k + 7] = 230
    return images, labels


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """{"image": MNIST GRU run, "bidir": bidirectional LSTM run with --tta-flip, "poem": char
    model run}, each trained for a few steps."""
    root = tmp_path_factory.mktemp("serve-runs")
    data = root / "data"
    data.mkdir()
    rows = {}
    arrays = {
        "train_images": ("train-images-idx3-ubyte", fake_digits(200, 0)[0]),
        "train_labels": ("train-labels-idx1-ubyte", fake_digits(200, 0)[1]),
        "test_images": ("t10k-images-idx3-ubyte", fake_digits(40, 1)[0]),
        "test_labels": ("t10k-labels-idx1-ubyte", fake_digits(40, 1)[1]),
    }
    for role, (name, array) in arrays.items():
        write_idx(data / name, array)
        raw = (data / name).read_bytes()
        rows[role] = IdxFile(name, "0" * 64, 0, hashlib.sha256(raw).hexdigest(), len(raw))
    threads = torch.get_num_threads()
    common = ["--dataset", "mnist", "--batch-size", "20", "--train-examples", "200"]
    common += ["--val-size", "40", "--log-every", "200", "--eval-every", "200", "--quiet"]
    common += ["--threads", "1", "--data-dir", str(data)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(DATASETS, "mnist", dataclasses.replace(DATASETS["mnist"], mirrors=(), **rows))
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        mp.delenv("RNNFLOW_DATA_DIR", raising=False)
        image, bidir = root / "image", root / "bidir"
        assert (
            main(["train", *common, "--cell", "gru", "--num-units", "16", "--out", str(image)]) == 0
        )
        argv = ["train", *common, "--cell", "lstm", "--num-units", "8", "--bidirectional"]
        assert main([*argv, "--tta-flip", "--out", str(bidir)]) == 0

        rng = random.Random(0)
        verse = lambda: "".join(rng.choice(HANZI) for _ in range(5))  # noqa: E731
        corpus = root / "poems.txt"
        poems = [f"{verse()}，{verse()}。\n{verse()}，{verse()}。" for _ in range(24)]
        corpus.write_text("\n%\n".join(poems) + "\n", encoding="utf-8")
        poem = root / "poem"
        tiny = ["--preset", "tiny", "--embed-size", "8", "--num-units", "16", "--batch-size", "4"]
        tiny += ["--cell", "gru", "--threads", "1", "--quiet", "--epochs", "1"]
        assert (
            main(["train", "--task", "charlm", *tiny, "--text", str(corpus), "--out", str(poem)])
            == 0
        )
    torch.set_num_threads(threads)
    yield {"image": image, "bidir": bidir, "poem": poem}
