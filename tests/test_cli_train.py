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
import re
import shutil
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
        rows[role] = IdxFile(
            name, "0" * 64, archive_size=0, size=len(data), sha256=hashlib.sha256(data).hexdigest()
        )
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


def test_stop_at_step_is_absolute_and_refuses_steps_it_cannot_reach(fake_data, tmp_path, capsys):
    """--stop-at-step N counts the run's steps from its start: a resume at step 3 refuses N <= 3
    naming the step (it used to train one more step and stop at 4), touching nothing; N < 1 is
    a usage error (a new run with -1 used to stop at step 1); N > 3 stops at exactly N."""
    data, _ = fake_data
    run = tmp_path / "run"
    for bad in ("0", "-1", "-3"):
        with pytest.raises(SystemExit, match="2"):
            train(data, run, f"--stop-at-step={bad}")
        err = capsys.readouterr().err
        assert f"argument --stop-at-step: expected an integer >= 1, got '{bad}'" in err, err
    assert not run.exists()
    assert train(data, run, "--stop-at-step", "3") == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    for stop in ("3", "2", "1"):
        assert main(["train", "--resume", str(run), "--stop-at-step", stop]) == 2
        err = capsys.readouterr().err
        assert err == (
            f"rnnflow train: --stop-at-step {stop}: {run} is already at step 3; the step counts "
            "from the run's start (absolute), so give a step > 3\n"
        ), err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert main(["train", "--resume", str(run), "--stop-at-step", "5"]) == 0
    progress = json.loads(load_file_metadata(run / "checkpoint.safetensors")["progress"])
    assert progress["step"] == 5


def test_a_folder_mixing_two_runs_or_with_a_damaged_config_is_refused(fake_data, tmp_path, capsys):
    """evaluate, predict, export and --resume refuse a run folder whose config.json is not the
    run its checkpoints hold (another run's .safetensors copied in: they used to evaluate and
    resume the other run and write its results into this folder), naming both files and the
    differing fields; a config.json that is not JSON is refused naming it."""
    data, _ = fake_data
    a, b = tmp_path / "a", tmp_path / "b"
    assert train(data, a, "--stop-at-step", "20") == 0  # validated: best.safetensors too
    assert train(data, b, "--stop-at-step", "20", "--num-units", "8", "--seed", "4") == 0
    for name in ("best.safetensors", "checkpoint.safetensors"):
        shutil.copy(b / name, a / name)
    capsys.readouterr()
    png = tmp_path / "x.png"
    Image.fromarray(make_images(1, 7)[0][0]).save(png)
    before = {p.name: p.read_bytes() for p in a.iterdir() if p.is_file()}
    commands = [
        (["evaluate", str(a)], 1, "best"),
        (["predict", str(a), str(png)], 1, "best"),
        (["export", str(a), "--format", "torchscript", "--out", str(tmp_path / "m.pt")], 1, "best"),
        (["train", "--resume", str(a)], 2, "checkpoint"),
    ]
    for argv, status, name in commands:
        assert main(argv) == status, argv
        err = capsys.readouterr().err
        assert re.search(
            rf"^rnnflow {argv[0]}: (cannot resume: )?{re.escape(str(a / 'config.json'))} and "
            rf"{re.escape(str(a / name))}\.safetensors are not of the same run \(config.json vs "
            r"checkpoint: num_units: 12 vs 8; seed: 3 vs 4\): the folder mixes files of two runs",
            err,
        ), err
    assert {p.name: p.read_bytes() for p in a.iterdir() if p.is_file()} == before
    assert not (tmp_path / "m.pt").exists()
    (b / "config.json").write_text("{")
    for argv, status, _ in commands[:1] + commands[3:]:
        argv = [x.replace(str(a), str(b)) for x in argv]
        assert main(argv) == status, argv
        err = capsys.readouterr().err
        assert f"{b / 'config.json'}: not a readable config.json (Expecting" in err, err


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


