"""The character-LM task through the CLI entry points: run folder, resume, generate, errors."""

from __future__ import annotations

import json
import math
import random
import re
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from rnnflow.cli import main
from rnnflow.tasks import run_task as recorded_task
from rnnflow.tasks.charlm import load_charlm, load_charlm_checkpoint
from rnnflow.text.baselines import ngram_perplexity
from rnnflow.text.config import (
    CHARLM_CONFIG_RANGES,
    CharLMConfig,
    charlm_config_from_dict,
)
from rnnflow.text.config import (
    field_type as charlm_field_type,
)
from rnnflow.text.poetry import FORMS, is_well_formed
from rnnflow.training.logging import read_metrics

HANZI = "春江花月夜山水风云雨雪天地人心秋日明光长城"
TINY = ["--preset", "tiny", "--embed-size", "8", "--num-units", "16", "--batch-size", "4"]
TINY += ["--cell", "gru"]  # LSTM is covered by tests/models/test_char_lm.py
TINY += ["--threads", "1"]  # tiny matrices: one thread is several times faster on a busy machine


@pytest.fixture(autouse=True)
def _restore_threads():
    """--threads calls torch.set_num_threads, which is process-wide: undo it after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def poem(rng: random.Random) -> str:
    verse = lambda: "".join(rng.choice(HANZI) for _ in range(5))  # noqa: E731
    return f"{verse()}，{verse()}。\n{verse()}，{verse()}。"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    rng = random.Random(0)
    path = tmp_path / "poems.txt"
    path.write_text("\n%\n".join(poem(rng) for _ in range(24)) + "\n", encoding="utf-8")
    return path


def train(*argv: str) -> int:
    return main(["train", "--task", "charlm", *argv])


def test_train_writes_the_run_folder(tmp_path: Path, corpus: Path, capsys) -> None:
    run = tmp_path / "run"
    assert train(*TINY, "--text", str(corpus), "--out", str(run), "--quiet") == 0
    for name in ("config.json", "vocab.json", "metrics.jsonl", "checkpoint.safetensors"):
        assert (run / name).is_file(), name
    assert (run / "best.safetensors").is_file() and (run / "curves.png").is_file()
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert config["task"] == "charlm" and config["corpus"] == "text"
    assert charlm_config_from_dict(config).text == (str(corpus),)
    assert recorded_task(run) == "charlm"
    records = read_metrics(run / "metrics.jsonl")
    assert {r["kind"] for r in records} == {"train", "val"}
    assert sum(r["kind"] == "val" for r in records) == 2  # one per epoch
    summary = json.loads((run / "summary.json").read_text())
    assert summary["val_perplexity"] == pytest.approx(math.exp(summary["val_loss"]))
    assert summary["unigram_perplexity"] > summary["bigram_perplexity"] > 1
    assert summary["process_cpu_seconds_this_session"] > 0
    out = capsys.readouterr().out
    assert "validation perplexity" in out and "unigram" in out and "bigram" in out

    model, vocab, checkpoint = load_charlm(run)
    assert checkpoint.path.name == "best.safetensors" and len(vocab) == model.vocab_size
    assert not model.training


def test_resumed_run_equals_uninterrupted_run(tmp_path: Path, corpus: Path) -> None:
    args = [*TINY, "--text", str(corpus), "--quiet", "--dropout", "0.2", "--epochs", "3"]
    assert train(*args, "--out", str(tmp_path / "a")) == 0
    assert train(*args, "--out", str(tmp_path / "b"), "--stop-at-step", "5") == 0
    stopped = load_charlm_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    assert stopped.progress["step"] == 5 and not stopped.progress["finished"]
    assert train("--resume", str(tmp_path / "b"), "--quiet") == 0
    a = load_charlm_checkpoint(tmp_path / "a" / "checkpoint.safetensors")
    b = load_charlm_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    assert a.progress["step"] == b.progress["step"] and b.progress["finished"]
    for name, value in a.model.items():
        torch.testing.assert_close(b.model[name], value, rtol=0, atol=0, msg=name)
    val = lambda run: [  # noqa: E731  (train records average over a session's window)
        (r["step"], r["loss"])
        for r in read_metrics(tmp_path / run / "metrics.jsonl")
        if r["kind"] == "val"
    ]
    assert val("b") == val("a") and len(val("a")) == 3


def test_generate_cli_forms_seed_and_json(tmp_path: Path, corpus: Path, capsys) -> None:
    run = tmp_path / "run"
    assert train(*TINY, "--text", str(corpus), "--out", str(run), "--quiet") == 0
    capsys.readouterr()
    argv = ["generate", str(run), "--form", "5x4", "--seed", "3", "--num", "3", "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out) == first  # same seed, same poems
    assert [s["seed"] for s in first["samples"]] == [3, 4, 5]
    assert all(is_well_formed(s["text"], FORMS["5x4"]) for s in first["samples"])
    assert main(["generate", str(run), "--prime", "春江", "--length", "12", "--top-k", "3"]) == 0
    assert capsys.readouterr().out.startswith("春江")


def test_generate_cli_errors(tmp_path: Path, corpus: Path, capsys) -> None:
    assert main(["generate", str(tmp_path)]) == 1
    assert "not a run folder written by `rnnflow train --task charlm`" in capsys.readouterr().err
    run = tmp_path / "run"
    assert train(*TINY, "--text", str(corpus), "--out", str(run), "--quiet") == 0
    capsys.readouterr()
    with pytest.raises(SystemExit, match="2"):  # argparse: one of the four forms listed
        main(["generate", str(run), "--form", "5-4"])
    assert "--form: invalid choice: '5-4' (choose from '5x4', '7x4', '5x8', '7x8')" in (
        capsys.readouterr().err
    )
    assert main(["generate", str(run), "--form", "5x4", "--prime", "春江花月夜山"]) == 2
    assert "character 5 is '山', expected '，'" in capsys.readouterr().err


def test_generate_cli_acrostic_rhyme_tonal_json(tmp_path: Path, corpus: Path, capsys) -> None:
    from rnnflow.text.constraints import rhymes, tonal_pattern_holds, verses

    run = tmp_path / "run"
    assert train(*TINY, "--text", str(corpus), "--out", str(run), "--quiet") == 0
    capsys.readouterr()
    argv = ["generate", str(run), "--acrostic", "春江花月", "--rhyme", "--tonal", "--json"]
    assert main([*argv, "--num", "4", "--top-p", "0.9", "--temperature", "1.5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["form"] == "5x4" and out["acrostic"] == "春江花月" and out["top_p"] == 0.9
    for s in out["samples"]:
        text = s["text"]
        assert is_well_formed(text, FORMS["5x4"]) and [v[0] for v in verses(text)] == list(
            "春江花月"
        )
        assert rhymes(text) and tonal_pattern_holds(text, 5)
        assert s["well_formed"] and s["rhymes"] and s["tonal"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--acrostic", "春江花"], "--acrostic '春江花' has 3 characters: give --form"),
        (["--rhyme"], "--rhyme and --tonal need --form"),
        (["--form", "5x4", "--acrostic", "春江花龘"], "acrostic characters ['龘'] are not in"),
        (["--form", "7x8", "--acrostic", "春江花月"], "has 4 characters, the 7x8 form has 8"),
        (["--top-p", "0"], "--top-p must be in (0, 1], got 0.0"),
    ],
)
def test_generate_cli_constraint_errors(
    tmp_path: Path, corpus: Path, capsys, argv: list[str], message: str
) -> None:
    run = tmp_path / "run"
    assert train(*TINY, "--text", str(corpus), "--out", str(run), "--quiet") == 0
    capsys.readouterr()
    assert main(["generate", str(run), *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty: no text to train on"),
        (b"\x7fELF\x02\x01\x01\x00\x00", "looks binary (a NUL byte at offset 7)"),
    ],
)
def test_empty_or_binary_text_is_a_clear_error(tmp_path: Path, capsys, content, message) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    assert train(*TINY, "--text", str(bad), "--out", str(tmp_path / "run"), "--quiet") == 1
    err = capsys.readouterr().err
    assert err.startswith("rnnflow train: read_documents: ") and message in err


def test_config_checks_and_resume_refuses_changes(
    tmp_path: Path, corpus: Path, capsys, monkeypatch
) -> None:
    with pytest.raises(ValueError, match=r"corpus='text' needs at least one file in text"):
        CharLMConfig(corpus="text")
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1\.5"):
        CharLMConfig(dropout=1.5)
    with pytest.raises(ValueError, match=r"unknown CharLMConfig fields \['dataset'\]"):
        charlm_config_from_dict({"dataset": "mnist"})
    with pytest.raises(ValueError, match=r"task is 'classifier', expected 'charlm'"):
        charlm_config_from_dict({"task": "classifier"})
    run = tmp_path / "run"
    typed = str(tmp_path / "venv" / "bin" / "rnnflow")  # not on PATH: the hint repeats it
    monkeypatch.setattr(sys, "argv", [typed])
    assert train(*TINY, "--text", str(corpus), "--out", str(run), "--stop-at-step", "1") == 0
    assert f"Continue with: {typed} train --resume {run}\n" in capsys.readouterr().err
    assert train("--resume", str(run), "--lr", "0.1") == 2
    assert "--lr cannot change" in capsys.readouterr().err
    assert train(*TINY, "--text", str(corpus), "--out", str(run)) == 2
    assert "already holds a run" in capsys.readouterr().err


CHARLM_FLOATS = [f.name for f in fields(CharLMConfig) if charlm_field_type(f.name) is float]
CHARLM_INTS = [f.name for f in fields(CharLMConfig) if charlm_field_type(f.name) is int]


def test_every_numeric_charlm_field_is_checked() -> None:
    assert sorted(CHARLM_CONFIG_RANGES) == sorted(CHARLM_FLOATS + CHARLM_INTS)
    assert len(CHARLM_FLOATS) == 8 and len(CHARLM_INTS) == 13  # counted by hand


@pytest.mark.parametrize("name", CHARLM_FLOATS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_charlm_floats_are_refused(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"CharLMConfig: {name} must be a finite number, got"):
        CharLMConfig(**{name: value})


@pytest.mark.parametrize("name", CHARLM_INTS)
def test_negative_and_huge_charlm_ints_are_refused(name: str) -> None:
    for value in (-1, 2**63):
        with pytest.raises(ValueError, match=rf"CharLMConfig: {name} must "):
            CharLMConfig(**{name: value})


def test_ngram_baselines_by_hand() -> None:
    # targets exclude <pad>=0 and <bos>=2: |W| = 5 - 2 = 3 (ids 1, 3, 4)
    train, val = [[2, 4, 4, 3]], [[2, 4, 3]]
    uni = {4: (2 + 1) / (3 + 3), 3: (1 + 1) / (3 + 3)}
    assert ngram_perplexity(train, val, order=1, vocab_size=5) == pytest.approx(
        math.exp(-(math.log(uni[4]) + math.log(uni[3])) / 2)
    )
    # Witten-Bell: after <bos> (1 token, 1 type): (1 + 1 * P(4)) / 2; after 4 (2 tokens, 2 types)
    p_4_bos = (1 + uni[4]) / 2
    p_3_4 = (1 + 2 * uni[3]) / (2 + 2)
    assert ngram_perplexity(train, val, order=2, vocab_size=5) == pytest.approx(
        math.exp(-(math.log(p_4_bos) + math.log(p_3_4)) / 2)
    )


def test_rnnflow_train_task_charlm_through_the_real_entry_point(tmp_path: Path, corpus: Path):
    run = tmp_path / "run"
    argv = ["train", "--task", "charlm", *TINY, "--text", str(corpus), "--epochs", "1"]
    assert main([*argv, "--out", str(run), "--quiet"]) == 0
    assert recorded_task(run) == "charlm"
    assert main(["train", "--resume", str(run), "--quiet"]) == 0  # found to be a charlm run


def test_charlm_flags_without_the_task_are_refused(tmp_path: Path, corpus: Path, capsys):
    with pytest.raises(SystemExit, match="2"):
        main(["train", "--text", str(corpus), "--corpus", "text", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert (
        f"rnnflow train: error: unrecognized arguments: --text {corpus} --corpus text (--corpus, "
        "--text are flags of --task charlm (add --task charlm); "
    ) in err
    assert err.endswith("; this is --task classifier)\n")  # after any other task with --corpus
    assert not (tmp_path / "r").exists()


def _rewrite_metadata(run: Path, change) -> None:
    """Rewrite both checkpoints of ``run`` with ``change(metadata)`` (as an older version would
    have written them)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    for name in ("checkpoint.safetensors", "best.safetensors"):
        path = run / name
        with safe_open(path, "pt") as f:
            meta = f.metadata()
        save_file(load_file(path), str(path), change(meta))


