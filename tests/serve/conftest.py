"""Runs for the serve tests, made once per session through the real `rnnflow train` entry point:
a tiny MNIST classifier on generated IDX files, a bidirectional one with ``--tta-flip``, and a
tiny character model on a generated poem corpus. No network."""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnflow.cli import main
from rnnflow.data import write_idx
from rnnflow.data.catalog import Checksum
from rnnflow.data.datasets import DATASETS, IdxFile

HANZI = "春江花月夜山水风云雨雪天地人心秋日明光长城"
READINGS = {  # written by hand from a dictionary, for the assertions: (中华新韵 group, tone)
    "春": ("文", 1), "江": ("唐", 1), "花": ("麻", 1), "月": ("皆", 4), "夜": ("皆", 4),
    "山": ("寒", 1), "水": ("微", 3), "风": ("庚", 1), "云": ("文", 2), "雨": ("齐", 3),
    "雪": ("皆", 3), "天": ("寒", 1), "地": ("齐", 4), "人": ("文", 2), "心": ("文", 1),
    "秋": ("尤", 1), "日": ("支", 4), "明": ("庚", 2), "光": ("唐", 1), "城": ("庚", 2),
    "长": ("唐", None),  # cháng 2 (long) or zhǎng 3 (to grow): a tone the tests do not judge
}  # fmt: skip


class HandReadings:
    """Verses, rhyme groups and tones from the hand-written READINGS (not from rnnflow)."""

    @staticmethod
    def verses(text: str) -> list[str]:
        """The verses of a poem: split at ，。？！ and line breaks."""
        return [v for v in re.split(r"[，。？！\n]", text) if v]

    @staticmethod
    def rhyme_class(ch: str) -> str:
        return READINGS[ch][0]

    @staticmethod
    def level(ch: str) -> bool | None:
        """True for a level (平: tones 1, 2) character, False for an oblique one (仄: 3, 4),
        None when the table does not judge it."""
        tone = READINGS[ch][1]
        return None if tone is None else tone in (1, 2)


@pytest.fixture(scope="session")
def hand() -> HandReadings:
    return HandReadings()


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
        rows[role] = IdxFile(  # no archive: the files sit uncompressed in --data-dir
            name,
            archive_checksum=Checksum("sha256", "0" * 64),
            archive_size=None,
            size=len(raw),
            sha256=hashlib.sha256(raw).hexdigest(),
        )
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


SERIES_STEPS, SERIES_CHANNELS = 12, 3
SERIES_CLASSES = ("flat", "rising", "falling")


def fake_series(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Padded raw series float32 [n, 12, 3] (lengths 4..12) and labels: class 1 rises on
    channel 0, class 2 falls, class 0 stays flat; raw values around 10 (not standardised)."""
    labels = rng.integers(0, 3, n)
    lengths = rng.integers(4, SERIES_STEPS + 1, n)
    t = np.arange(SERIES_STEPS, dtype=np.float32)[None, :]  # [1, T]
    slope = np.array([0.0, 0.5, -0.5], np.float32)[labels][:, None]  # [n, 1]
    x = 10.0 + rng.normal(scale=0.3, size=(n, SERIES_STEPS, SERIES_CHANNELS)).astype(np.float32)
    x[:, :, 0] += slope * t
    return x, lengths, labels


@pytest.fixture(scope="session")
def series_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"seq": a one-directional GRU sequence run, "seq_bidir": a bidirectional LSTM with mean
    pooling, "seq_fcn": a bidirectional GRU with the MLSTM-FCN convolutional branch and
    deltas}, trained through `rnnflow train --task sequence` on a generated .npz."""
    root = tmp_path_factory.mktemp("serve-series")
    rng = np.random.default_rng(0)
    (xa, la, ya), (xb, lb, yb) = fake_series(90, rng), fake_series(30, rng)
    data = root / "series.npz"
    np.savez(
        data,
        x_train=xa,
        lengths_train=la,
        labels_train=ya,
        x_test=xb,
        lengths_test=lb,
        labels_test=yb,
        class_names=np.array(SERIES_CLASSES),
    )
    threads = torch.get_num_threads()
    common = ["train", "--task", "sequence", "--dataset", "npz", "--train-file", str(data)]
    common += ["--num-units", "8", "--batch-size", "16", "--epochs", "12", "--threads", "1"]
    common += ["--warmup-examples", "160"]  # 10 of its 72 steps
    common += ["--quiet", "--no-deltas"]  # the preset has deltas: named where wanted
    made = {}
    for name, extra in {
        "seq": ["--cell", "gru", "--no-bidirectional", "--conv-branch", "none"],
        "seq_bidir": [
            "--cell",
            "lstm",
            "--bidirectional",
            "--pooling",
            "mean",
            "--conv-branch",
            "none",
        ],
        "seq_fcn": ["--cell", "gru", "--bidirectional", "--conv-branch", "fcn-se", "--deltas"],
    }.items():
        made[name] = root / name
        assert main([*common, *extra, "--out", str(made[name])]) == 0
    torch.set_num_threads(threads)
    return made