def test_progress_plain_lines_when_not_a_terminal():
    """Not a terminal (a log file, CI): tqdm's one-line summary as plain lines, no carriage
    returns; the last train record's loss/accuracy and the last validation shown; nothing when
    disabled (--quiet)."""
    import io
    from types import SimpleNamespace

    from rnnflow.cli.train import ProgressDisplay

    stream = io.StringIO()
    show = ProgressDisplay(100, stream, plain_every=0.0, start_step=40)
    show(SimpleNamespace(step=41), {"kind": "step", "loss": 9.0})  # per-step info: not shown
    show(SimpleNamespace(step=50), {"kind": "train", "loss": 0.5, "accuracy": 0.75})
    show(SimpleNamespace(step=50), {"kind": "val", "accuracy": 0.875})
    show(SimpleNamespace(step=100), {"kind": "train", "loss": 0.25, "accuracy": 0.5})
    show.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in stream.getvalue()
    assert lines[0].startswith("step 41/100: ") and "loss" not in lines[0]
    assert lines[1].startswith("step 50/100: ") and "loss=0.500, acc=0.750" in lines[1]
    assert "val=0.8750" in lines[2]
    assert (
        lines[3].startswith("step 100/100: 100%")
        and "loss=0.250, acc=0.500, val=0.8750" in (lines[3])
    )
    silent = io.StringIO()
    quiet = ProgressDisplay(10, silent, enabled=False)
    quiet(SimpleNamespace(step=5), {"kind": "train", "loss": 1.0})
    quiet.close()
    assert silent.getvalue() == ""


def test_progress_shows_a_language_models_validation_perplexity():
    import io
    from types import SimpleNamespace

    from rnnflow.cli.train import ProgressDisplay

    stream = io.StringIO()
    show = ProgressDisplay(10, stream, plain_every=0.0)
    show(SimpleNamespace(step=3), {"kind": "val", "perplexity": 12.345, "accuracy": 0.3})
    assert "val_ppl=12.35" in stream.getvalue() and "val=" not in stream.getvalue()


def test_without_a_validation_set_the_last_weights_are_kept(fake_data, tmp_path, capsys):
    data, _ = fake_data
    run = tmp_path / "run"
    assert train(data, run, "--val-size", "0") == 0
    out = capsys.readouterr().out
    assert "checkpoint of step 50, no validation set (--val-size 0): the last weights" in out
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert not any(json.loads(x)["kind"] == "val" for x in lines)


# ---------------------------------------------------------------------------------------------
# the run folder: one writer, crash safety, clear refusals