def test_checkpoints_of_format_version_1_still_load(tmp_path: Path, corpus: Path) -> None:
    """Runs saved before the format moved to version 2 (it added the classifier's ema.*
    tensors; a character model's file is otherwise unchanged) keep loading and generating."""
    run = tmp_path / "run"
    assert train(*TINY, "--text", str(corpus), "--quiet", "--epochs", "1", "--out", str(run)) == 0
    _rewrite_metadata(run, lambda meta: meta | {"format_version": "1"})
    old = load_charlm_checkpoint(run / "checkpoint.safetensors")
    assert old.progress["finished"] and old.optimizer is not None
    model, vocab, _ = load_charlm(run)
    assert len(vocab) > 4 and not model.training


def test_a_non_finite_step_stops_the_character_model(tmp_path: Path, corpus: Path, capsys):
    """lr = 1e37 is accepted (finite); the weights overflow and the run stops with exit 1."""
    run = tmp_path / "run"
    assert train(*TINY, "--text", str(corpus), "--out", str(run), "--lr", "1e37") == 1
    err = capsys.readouterr().err
    assert re.search(
        r"fit: the loss is (nan|inf) at optimizer step 2 \(learning rate 9.8\d+e\+36\)"
        r"; training stopped and no checkpoint had been written yet",
        err,
    ), err
    assert "Traceback" not in err and not (run / "best.safetensors").exists()


