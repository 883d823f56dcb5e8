"""Data-parallel training: `torchrun` + DDP (gloo, 2 CPU processes) against one process.

The independent truth is the single-process run: with the global batch fixed, 2 processes must
end with its parameters (to float summation order), write one set of files, resume each other's
checkpoints across a change of world size, and never wait forever for a dead or hung peer.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_cli_train import PATCH, write_fake_dataset

from rnnflow.tasks.image import ImageTask
from rnnflow.training import fit
from rnnflow.training.config import PRESETS
from rnnflow.training.distributed import (
    SINGLE_PROCESS,
    DistributedContext,
    DistributedError,
    init_distributed,
    launched_distributed,
)

# No dropout (its masks are drawn per rank); every other stateful feature on: mirror + shift
# augmentation, warm-up + cosine, clipping, label smoothing, periodic validation.
SMALL = [
    "--preset", "best", "--dataset", "fashion-mnist", "--cell", "gru", "--num-units", "12",
    "--bidirectional", "--batch-size", "16", "--val-size", "40", "--train-examples", "480",
    "--log-every", "80", "--eval-every", "160", "--warmup-examples", "96", "--seed", "3",
    "--quiet",
]  # fmt: skip
STEPS = 30
TIMEOUT = 180  # seconds for any launched job; a hang fails the test instead of blocking CI


@pytest.fixture
def job(tmp_path):
    """``job(nproc, *args)`` runs ``rnnflow`` (the real CLI, with the generated dataset's
    checksums patched in) under ``torchrun --standalone`` when nproc > 1, else as one process."""
    rows = write_fake_dataset(tmp_path / "data")
    script = tmp_path / "rnnflow_patched.py"
    script.write_text(PATCH)
    rows_json = json.dumps({k: vars(v) for k, v in rows.items()})
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = _clean_env() | {"OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def command(nproc: int, *args: str) -> list[str]:
        launcher = [sys.executable]
        if nproc > 1:
            launcher += ["-m", "torch.distributed.run", "--standalone"]
            launcher += ["--nproc_per_node", str(nproc)]
        data = ["--data-dir", str(tmp_path / "data")] if args[0] == "train" else []
        return [*launcher, str(script), rows_json, *args, *data]

    def run(nproc: int, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command(nproc, *args), cwd=cwd, env=env, capture_output=True, text=True,
            timeout=TIMEOUT,
        )  # fmt: skip

    run.command = command  # type: ignore[attr-defined]
    run.env = env  # type: ignore[attr-defined]
    run.cwd = cwd  # type: ignore[attr-defined]
    return run


def _clean_env() -> dict[str, str]:
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "RNNFLOW_DATA_DIR")
    return {k: v for k, v in os.environ.items() if k not in names}


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]


def _state(run: Path) -> dict[str, torch.Tensor]:
    """Weights and optimizer state of a run's last checkpoint."""
    tensors = load_file(run / "checkpoint.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith(("model.", "optimizer."))}


def _assert_same_run(actual: Path, expected: Path) -> None:
    a, e = _state(actual), _state(expected)
    assert a.keys() == e.keys()
    for key in a:  # float32 training: only the summation order of the gradient differs
        torch.testing.assert_close(a[key], e[key], rtol=1e-4, atol=2e-6, msg=key)


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder).parent / p.name.split(".")[0]) for p in
                  folder.rglob("*") if p.is_file())  # fmt: skip