def _patched(rows: dict, *argv: str, env_extra: dict | None = None, script: str = PATCH):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env_extra or {})}
    rows_json = json.dumps({k: vars(v) for k, v in rows.items()})
    return subprocess.Popen(
        [sys.executable, "-c", script, rows_json, *argv],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"the process ended before {what}: {proc.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_second_writer_is_refused_and_a_killed_holder_leaves_no_lock(fake_data, tmp_path, capsys):
    """100 of 100 attempts (--out and --resume) against a training process are refused naming
    its pid; after kill -9 its lock file is stale and the run resumes."""
    data, rows = fake_data
    run = tmp_path / "run"
    long = ["--train-examples", "400000", "--eval-every", "160"]
    holder = _patched(rows, "train", *TINY, *long, "--data-dir", str(data), "--out", str(run))
    try:
        lock = run / ".rnnflow.lock"
        _wait_for(lambda: (run / "checkpoint.safetensors").exists(), holder, "a checkpoint")
        assert lock.read_text().strip() == str(holder.pid)
        refused = 0
        for attempt in range(100):
            # (--stop-at-step: were the lock not held, a resume would stop after one step)
            resume = ["--resume", str(run), "--stop-at-step", "1"]
            argv = resume if attempt % 2 else [*TINY, "--out", str(run)]
            status = main(["train", *argv, "--data-dir", str(data)])
            err = capsys.readouterr().err
            message = f"{run} is in use by another rnnflow process (pid {holder.pid})"
            refused += status == 1 and message in err
        assert refused == 100
    finally:
        holder.kill()
        holder.communicate()
    assert lock.exists()  # kill -9: the file stays, the kernel dropped the lock
    step = json.loads(load_file_metadata(run / "checkpoint.safetensors")["progress"])["step"]
    assert main(["train", "--resume", str(run), "--stop-at-step", str(step + 3)]) == 0
    progress = json.loads(load_file_metadata(run / "checkpoint.safetensors")["progress"])
    assert progress["step"] == step + 3
    assert not lock.exists()  # released and removed at the end of the session


def test_two_runs_started_at_once_in_one_folder_one_is_refused(fake_data, tmp_path):
    data, rows = fake_data
    run = tmp_path / "run"
    argv = ["train", *TINY, "--data-dir", str(data), "--out", str(run)]
    procs = [_patched(rows, *argv) for _ in range(2)]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    statuses = sorted(status for status, _ in results)
    assert statuses == [0, 1], results
    loser = next(err for status, err in results if status == 1)
    pids = {str(p.pid) for p in procs}
    assert "is in use by another rnnflow process (pid" in loser or "already holds a run" in loser
    if "in use" in loser:
        assert loser.split("(pid ")[1].split(")")[0] in pids
    kinds = [json.loads(x)["kind"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert kinds.count("test") == 1 and kinds.count("train") == 5  # one run's records only


# kill -9 inside an atomic write: the process dies at its Nth fsync (a complete temporary file
# on disk, not yet renamed over the target), as a power cut or the OOM killer would leave it
KILL_AT_FSYNC = (
    """
import os, signal
_fsync, _calls, _at = os.fsync, [0], int(os.environ["RNNFLOW_TEST_KILL_AT_FSYNC"])
def _dying_fsync(fd):
    _calls[0] += 1
    if _calls[0] == _at:
        os.kill(os.getpid(), signal.SIGKILL)
    _fsync(fd)
os.fsync = _dying_fsync
"""
    + PATCH
)


def _kill_loop(
    fake_data, tmp_path, random_kills: int, seed: int, examples: int, max_delay: float
) -> dict:
    """A run killed (SIGKILL) again and again, then resumed to the end, against an uninterrupted
    one. The first kills land inside atomic writes (run.json, config.json, the first best and
    the first checkpoint), the others at random moments of training. Returns figures."""
    import random

    data, rows = fake_data
    full, cut = tmp_path / "full", tmp_path / "cut"
    long = ["--train-examples", str(examples), "--eval-every", "320", "--log-every", "160"]
    assert train(data, full, *long) == 0
    rng = random.Random(seed)
    figures: dict = {"kills": 0, "kills_in_writes": 0, "sessions": 0}
    figures |= {"temporaries_left_by_kills": 0, "steps_at_kills": []}  # the checkpoint's step
    # fsync counts per session: 1 run.json, 3 config.json (both before config.json exists), 5
    # the first best.safetensors; then a restart from step 0 dies at 7: its first checkpoint
    # (run.json 1-2, the metrics rewrite 3-4, best 5-6)
    plan = [("1", None), ("3", None), ("5", None), ("7", None)]
    plan += [(None, rng.uniform(0.0, max_delay)) for _ in range(random_kills)]
    start = time.monotonic()
    for at_fsync, delay in plan:
        started = (cut / "config.json").exists()
        argv = ["--resume", str(cut)] if started else [*TINY, *long, "--out", str(cut)]
        env = {"RNNFLOW_TEST_KILL_AT_FSYNC": at_fsync} if at_fsync else {}
        script = KILL_AT_FSYNC if at_fsync else PATCH
        proc = _patched(rows, "train", *argv, "--data-dir", str(data), env_extra=env, script=script)
        figures["sessions"] += 1
        if at_fsync is None:
            metrics = cut / "metrics.jsonl"
            size = metrics.stat().st_size if metrics.exists() else 0
            grown = lambda m=metrics, s=size: m.exists() and m.stat().st_size != s  # noqa: E731
            _wait_for(grown, proc, "training to log")
            time.sleep(delay)
            assert proc.poll() is None, "the run ended before its kill: make it longer"
            proc.kill()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL, err
        figures["kills"] += 1
        figures["kills_in_writes"] += at_fsync is not None
        figures["temporaries_left_by_kills"] += len(list(cut.glob(".*.tmp")))
        checkpoint = cut / "checkpoint.safetensors"
        figures["steps_at_kills"].append(
            json.loads(load_file_metadata(checkpoint)["progress"])["step"]
            if checkpoint.exists()
            else 0
        )
        assert "Traceback" not in err
    assert main(["train", "--resume", str(cut), "--data-dir", str(data), "--quiet"]) == 0
    figures["seconds"] = round(time.monotonic() - start, 1)
    assert_same_tensors(params(full), params(cut))
    assert_same_tensors(*[load_file(run / "best.safetensors") for run in (full, cut)])
    records = [[json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines()]
               for r in (full, cut)]  # fmt: skip
    drop = ("examples_per_s", "elapsed_s", "train_seconds", "process_cpu_seconds")
    same = [[{k: v for k, v in r.items() if k not in drop} for r in rs] for rs in records]
    assert same[0] == same[1]  # one run's log: nothing duplicated, nothing lost
    assert not list(cut.glob(".*.tmp")) and not (cut / ".rnnflow.lock").exists()
    return figures


def test_kill_loop_resumes_bit_identical(fake_data, tmp_path):
    """6 kills (4 inside writes); the 24-kill variant below is marked slow."""
    figures = _kill_loop(fake_data, tmp_path, random_kills=2, seed=0, examples=2400, max_delay=1.0)
    assert figures["kills"] == 6 and figures["kills_in_writes"] == 4
    assert figures["temporaries_left_by_kills"] >= 3  # a kill in each write left its .tmp
    print(f"kill loop: {figures}")  # shown with -s; docs/RELIABILITY.md quotes it


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("RNNFLOW_SLOW_TESTS"),
    reason="the 24-kill loop takes minutes: RNNFLOW_SLOW_TESTS=1 runs it (docs/RELIABILITY.md)",
)
def test_kill_loop_resumes_bit_identical_long(fake_data, tmp_path):
    figures = _kill_loop(
        fake_data, tmp_path, random_kills=20, seed=1, examples=16000, max_delay=3.0
    )
    assert figures["kills"] == 24 and figures["kills_in_writes"] == 4
    print(f"kill loop: {figures}")  # shown with -s; docs/RELIABILITY.md quotes it


def _no_data_loading(monkeypatch):
    import rnnflow.data

    def refuse(*args, **kwargs):
        raise AssertionError("the data was loaded before the run folder was checked")

    monkeypatch.setattr(rnnflow.data, "load_split", refuse)


def test_out_naming_a_file_or_an_unwritable_folder_is_refused_before_loading(
    fake_data, tmp_path, capsys, monkeypatch
):
    import errno

    _no_data_loading(monkeypatch)
    afile = tmp_path / "a_file"
    afile.write_text("mine")
    assert main(["train", "--out", str(afile)]) == 2
    assert f"rnnflow train: {afile} exists and is not a folder" in capsys.readouterr().err
    assert afile.read_text() == "mine"

    real_open = os.open

    def read_only_open(path, flags, *args):  # what a read-only file system answers
        if str(path).endswith(".rnnflow.lock"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only_open)
    folder = tmp_path / "ro"
    folder.mkdir()
    assert main(["train", "--out", str(folder)]) == 2
    assert (
        f"cannot write in the run folder {folder}: Read-only file system" in capsys.readouterr().err
    )
    assert main(["train", "--out", str(tmp_path / "new")]) == 2
    assert "cannot write in the run folder" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # the folder it had created is removed again


def test_a_failed_start_leaves_nothing_and_stale_temporaries_are_removed(fake_data, tmp_path):
    data, _ = fake_data
    run = tmp_path / "run"
    assert main(["train", *TINY, "--data-dir", str(tmp_path / "nowhere"), "--out", str(run)]) == 1
    assert not run.exists()  # no data: the folder it created is gone, lock file included
    run.mkdir()
    stale = run / ".checkpoint.safetensors.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    assert train(data, run, "--stop-at-step", "2") == 0
    assert not stale.exists()
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint.safetensors", "config.json", "curves.png", "metrics.jsonl", "run.json",
    ]  # fmt: skip


def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_0(fake_data, tmp_path):
    """config.json marks a run; without a checkpoint, --resume starts it again from step 0,
    bit-identical to an uninterrupted run; --out refuses to overwrite it."""
    data, _ = fake_data
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert train(data, full) == 0
    assert train(data, cut, "--stop-at-step", "3") == 0
    (cut / "checkpoint.safetensors").unlink()  # as if killed before its first checkpoint
    assert not (cut / "best.safetensors").exists()  # no validation before step 20
    assert train(data, cut) == 2  # still a run: --out does not overwrite it
    assert main(["train", "--resume", str(cut), "--quiet"]) == 0
    assert_same_tensors(params(full), params(cut))
    lines = [json.loads(x)["kind"] for x in (cut / "metrics.jsonl").read_text().splitlines()]
    assert lines.count("train") == 5 and lines.count("test") == 1  # the first session's dropped


def test_resume_keeps_tensorboard_and_the_checkpoint_decides_the_task(
    fake_data, tmp_path, capsys, monkeypatch
):
    data, _ = fake_data
    run = tmp_path / "run"
    typed = str(tmp_path / "venv" / "bin" / "rnnflow")  # not on PATH: the hint repeats it
    monkeypatch.setattr(sys, "argv", [typed])
    assert train(data, run, "--tensorboard", "--stop-at-step", "13") == 0
    assert f"Continue with: {typed} train --resume {run}\n" in capsys.readouterr().err
    assert json.loads((run / "run.json").read_text()) == {"tensorboard": True}
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({"task": "charlm", **config}))  # edited
    shutil.rmtree(run / "tensorboard")
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert any((run / "tensorboard").iterdir())  # events continue after the interruption
    assert main(["train", "--task", "charlm", "--resume", str(run)]) == 2
    assert f"--task charlm, but {run} holds a classifier run" in capsys.readouterr().err