def test_progress_beyond_the_run_is_refused(tmp_path: Path, corpus: Path, capsys) -> None:
    """#14: a hand-edited step of 10**18 is refused at resume (the total depends on the
    corpus), naming the file; so is a non-finite best validation loss (older files' key)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    assert (
        train(*TINY, "--text", str(corpus), "--quiet", "--out", str(run), "--stop-at-step", "2")
        == 0
    )
    path = run / "checkpoint.safetensors"

    def edit(**changes) -> None:
        with safe_open(path, "pt") as f:
            meta = f.metadata()
        progress = json.loads(meta["progress"]) | changes
        save_file(load_file(path), str(path), meta | {"progress": json.dumps(progress)})

    edit(best_val_loss=math.inf)
    with pytest.raises(
        ValueError,
        match=r"checkpoint\.safetensors: corrupt progress metadata: "
        r"'best_val_loss' is inf, expected a finite number",
    ):
        load_charlm_checkpoint(path)
    edit(best_val_loss=None, step=10**18)
    capsys.readouterr()
    assert train("--resume", str(run), "--quiet") == 1
    assert re.search(
        r"checkpoint\.safetensors: corrupt progress metadata: 'step' is 1000000000000000000, "
        r"but its config's run has only \d+ steps",
        capsys.readouterr().err,
    )


def test_sigkill_and_ctrl_c_of_the_cli_then_resume_equal_the_uninterrupted_run(
    tmp_path: Path, corpus: Path
) -> None:
    """The real command in a subprocess: killed (SIGKILL) once it has logged, resumed and
    interrupted (SIGINT: it saves and exits 130), resumed to the end; its checkpoints and
    metrics records (but wall-clock fields) equal an uninterrupted run's, bit for bit."""
    import os
    import signal
    import subprocess
    import time

    from safetensors.torch import load_file

    args = [*TINY, "--text", str(corpus), "--dropout", "0.2", "--epochs", "40", "--quiet"]
    args += ["--log-every", "12", "--eval-every", "40", "--ema-decay", "0.5"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert train(*args, "--out", str(full)) == 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "rnnflow", "train", "--task", "charlm"]

    def start_and_signal(argv: list[str], signum: int) -> subprocess.CompletedProcess:
        metrics = cut / "metrics.jsonl"
        size = metrics.stat().st_size if metrics.exists() else 0
        proc = subprocess.Popen([*command, *argv], env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not (metrics.exists() and metrics.stat().st_size > size + 200):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
        return subprocess.CompletedProcess(proc.args, proc.returncode, "", err)

    killed = start_and_signal([*args, "--out", str(cut)], signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    stopped = start_and_signal(["--resume", str(cut), "--quiet"], signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    assert "saving a checkpoint after this step" in stopped.stderr
    assert train("--resume", str(cut)) == 0
    for name in ("checkpoint.safetensors", "best.safetensors"):
        a, b = load_file(full / name), load_file(cut / name)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=f"{name}: {key}")
    clock = ("examples_per_s", "elapsed_s", "tokens_per_s")
    records = [
        [
            {k: v for k, v in r.items() if k not in clock}
            for r in read_metrics(run / "metrics.jsonl")
        ]
        for run in (full, cut)
    ]
    assert records[0] == records[1] and len(records[0]) > 20
    assert any(k.startswith("ema.") for k in load_file(full / "checkpoint.safetensors"))


ADAPTIVE = ["--softmax", "adaptive", "--cutoffs", "6", "--cutoffs", "14"]


def test_adaptive_softmax_run_trains_evaluates_and_generates_poems(
    tmp_path: Path, corpus: Path, capsys
) -> None:
    """--softmax adaptive: recorded in config.json and the checkpoint; the train records carry no
    accuracy (the cheap path never scores every id), validation does; generate's constraints
    mask the full log-probabilities, so every poem keeps its form, acrostic and rhyme."""
    from torch import nn

    from rnnflow.text.constraints import rhymes, verses

    run = tmp_path / "run"
    assert train(*TINY, *ADAPTIVE, "--text", str(corpus), "--out", str(run), "--quiet") == 0
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert config["softmax"] == "adaptive" and config["cutoffs"] == [6, 14]
    model, vocab, checkpoint = load_charlm(run)
    assert checkpoint.config.cutoffs == (6, 14) and checkpoint.config.softmax == "adaptive"
    assert isinstance(model.output, nn.AdaptiveLogSoftmaxWithLoss)
    assert model.output.cutoffs == [6, 14, len(vocab)]
    records = read_metrics(run / "metrics.jsonl")
    assert all("accuracy" not in r for r in records if r["kind"] == "train")
    assert all(0 <= r["accuracy"] <= 1 for r in records if r["kind"] == "val")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["val_perplexity"] == pytest.approx(math.exp(summary["val_loss"]))

    capsys.readouterr()
    argv = ["generate", str(run), "--acrostic", "春江花月", "--rhyme", "--json", "--num", "3"]
    assert main([*argv, "--temperature", "1.5"]) == 0
    for sample in json.loads(capsys.readouterr().out)["samples"]:
        text = sample["text"]
        assert is_well_formed(text, FORMS["5x4"]) and rhymes(text)
        assert [v[0] for v in verses(text)] == list("春江花月")
    assert main(["evaluate", str(run)]) == 0
    assert "perplexity" in capsys.readouterr().out


def test_adaptive_softmax_config_errors(tmp_path: Path, corpus: Path, capsys) -> None:
    with pytest.raises(ValueError, match=r"softmax='adaptive' needs cutoffs \(e\.g\. --cutoffs"):
        CharLMConfig(softmax="adaptive")
    with pytest.raises(
        ValueError, match=r"cutoffs=\[5\] are for softmax='adaptive' \(--softmax adaptive\)"
    ):
        CharLMConfig(cutoffs=(5,))
    with pytest.raises(ValueError, match=r"cutoffs must be increasing positive ids, got \[9, 5\]"):
        CharLMConfig(softmax="adaptive", cutoffs=(9, 5))
    with pytest.raises(ValueError, match=r"softmax must be one of \['full', 'adaptive'\]"):
        CharLMConfig(softmax="sampled")  # type: ignore[arg-type]
    with pytest.raises(SystemExit, match="2"):
        train(*TINY, "--softmax", "adaptive", "--cutoffs", "x")
    assert "--cutoffs: invalid int value: 'x'" in capsys.readouterr().err
    big = ["--softmax", "adaptive", "--cutoffs", "9999"]
    assert train(*TINY, *big, "--text", str(corpus), "--out", str(tmp_path / "r")) == 1
    err = capsys.readouterr().err
    assert "charlm: --cutoffs [9999] must stay below the vocabulary size" in err, err
    assert "a lower --min-count gives more characters" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # refused before any run file: the folder stays usable
    good = ["--softmax", "adaptive", "--cutoffs", "8"]
    assert train(*TINY, *good, "--text", str(corpus), "--out", str(tmp_path / "r")) == 0


def test_a_corpus_too_small_for_a_validation_split_is_refused(tmp_path: Path, capsys) -> None:
    """One document and --val-fraction > 0: no validation document, a NaN perplexity; refused
    before any run file is written."""
    one = tmp_path / "one.txt"
    one.write_text("春眠不觉晓\n", encoding="utf-8")
    assert train(*TINY, "--text", str(one), "--out", str(tmp_path / "r")) == 1
    err = capsys.readouterr().err
    assert (
        "charlm: --val-fraction 0.1 leaves no validation document: the corpus holds 1 document(s)"
        " (a line holding only '%' ends a document" in err
    ), err
    assert "or pass --val-fraction 0" in err
    assert not (tmp_path / "r").exists()


def _reject_nan(token: str) -> None:
    raise AssertionError(f"a non-finite number {token} in a JSON file")


def test_no_validation_split_keeps_the_last_weights_and_reports_no_nan(
    tmp_path: Path, corpus: Path, capsys
) -> None:
    """--val-fraction 0 (as the image and sequence tasks' --val-size 0): every document trains,
    the last weights are the kept ones, and no NaN reaches the console, summary.json,
    metrics.jsonl or `rnnflow evaluate` (which refuses: nothing to score)."""
    from rnnflow.tasks.charlm import evaluate
    from rnnflow.text.corpus import BucketBatches

    run = tmp_path / "run"
    assert train(*TINY, "--text", str(corpus), "--val-fraction", "0", "--out", str(run)) == 0
    out = capsys.readouterr().out
    assert "no validation documents (--val-fraction 0.0): the last weights (step 12)" in out, out
    assert "nan" not in out.lower()
    for text in (run / "summary.json").read_text(), (run / "config.json").read_text():
        json.loads(text, parse_constant=_reject_nan)
    for line in (run / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=_reject_nan)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_documents"] == 24 and summary["val_documents"] == 0
    assert [summary[k] for k in ("val_loss", "val_perplexity", "val_accuracy")] == [None] * 3
    assert {r["kind"] for r in read_metrics(run / "metrics.jsonl")} == {"train"}
    best = load_charlm_checkpoint(run / "best.safetensors")
    last = load_charlm_checkpoint(run / "checkpoint.safetensors")
    assert best.progress["step"] == last.progress["step"] == summary["steps"]
    for key, tensor in last.model.items():
        torch.testing.assert_close(best.model[key], tensor, rtol=0, atol=0)
    for argv in ([], ["--json"]):
        assert main(["evaluate", str(run), *argv]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert (
            f"rnnflow evaluate: {run} has no validation documents (trained with --val-fraction "
            "0.0): nothing to score" in captured.err
        ), captured.err
    model, vocab, _ = load_charlm(run)
    with pytest.raises(ValueError, match=r"evaluate: no characters to score \(an empty split\)"):
        evaluate(model, BucketBatches([], 4, shuffle=False, pad_id=vocab.pad_id))


def test_runs_from_before_the_softmax_option_still_load(tmp_path: Path, corpus: Path) -> None:
    """A checkpoint whose stored config has no softmax/cutoffs keys (written before they
    existed) loads as the full softmax it was, and generates."""
    from rnnflow.text.generate import generate

    def without_softmax_keys(meta: dict[str, str]) -> dict[str, str]:
        config = json.loads(meta["config"])
        del config["softmax"], config["cutoffs"]
        return meta | {"config": json.dumps(config)}

    run = tmp_path / "run"
    assert train(*TINY, "--text", str(corpus), "--quiet", "--epochs", "1", "--out", str(run)) == 0
    _rewrite_metadata(run, without_softmax_keys)
    model, vocab, checkpoint = load_charlm(run)
    assert checkpoint.config.softmax == "full" and isinstance(model.output, torch.nn.Linear)
    assert is_well_formed(generate(model, vocab, form=FORMS["5x4"], seed=1).text, FORMS["5x4"])
