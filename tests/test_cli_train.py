"""End to end through the real `rnnflow` entry point, on a small generated IDX dataset.

train a few steps -> evaluate -> predict on a PNG written here -> an interrupted and resumed run
ends with exactly the parameters of an uninterrupted one (bit for bit), including after a real
Ctrl-C (SIGINT) in a subprocess.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from rnnflow.cli import main
from rnnflow.data import write_idx
from rnnflow.data.datasets import DATASETS, IdxFile

N_TRAIN, N_TEST = 240, 60


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class k: a bright horizontal bar on rows 2k+4..2k+6 over faint noise (uint8 [N, 28, 28])."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = (rng.random((n, 28, 28)) * 40).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, 2 * k + 4 : 2 * k + 7, 4:24] = 230
    return images, labels


def write_fake_dataset(folder: Path) -> dict[str, IdxFile]:
    """Four IDX files in ``folder``; returns IdxFile rows with their real checksums."""
    folder.mkdir(parents=True, exist_ok=True)
    train, test = make_images(N_TRAIN, 0), make_images(N_TEST, 1)
    arrays = {
        "train_images": ("train-images-idx3-ubyte", train[0]),
        "train_labels": ("train-labels-idx1-ubyte", train[1]),
        "test_images": ("t10k-images-idx3-ubyte", test[0]),
        "test_labels": ("t10k-labels-idx1-ubyte", test[1]),
    }
    rows = {}
    for role, (name, array) in arrays.items():
        write_idx(folder / name, array)
        data = (folder / name).read_bytes()
        rows[role] = IdxFile(name, "0" * 64, 0, hashlib.sha256(data).hexdigest(), len(data))
    return rows


PATCH = """
import dataclasses, json, sys
from rnnflow.data.datasets import DATASETS, IdxFile
rows = {k: IdxFile(**v) for k, v in json.loads(sys.argv[1]).items()}
DATASETS["fashion-mnist"] = dataclasses.replace(DATASETS["fashion-mnist"], **rows)
from rnnflow.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture
def fake_data(tmp_path, monkeypatch):
    """Fashion-MNIST replaced by the generated files (checksums included); no network."""
    folder = tmp_path / "data"
    rows = write_fake_dataset(folder)
    spec = dataclasses.replace(DATASETS["fashion-mnist"], mirrors=(), **rows)
    monkeypatch.setitem(DATASETS, "fashion-mnist", spec)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("RNNFLOW_DATA_DIR", raising=False)
    return folder, rows


# Every stateful feature on (dropout, augmentation, warm-up + cosine, clipping, label smoothing),
# so the resume test covers every RNG and schedule; tiny so the file stays fast.
TINY = [
    "--preset", "best", "--dataset", "fashion-mnist", "--cell", "gru", "--num-units", "12",
    "--bidirectional", "--dropout", "0.1", "--batch-size", "16", "--val-size", "40",
    "--train-examples", "800", "--log-every", "160", "--eval-every", "320",
    "--warmup-examples", "96", "--seed", "3", "--quiet", "--threads", "1",
]  # fmt: skip


def train(data: Path, out: Path, *extra: str) -> int:
    return main(["train", *TINY, "--data-dir", str(data), "--out", str(out), *extra])


def params(run: Path) -> dict:
    return {k: v for k, v in load_file(run / "checkpoint.safetensors").items()}


def assert_same_tensors(a: dict, b: dict) -> None:
    """Bit for bit: the same keys, dtypes, shapes and values (NaN equal to NaN)."""
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, equal_nan=True, msg=key)