@pytest.mark.parametrize(
    "line, message",
    [
        ("5", r"line 2: expected a JSON object, got 5"),
        ('{"step": "x"}', r"line 2: 'step' must be an integer >= 0, got 'x'"),
        ('{"kind": "train", "step": 1, "examples": -3}', r"line 2: 'examples' must be an int"),
        ('{"kind": 7}', r"line 2: 'kind' must be a string, got 7"),
        ("{not json", r"line 2: not JSON"),
    ],
)
def test_a_bad_metrics_line_is_named_on_resume(fake_data, tmp_path, capsys, line, message):
    data, _ = fake_data
    run = tmp_path / "run"
    assert train(data, run, "--stop-at-step", "13") == 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    # not the last line (a torn last line is what a kill leaves: skipped)
    (run / "metrics.jsonl").write_text("\n".join([lines[0], line, *lines]) + "\n")
    assert main(["train", "--resume", str(run), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert re.search(rf"rnnflow train: .*metrics.jsonl: {message}", err), err
    assert "Traceback" not in err


def test_a_full_disk_while_plotting_names_the_file_and_leaves_no_partial_png(
    fake_data, tmp_path, capsys, monkeypatch
):
    import errno

    from rnnflow import _atomic as atomic

    data, _ = fake_data
    run = tmp_path / "run"
    assert train(data, run, "--stop-at-step", "13") == 0
    before = (run / "curves.png").read_bytes()
    real_fdopen = os.fdopen

    class FullDisk:  # writes half, then ENOSPC, as write(2) on a full disk
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fdopen(fd, mode="r", *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        return FullDisk(f) if checkpoint_target[0] == "curves.png" else f

    checkpoint_target = [""]
    real_mkstemp = atomic.tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        checkpoint_target[0] = kwargs["prefix"][1:-1]
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(atomic.os, "fdopen", fdopen)
    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
    assert main(["train", "--resume", str(run), "--quiet", "--stop-at-step", "15"]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {run / 'curves.png'}: No space left on device" in err, err
    assert (run / "curves.png").read_bytes() == before  # the previous figure, whole
    assert not list(run.glob(".*.tmp"))


def test_presets_of_the_other_task_are_refused_and_help_lists_what_presets_change(capsys):
    """argparse refuses another task's preset (usage error, status 2), lists this task's and
    names the task it belongs to."""
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "tiny", "--out", "x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ")
    assert (
        "error: argument --preset: 'tiny' is not a preset of --task classifier (choose from "
        "best, tutorial); 'tiny' is a preset of --task charlm: add --task charlm"
    ) in err
    with pytest.raises(SystemExit):
        main(["train", "--task", "charlm", "--preset", "best", "--out", "x"])
    assert (
        "argument --preset: 'best' is not a preset of --task charlm (choose from tang, "
        "tang-5x8, tang-full, tang-full-512, tang-song, tiny); 'best' is a preset of --task "
        "classifier: add --task classifier"
    ) in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--preset", "nope", "--out", "x"])
    err = capsys.readouterr().err
    assert "'nope' is not a preset of --task classifier (choose from best, tutorial)\n" in err
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "the defaults shown are the tutorial preset's" in text
    assert "best: --optimizer adamw, --lr 0.003," in text and "--dataset fashion-mnist," in text
    assert "tiny:" not in text and "--corpus" not in text  # one task's flags and presets
    with pytest.raises(SystemExit):
        main(["train", "--task", "charlm", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "the defaults shown are the tang preset's" in text
    assert "tiny: --batch-size 8, --min-count 1, --embedding-size 16, --num-units 32," in text
    assert "best:" not in text and "--dataset" not in text and "--corpus" in text


def test_flags_of_another_task_are_refused_by_argparse_naming_the_task(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--corpus", "text", "--embed-size", "8", "--out", "x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (
        "rnnflow train: error: unrecognized arguments: --corpus text --embed-size 8 (--corpus, "
        "--embed-size are flags of --task charlm (add --task charlm); "
    ) in err
    # every task with such a flag is named (text-classify has --corpus too)
    # (--embed-size: the character model's hidden alias of text-classify's --embedding-size)
    assert "--corpus, --embed-size are flags of --task text-classify (add --task " in err
    assert err.endswith("; this is --task classifier)\n")
    with pytest.raises(SystemExit):
        main(["train", "--task", "charlm", "--hflip", "--out", "x"])
    assert (
        "unrecognized arguments: --hflip (--hflip is a flag of --task classifier (add --task "
        "classifier); this is --task charlm)"
    ) in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--colour", "red", "--out", "x"])
    assert "unrecognized arguments: --colour red (see rnnflow train --task classifier --help" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        main(["train", "--task", "speech", "--out", "x"])
    assert "argument --task: invalid choice: 'speech' (choose from 'classifier', 'image', " in (
        capsys.readouterr().err
    )


def test_the_task_of_a_command_line_before_parsing(tmp_path):
    from rnnflow.cli.train import requested_task

    assert requested_task(["train", "--out", "x"]) == "classifier"
    assert requested_task(["train", "--task", "charlm"]) == "charlm"
    assert requested_task(["train", "--task=image"]) == "image"
    assert requested_task(["train", "--resume", str(tmp_path)]) == "classifier"  # no run yet
    (tmp_path / "config.json").write_text('{"task": "charlm"}')
    assert requested_task(["train", "--resume", str(tmp_path)]) == "charlm"
    assert requested_task(["train", f"--resume={tmp_path}", "--task", "image"]) == "image"


def test_old_and_new_spellings_of_the_image_task_train_the_same_run(fake_data, tmp_path, capsys):
    """No --task (the old command line), --task classifier (the old spelling) and --task image
    train the same run; a resume finds the task in the checkpoint, and a --task that
    contradicts it is refused."""
    data, _ = fake_data
    runs = {}
    for name, flags in {"none": [], "classifier": ["--task", "classifier"]}.items():
        runs[name] = tmp_path / name
        assert train(data, runs[name], *flags, "--stop-at-step", "3") == 0
    runs["image"] = tmp_path / "image"
    assert main(["train", "--task", "image", *TINY, "--data-dir", str(data), "--out",
                 str(runs["image"]), "--stop-at-step", "3"]) == 0  # fmt: skip
    for name in ("classifier", "image"):
        assert_same_tensors(params(runs[name]), params(runs["none"]))
    assert main(["train", "--resume", str(runs["image"]), "--stop-at-step", "4"]) == 0
    capsys.readouterr()
    assert main(["train", "--task", "charlm", "--resume", str(runs["none"])]) == 2
    assert capsys.readouterr().err == (
        f"rnnflow train: --task charlm, but {runs['none']} holds a classifier run\n"
    )


def test_one_ctrl_c_during_the_report_interrupts_and_says_how_to_report(
    fake_data, tmp_path, capsys, monkeypatch
):
    """After the loop, SIGINT is Python's again: one Ctrl-C in the test report ends the
    command (130) and names `rnnflow evaluate RUN` (it was swallowed by the loop's handler)."""
    import rnnflow.cli._image as glue

    def report(*args):
        os.kill(os.getpid(), signal.SIGINT)  # one Ctrl-C, as from the terminal
        time.sleep(2)  # the report would go on; a swallowed Ctrl-C returns 0 below
        return 0

    monkeypatch.setattr(glue, "report", report)
    data, _ = fake_data
    run = tmp_path / "run"
    assert train(data, run) == 130
    err = capsys.readouterr().err
    assert err == (
        f"rnnflow train: interrupted (Ctrl-C) while reporting a finished run: its checkpoints "
        f"are kept in {run}; report it with: rnnflow evaluate {run}\n"
    )
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert (run / "checkpoint.safetensors").is_file()


def test_a_ctrl_c_before_the_loop_is_one_line(fake_data, tmp_path, capsys, monkeypatch):
    """A Ctrl-C while the data load (or an import) runs: exit 130, one line, no traceback;
    a new run's folder goes, a resumed one is named with the command that continues it."""
    import rnnflow.tasks.image as image

    data, _ = fake_data
    cut = tmp_path / "cut"
    assert train(data, cut, "--stop-at-step", "2") == 0
    capsys.readouterr()

    def interrupted(config):
        raise KeyboardInterrupt

    monkeypatch.setattr(image, "make_task", interrupted)
    new = tmp_path / "new"
    assert train(data, new) == 130
    assert capsys.readouterr().err == (
        "rnnflow train: interrupted (Ctrl-C) before training started; nothing of the run was kept\n"
    )
    assert not new.exists()
    assert main(["train", "--resume", str(cut), "--quiet"]) == 130
    assert capsys.readouterr().err == (
        f"rnnflow train: interrupted (Ctrl-C) before training started; the last checkpoint in "
        f"{cut} is kept; continue with: rnnflow train --resume {cut}\n"
    )
    monkeypatch.setattr("rnnflow.cli.build_parser", interrupted)  # Ctrl-C in the imports
    assert main(["train", "--out", str(new)]) == 130
    assert capsys.readouterr().err == "rnnflow train: interrupted (Ctrl-C)\n"
