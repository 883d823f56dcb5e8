"""Every command knows every run's task, from the checkpoint's own record: `predict` and `export`
refuse a character model's run and say what to use; `evaluate` serves it; an unknown task is
named."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from rnnflow.cli import main
from rnnflow.tasks import TASKS

HANZI = "春江花月夜山水风云雨雪天地人心秋日明光长城"
TINY = ["--task", "charlm", "--preset", "tiny", "--embed-size", "8", "--num-units", "16"]
TINY += ["--batch-size", "4", "--cell", "gru", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def charlm_run(tmp_path_factory) -> Path:
    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp("charlm")
    rng = random.Random(0)
    verse = lambda: "".join(rng.choice(HANZI) for _ in range(5))  # noqa: E731
    poems = [f"{verse()}，{verse()}。\n{verse()}，{verse()}。" for _ in range(24)]
    (root / "poems.txt").write_text("\n%\n".join(poems) + "\n", encoding="utf-8")
    run = root / "run"
    assert main(["train", *TINY, "--text", str(root / "poems.txt"), "--out", str(run)]) == 0
    torch.set_num_threads(threads)
    return run


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "shirt.png"
    Image.new("L", (28, 28), 0).save(path)
    return path


CHARLM_REFUSAL = (
    r"is a character-level language model run \(rnnflow train --task charlm\): `rnnflow {cmd}` "
    r"works on image classifier, sequence and text-classify runs; use `rnnflow generate .*run` "
    r"to sample text from it, or "
    r"`rnnflow evaluate .*run` for its validation perplexity"
)


def test_predict_and_export_refuse_a_charlm_run_and_say_what_to_use(charlm_run, image, capsys):
    # the run's config.json is a copy for people: the checkpoint's record decides
    config = json.loads((charlm_run / "config.json").read_text())
    (charlm_run / "config.json").write_text(json.dumps({**config, "task": "classifier"}))
    assert main(["predict", str(charlm_run), str(image)]) == 2  # a run of the wrong kind
    err = capsys.readouterr().err
    assert re.search(r"^rnnflow predict: .*run " + CHARLM_REFUSAL.format(cmd="predict"), err), err
    out = charlm_run.parent / "m.onnx"
    assert main(["export", str(charlm_run), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert re.search(r"^rnnflow export: .*run " + CHARLM_REFUSAL.format(cmd="export"), err), err
    assert not out.exists()


def test_evaluate_serves_a_charlm_run_on_its_validation_split(charlm_run, capsys):
    assert main(["evaluate", str(charlm_run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    summary = json.loads((charlm_run / "summary.json").read_text())  # written by training
    assert result["task"] == "charlm" and result["split"] == "validation"
    assert result["checkpoint"].endswith("best.safetensors")
    assert result["perplexity"] == pytest.approx(summary["val_perplexity"], rel=1e-9)
    assert result["characters"] == summary["val_characters"]
    assert result["bigram_perplexity"] == summary["bigram_perplexity"]
    assert result["bits_per_character"] == pytest.approx(
        summary["val_loss"] / 0.6931471805599453, rel=1e-9
    )
    assert main(["evaluate", str(charlm_run)]) == 0
    assert re.search(r"perplexity \d+\.\d\d .* bits/char", capsys.readouterr().out)
    assert main(["evaluate", str(charlm_run), "--dataset", "mnist"]) == 2
    assert re.search(
        r"rnnflow evaluate: --dataset applies to image classifier runs; .* is a character model",
        capsys.readouterr().err,
    )
    assert main(["evaluate", str(charlm_run), "--split", "train"]) == 2
    assert re.search(
        r"rnnflow evaluate: --split train applies to image classifier, sequence and "
        r"text-classify runs; .* is a character model",
        capsys.readouterr().err,
    )


@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_an_unknown_task_is_named(charlm_run, image, tmp_path, capsys, command):
    source = charlm_run / "best.safetensors"
    with safe_open(str(source), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        meta = {**f.metadata(), "task": "speech"}
    ckpt = tmp_path / "future.safetensors"
    save_file(tensors, str(ckpt), metadata=meta)
    onnx_out = str(tmp_path / "m.onnx")
    extra = {
        "predict": [str(image)],
        "evaluate": [],
        "export": ["--format", "onnx", "--out", onnx_out],
    }
    assert main([command, str(ckpt), *extra[command]]) == 1
    known = re.escape(", ".join(t.name for t in TASKS))  # every registered task, in order
    assert re.search(
        rf"^rnnflow {command}: .*future\.safetensors holds a checkpoint of task 'speech', which "
        rf"this rnnflow does not know \(it knows {known}\)",
        capsys.readouterr().err,
    )


@pytest.mark.parametrize("info", TASKS, ids=lambda info: info.name)
def test_resume_refuses_any_preset(tmp_path, capsys, info):
    """--resume continues the saved config: a --preset (even the run's own) is refused, for
    every task, before the folder is read or locked."""
    run = tmp_path / "run"
    run.mkdir()
    argv = ["train", "--task", info.name, "--resume", str(run), "--preset", info.default_preset]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--preset cannot be given with it (got --preset {info.default_preset})" in err
    assert list(run.iterdir()) == []


def test_generate_names_itself_once_for_the_librarys_errors(charlm_run, capsys):
    """rnnflow.text.generate's errors start with 'generate:': the command must not say it twice."""
    assert main(["generate", str(charlm_run), "--prime", "\u2603"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnflow generate: the prime has characters the model does not know"), err