def test_train_evaluate_predict(fake_data, tmp_path, capsys):
    data, _ = fake_data
    run = tmp_path / "run"
    assert train(data, run, "--tensorboard") == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out
    for name in ("config.json", "metrics.jsonl", "checkpoint.safetensors", "best.safetensors"):
        assert (run / name).is_file(), name
    for name in ("curves.png", "confusion.png"):
        with Image.open(run / name) as image:
            assert image.size[0] > 300
    assert any((run / "tensorboard").iterdir())
    config = json.loads((run / "config.json").read_text())
    assert config["cell"] == "gru" and config["num_units"] == 12 and config["bidirectional"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds.count("train") == 5 and kinds.count("val") == 3 and kinds[-1] == "test"
    assert [r["examples"] for r in records if r["kind"] == "train"] == [160, 320, 480, 640, 800]

    assert main(["evaluate", str(run), "--data-dir", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == N_TEST and 0.0 <= report["accuracy"] <= 1.0
    assert len(report["confusion"]) == 10 and sum(map(sum, report["confusion"])) == N_TEST
    assert set(report["per_class_accuracy"]) == set(DATASETS["fashion-mnist"].class_names)
    assert report["accuracy"] == records[-1]["accuracy"]

    assert main(["evaluate", str(run / "best.safetensors"), "--data-dir", str(data)]) == 0
    text = capsys.readouterr().out
    assert "per-class accuracy" in text and "confusion matrix" in text and "Ankle boot" in text

    png = tmp_path / "mine.png"
    Image.fromarray(make_images(1, 7)[0][0]).save(png)
    assert main(["predict", str(run), str(png), str(png), "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    assert len(predictions) == 2 and predictions[0]["class"] == predictions[1]["class"]
    assert predictions[0]["probability"] == pytest.approx(predictions[1]["probability"])
    top = predictions[0]["top"]
    assert predictions[0]["class"] in DATASETS["fashion-mnist"].class_names
    assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"] >= 0
    assert main(["predict", str(run), str(png)]) == 0
    assert f"{png}: " in capsys.readouterr().out


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(fake_data, tmp_path):
    data, _ = fake_data
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert train(data, full) == 0
    # stop at 13 steps (between periodic checkpoints, mid-epoch), then resume to the end
    assert train(data, cut, "--stop-at-step", "13") == 0
    assert main(["train", "--resume", str(cut), "--quiet"]) == 0
    assert_same_tensors(params(full), params(cut))
    best = [load_file(run / "best.safetensors") for run in (full, cut)]
    assert_same_tensors(*best)  # the same validation picked the same step
    lines = (cut / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["kind"] for x in lines] == [
        json.loads(x)["kind"] for x in (full / "metrics.jsonl").read_text().splitlines()
    ]


def test_resume_with_a_weight_average_is_bit_identical(fake_data, tmp_path):
    """--ema-decay: the average is in the checkpoint (ema.*), best.safetensors holds it, and a
    stopped + resumed run ends bit for bit as an uninterrupted one (raw weights and average)."""
    data, _ = fake_data
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert train(data, full, "--ema-decay", "0.9") == 0
    assert train(data, cut, "--ema-decay", "0.9", "--stop-at-step", "13") == 0
    assert main(["train", "--resume", str(cut), "--quiet"]) == 0
    final = params(full)
    assert_same_tensors(final, params(cut))
    ema = {k[len("ema.") :]: v for k, v in final.items() if k.startswith("ema.")}
    model = {k[len("model.") :]: v for k, v in final.items() if k.startswith("model.")}
    assert ema.keys() == model.keys() and any(not ema[k].equal(model[k]) for k in ema)
    best = [load_file(run / "best.safetensors") for run in (full, cut)]
    assert_same_tensors(*best)
    best_step = json.loads(load_file_metadata(full / "best.safetensors")["progress"])["step"]
    if best_step == 50:  # the last step was the best one: best.safetensors is the final average
        assert_same_tensors(best[0], {f"model.{k}": v for k, v in ema.items()})
    assert not any(k.startswith("ema.") for k in best[0])


def test_resume_of_a_killed_run_from_its_last_periodic_checkpoint(fake_data, tmp_path):
    """A kill loses the steps after the last checkpoint; the resumed run redoes them exactly."""
    data, _ = fake_data
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert train(data, full) == 0
    assert train(data, killed, "--stop-at-step", "20") == 0  # 320 examples: validated + saved
    snapshot = (killed / "checkpoint.safetensors").read_bytes()
    assert train(data, killed, "--stop-at-step", "27") != 0  # refuses to overwrite the run
    with open(killed / "metrics.jsonl", "a") as f:  # lines written after the checkpoint + torn line
        f.write(json.dumps({"kind": "train", "step": 25, "examples": 400}) + '\n{"kind": "tr')
    (killed / "checkpoint.safetensors").write_bytes(snapshot)
    assert main(["train", "--resume", str(killed), "--quiet"]) == 0
    assert_same_tensors(params(full), params(killed))


def test_ctrl_c_saves_and_resume_completes_identically(fake_data, tmp_path):
    data, rows = fake_data
    full, cut = tmp_path / "full", tmp_path / "cut"
    long = ["--train-examples", "4800", "--eval-every", "2400", "--log-every", "16"]
    assert train(data, full, *long) == 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [sys.executable, "-c", PATCH, json.dumps({k: vars(v) for k, v in rows.items()})]
    argv += ["train", *TINY, *long, "--data-dir", str(data), "--out", str(cut)]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    metrics = cut / "metrics.jsonl"
    deadline = time.monotonic() + 60
    while not (metrics.exists() and metrics.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "saving a checkpoint" in err and "--resume" in err
    step = json.loads(load_file_metadata(cut / "checkpoint.safetensors")["progress"])["step"]
    assert 0 < step < 300
    assert main(["train", "--resume", str(cut), "--quiet"]) == 0
    assert_same_tensors(params(full), params(cut))


def load_file_metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata()


def test_cli_errors(fake_data, tmp_path, capsys):
    data, _ = fake_data
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "cannot resume" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r"), "--dropout", "1.5"]) == 2
    assert "dropout must be in [0, 1), got 1.5" in capsys.readouterr().err
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 3)
    assert main(["evaluate", str(bad)]) == 1
    assert "too short for a safetensors file" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), str(bad)]) == 1
    assert "not a run folder" in capsys.readouterr().err


def test_progress_bar_plain_lines_when_not_a_terminal():
    import io

    from rnnflow.cli._progress import ProgressBar

    stream = io.StringIO()
    bar = ProgressBar(100, stream, plain_every=0.0, start_step=40)
    bar.loss, bar.accuracy = 0.5, 0.75
    bar.update(50, 128)
    bar.update(100, 128)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue()
    assert lines[0].startswith("[============>") and " 50% 50/100" in lines[0]
    assert "loss 0.500" in lines[0] and "acc 0.750" in lines[0] and "ETA" in lines[0]
    silent = io.StringIO()
    ProgressBar(10, silent, enabled=False).update(5, 1)
    assert silent.getvalue() == ""


def test_without_a_validation_set_the_last_weights_are_kept(fake_data, tmp_path, capsys):
    data, _ = fake_data
    run = tmp_path / "run"
    assert train(data, run, "--val-size", "0") == 0
    out = capsys.readouterr().out
    assert "checkpoint of step 50, no validation set (--val-size 0): the last weights" in out
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert not any(json.loads(x)["kind"] == "val" for x in lines)


def test_progress_bar_step_callback_reads_train_and_val_records():
    import io
    from types import SimpleNamespace

    from rnnflow.cli._progress import ProgressBar

    stream = io.StringIO()
    on_step = ProgressBar(10, stream, plain_every=0.0).step_callback(32)
    on_step(SimpleNamespace(step=1), {"kind": "step", "loss": 9.0})  # per-step info: not shown
    on_step(SimpleNamespace(step=2), {"kind": "train", "loss": 0.25, "accuracy": 0.5})
    on_step(SimpleNamespace(step=3), {"kind": "val", "accuracy": 0.875})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "loss" not in lines[0]
    assert "loss 0.250  acc 0.500" in lines[1] and "val" not in lines[1]
    assert "loss 0.250  acc 0.500  val 0.8750" in lines[2] and " 3/10" in lines[2]