def test_two_gloo_processes_train_as_one_process_on_the_same_global_batches(job, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _ok(job(1, "train", *SMALL, "--threads", "1", "--tensorboard", "--out", str(one)))
    result = job(2, "train", *SMALL, "--tensorboard", "--out", str(two))
    _ok(result)
    _assert_same_run(two, one)
    torch.testing.assert_close(  # best checkpoint: the same validation picked the same step
        load_file(two / "best.safetensors"), load_file(one / "best.safetensors"),
        rtol=1e-4, atol=2e-6,
    )  # fmt: skip

    # one set of files: the same names as one process writes, each record logged once, the
    # launcher's working folder untouched, and the test result printed by rank 0 only
    assert _files(two) == _files(one)
    assert len(list((two / "tensorboard").iterdir())) == 1
    r1, r2 = _records(one), _records(two)
    assert [(r["kind"], r["step"], r["examples"]) for r in r2] == [
        (r["kind"], r["step"], r["examples"]) for r in r1
    ]
    assert r2[-1]["kind"] == "test" and r2[-1]["step"] == STEPS
    for a, b in zip(r2, r1, strict=True):  # losses and accuracies over the global batches
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=1e-9)
    assert list(job.cwd.iterdir()) == []
    assert result.stdout.count("test accuracy") == 1
    summary = json.loads((two / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == STEPS
    saved = load_file(two / "checkpoint.safetensors")
    assert "rng.rank1.torch" in saved and "rng.rank2.torch" not in saved


@pytest.mark.parametrize("first, second", [(2, 1), (1, 2)])
def test_resume_across_a_change_of_world_size(job, tmp_path, first, second):
    full, cut = tmp_path / "full", tmp_path / "cut"
    _ok(job(1, "train", *SMALL, "--threads", "1", "--out", str(full)))
    # 13 steps: mid-epoch, between periodic checkpoints
    _ok(job(first, "train", *SMALL, "--out", str(cut), "--stop-at-step", "13"))
    progress = json.loads(_checkpoint_progress(cut))
    assert progress["step"] == 13 and not progress["finished"]
    _ok(job(second, "train", "--resume", str(cut), "--quiet"))
    _assert_same_run(cut, full)
    assert [r["kind"] for r in _records(cut)] == [r["kind"] for r in _records(full)]


def _checkpoint_progress(run: Path) -> str:
    from safetensors import safe_open

    with safe_open(run / "checkpoint.safetensors", "pt") as f:
        return f.metadata()["progress"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_ranks(job, tmp_path: Path, *args: str) -> list[subprocess.Popen[str]]:
    """Two ranks started by hand (as a cluster scheduler would, without torchrun's agent)."""
    port = str(_free_port())
    procs = []
    for rank in (0, 1):
        env = job.env | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": "2"}
        env |= {"RANK": str(rank), "LOCAL_RANK": str(rank)}
        procs.append(
            subprocess.Popen(
                job.command(1, "train", *args),
                cwd=job.cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        )
    return procs


def _wait_for_training(run: Path, procs: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if (run / "checkpoint.safetensors").exists():
            return
        if any(p.poll() is not None for p in procs):
            outs = [p.communicate() for p in procs]
            pytest.fail(f"a rank exited before training: {outs}")
        time.sleep(0.2)
    pytest.fail("training did not start")


LONG = [*SMALL[:-1], "--train-examples", "10000000", "--eval-every", "320"]


@pytest.mark.parametrize("fault", ["killed", "hung"])
def test_a_dead_or_hung_rank_makes_the_other_exit_with_an_error(job, tmp_path, fault):
    run = tmp_path / "run"
    procs = _start_ranks(job, tmp_path, *LONG, "--out", str(run), "--dist-timeout", "5")
    try:
        _wait_for_training(run, procs)
        procs[1].send_signal(signal.SIGKILL if fault == "killed" else signal.SIGSTOP)
        start = time.monotonic()
        _, err = procs[0].communicate(timeout=TIMEOUT)
        waited = time.monotonic() - start
    finally:
        for p in procs:
            p.kill()
            p.communicate()
    assert procs[0].returncode == 1, err
    assert "rnnflow train: rank 0 of 2 lost contact with the other ranks" in err, err
    assert "Traceback" not in err
    assert waited < 60  # the 5 s timeout (hung) or the closed connection (killed), not forever
    assert (run / "checkpoint.safetensors").is_file()  # the last periodic checkpoint is kept


def test_ctrl_c_under_torchrun_saves_a_checkpoint_and_stops_every_rank(job, tmp_path, capsys):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        job.command(2, "train", *LONG, "--out", str(run)),
        cwd=job.cwd, env=job.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for_training(run, [proc])
        first = json.loads(_checkpoint_progress(run))["step"]
        # The checkpoint file appears before that step's stop check: a Ctrl-C in between
        # stops at that same step (it once failed `assert 20 > 20`). Wait until training has
        # logged a step past it, so the Ctrl-C checkpoint must be a new, later one.
        logged = _wait_for_record_after(run, first, [proc])
        # rank 0 holds the run folder's lock: another writer is refused, naming its pid
        from rnnflow.cli import main

        holder = (run / ".rnnflow.lock").read_text().strip()
        assert main(["train", "--resume", str(run), "--stop-at-step", "1"]) == 1
        assert f"is in use by another rnnflow process (pid {holder})" in capsys.readouterr().err
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert "SIGINT: saving a checkpoint after this step" in err
    assert err.count("stopped at step") == 1 and "Continue with: rnnflow train --resume" in err
    progress = json.loads(_checkpoint_progress(run))
    assert progress["step"] >= logged > first and not progress["finished"]
    assert "rng.rank1.torch" in load_file(run / "checkpoint.safetensors")


def _wait_for_record_after(run: Path, step: int, procs: list[subprocess.Popen[str]]) -> int:
    """The step of the first metrics.jsonl record past ``step`` (waiting for it)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        steps = [json.loads(x)["step"] for x in lines[:-1]]  # the last line may be half-written
        if any(s > step for s in steps):
            return min(s for s in steps if s > step)
        if any(p.poll() is not None for p in procs):
            pytest.fail(f"training ended early: {[p.communicate() for p in procs]}")
        time.sleep(0.05)
    pytest.fail("training did not continue past its first checkpoint")


def test_a_batch_that_does_not_split_evenly_over_the_processes_is_refused(tmp_path):
    config = PRESETS["tutorial"].__class__(batch_size=10, train_examples=20, val_size=0)
    data = (torch.zeros(20, 28, 28), torch.zeros(20, dtype=torch.long))
    three = DistributedContext(rank=0, world_size=3, backend="gloo")
    with pytest.raises(ValueError, match=r"batch_size \(10\) must be divisible by the number "):
        fit(ImageTask(config, data, data), tmp_path, distributed=three)


def test_a_single_process_context_changes_nothing():
    x = torch.arange(6)
    assert SINGLE_PROCESS.shard(x) is x and SINGLE_PROCESS.all_sum(x) is x
    assert SINGLE_PROCESS.any_true(True) and not SINGLE_PROCESS.any_true(False)
    assert SINGLE_PROCESS.broadcast("a") == "a" and SINGLE_PROCESS.gather("b") == ["b"]
    SINGLE_PROCESS.check_all(None)
    with pytest.raises(DistributedError, match="disk full"):
        SINGLE_PROCESS.check_all("disk full")
    two = DistributedContext(rank=1, world_size=2, backend="gloo")
    assert two.shard(x).tolist() == [1, 3, 5]  # DistributedSampler's indices[rank::world_size]


def test_without_a_launcher_training_is_single_process(monkeypatch):
    for name in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not launched_distributed() and init_distributed() is SINGLE_PROCESS
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not launched_distributed() and init_distributed() is SINGLE_PROCESS


@pytest.mark.parametrize(
    "env, message",
    [
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE is set but RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE must be an integer, got 'two'"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE must be >= 1, got 0"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, r"RANK must be in \[0, 1\], got 2"),
        ({"WORLD_SIZE": "2", "LOCAL_RANK": "-1"}, "LOCAL_RANK must be >= 0, got -1"),
    ],
)
def test_a_bad_launch_environment_is_named(monkeypatch, env, message):
    full = {"RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    for name, value in (full | env).items():
        monkeypatch.setenv(name, value)
    if env == {"WORLD_SIZE": "2"}:
        for name in full:
            monkeypatch.delenv(name)
    with pytest.raises(DistributedError, match=message):
        init_distributed(timeout_s=1)


# Each rank records the example ids (pixel [0, 0]) of every training batch its model sees.
SHARD_SCRIPT = """
import json, sys, torch
from rnnflow.tasks import image
from rnnflow.training.engine import fit
from rnnflow.training.config import TrainConfig
from rnnflow.training.distributed import init_distributed

ctx = init_distributed(timeout_s=60)
seen, real_build = [], image.build_model
def build(config, metadata=None, num_classes=10):
    model = real_build(config, num_classes=num_classes)
    forward = model.forward
    def recording(x):
        if model.training:
            seen.append(x[:, 0, 0].round().long().tolist())
        return forward(x)
    model.forward = recording
    return model
image.build_model = build
config = TrainConfig(num_units=4, batch_size=8, train_examples=32, val_size=0, device="cpu",
                     threads=1, seed=4)
x = torch.zeros(24, 28, 28)
x[:, 0, 0] = torch.arange(24).float()
y = torch.arange(24) % 10
fit(image.ImageTask(config, (x, y), (x[:0], y[:0])), sys.argv[1], distributed=ctx)
with open(f"{sys.argv[1]}/seen{ctx.rank}.json", "w") as f:
    json.dump(seen, f)
ctx.close(wait_for_peers=True)
"""


def test_each_rank_trains_on_distributed_samplers_share_of_every_global_batch(job, tmp_path):
    """Under torchrun, rank r's model sees exactly DistributedSampler(batch, num_replicas=2,
    rank=r, shuffle=False)'s rows of each global batch (the strided split the design promises;
    a contiguous split would give the same gradients and pass every other test)."""
    from torch.utils.data import DistributedSampler

    from rnnflow.data import BatchIterator

    script = tmp_path / "shard.py"
    script.write_text(SHARD_SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", str(script), str(out)]
    result = subprocess.run(
        command, cwd=job.cwd, env=job.env, capture_output=True, text=True, timeout=TIMEOUT
    )
    _ok(result)
    seen = [json.loads((out / f"seen{rank}.json").read_text()) for rank in (0, 1)]
    loader = BatchIterator(torch.zeros(24), torch.zeros(24), 8, shuffle=True, seed=4)
    batches = [loader.order(e)[i * 8 : (i + 1) * 8].tolist() for e in (0, 1) for i in range(3)]
    for rank in (0, 1):
        share = list(DistributedSampler(range(8), num_replicas=2, rank=rank, shuffle=False))
        assert seen[rank] == [[batch[i] for i in share] for batch in batches[:4]], rank


def _charlm_corpus(path: Path, batch_size: int) -> int:
    """A text file whose training split has 1 window more than a multiple of ``batch_size``
    (each epoch's last batch holds 1 window: rank 1's shard of it is empty); its window count."""
    import random

    from rnnflow.tasks.charlm import prepare_data
    from rnnflow.text.config import CharLMConfig

    rng = random.Random(0)
    docs: list[str] = []
    while True:
        docs.append("".join(rng.choice("abcdefgh \n") for _ in range(rng.randint(8, 60))))
        path.write_text("\n%\n".join(docs) + "\n", encoding="utf-8")
        config = CharLMConfig(corpus="text", text=(str(path),), min_count=1, max_len=32)
        windows = len(prepare_data(config).train_examples)
        if len(docs) >= 20 and windows % batch_size == 1:
            return windows


@pytest.mark.parametrize(
    "softmax",
    [[], ["--softmax", "adaptive", "--cutoffs", "4", "--cutoffs", "8"]],
    ids=("full", "adaptive"),
)
def test_the_character_model_trains_data_parallel_as_one_process(job, tmp_path, softmax):
    """torchrun --nproc_per_node 2 (gloo, CPU) ends with the 1-process run's weights and
    optimizer state: the loss is normalised by the global batch's character count, not each
    rank's (windows of different lengths: per-rank means would weight them differently). With
    the adaptive softmax too (its loss is summed over the valid steps of each shard, as the full
    softmax's; a tail with no target in a shard: tests/models/test_char_lm.py)."""
    corpus = tmp_path / "corpus.txt"
    windows = _charlm_corpus(corpus, batch_size=4)
    args = ["train", "--task", "charlm", "--preset", "tiny", "--corpus", "text", *softmax, "--text"]
    args += [str(corpus), "--min-count", "1", "--max-len", "32", "--batch-size", "4"]
    args += ["--epochs", "2", "--dropout", "0", "--device", "cpu", "--threads", "1", "--quiet"]
    args += ["--eval-every", "24", "--log-every", "8"]
    one, two = tmp_path / "one", tmp_path / "two"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    for nproc, out in ((1, one), (2, two)):
        prefix = [sys.executable] if nproc == 1 else [*launch, "2"]
        result = subprocess.run(
            [*prefix, "-m", "rnnflow", *args, "--out", str(out)], cwd=job.cwd, env=job.env,
            capture_output=True, text=True, timeout=TIMEOUT,
        )  # fmt: skip
        _ok(result)
    _assert_same_run(two, one)
    r1, r2 = _records(one), _records(two)
    assert [(r["kind"], r["step"]) for r in r2] == [(r["kind"], r["step"]) for r in r1]
    steps = 2 * -(-windows // 4)
    assert r1[-1]["step"] == steps and load_file(two / "checkpoint.safetensors")
    for a, b in zip(r2, r1, strict=True):  # the same losses over the global batches
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), (a, b)
    summary = json.loads((two / "summary.json").read_text())
    assert summary["processes"] == 2
