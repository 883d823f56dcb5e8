"""The sequence task's warm-up default: the japanese-vowels preset's 2700 examples (ten epochs of
its 270 series) used to refuse a newcomer's first short run on their own data (`--dataset npz
... --epochs 1`: a warm-up longer than the run). A run that names no --preset and trains on other
data now starts without one; a named preset, or --warmup-examples, keeps its value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from rnnflow.cli import main

SMALL = ["--task", "sequence", "--num-units", "4", "--batch-size", "16", "--epochs", "1"]
SMALL += ["--threads", "1", "--quiet", "--no-bidirectional"]


def npz(path: Path) -> Path:
    """80 training series (5 steps of batch 16 per epoch), 8 test series, 2 classes."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 80), ("test", 8)):
        arrays[f"x_{split}"] = rng.normal(size=(n, 4, 2)).astype(np.float32)
        arrays[f"labels_{split}"] = np.arange(n) % 2
    np.savez(path, **arrays)
    return path


def config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text(encoding="utf-8"))


def test_a_first_short_run_on_one_s_own_data_is_not_refused(tmp_path: Path, capsys) -> None:
    threads = torch.get_num_threads()
    argv = ["train", *SMALL, "--dataset", "npz", "--train-file", str(npz(tmp_path / "d.npz"))]
    try:
        out = tmp_path / "new"
        assert main([*argv, "--stop-at-step", "2", "--out", str(out)]) == 0
        assert config(out)["warmup_examples"] == 0
        assert main(["train", "--resume", str(out), "--quiet"]) == 0  # the saved config resumes
        assert config(out)["warmup_examples"] == 0
        given = tmp_path / "given"
        assert (
            main([*argv, "--warmup-examples", "32", "--stop-at-step", "1", "--out", str(given)])
            == 0
        )
        assert config(given)["warmup_examples"] == 32
        capsys.readouterr()
        named = tmp_path / "named"  # the preset named: its recipe, warm-up included (5 steps)
        assert main([*argv, "--preset", "japanese-vowels", "--out", str(named)]) == 1
        assert "fit: warmup_examples (2700: 168 steps of batch_size 16) is longer than the " in (
            capsys.readouterr().err
        )
    finally:
        torch.set_num_threads(threads)


def test_the_help_states_the_rule(capsys) -> None:
    try:
        main(["train", "--task", "sequence", "--help"])
    except SystemExit:
        pass
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "--warmup-examples INT linear warm-up of the learning rate over this many examples "
        "(default: 2700, the japanese-vowels preset's ten epochs of its 270 series; 0, no "
        "warm-up, for a run that names no --preset and trains on other data, --dataset npz, ts "
        "or pickup-gesture-wiimote-z)"
    ) in text
