"""The one fit engine, task by task: a run interrupted (Ctrl-C, or killed between checkpoints) and
resumed equals the uninterrupted run bit for bit: weights, optimizer state, weight average, RNG
states, best checkpoint, and every metrics record but its wall-clock fields.

The independent truth is the uninterrupted run. Every stateful feature is on: dropout (torch's
RNG), augmentation (the augment generator), warm-up + cosine, EMA, clipping, periodic
validation, log windows that straddle the interruption. A new task adds one entry to ``TASKS``.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from rnnflow.tasks import TASKS as REGISTRY
from rnnflow.tasks import load_checkpoint
from rnnflow.training import MetricsLogger, Task, fit, read_metrics


def image_task(seed: int = 0) -> Task:
    from rnnflow.tasks.image import ImageTask
    from rnnflow.training.config import TrainConfig

    config = TrainConfig(
        num_units=6, cell="gru", dropout=0.2, batch_size=8, train_examples=8 * 21, val_size=16,
        eval_every=40, log_every=24, hflip=True, max_shift=1, erase_prob=0.3, ema_decay=0.9,
        schedule="cosine", warmup_examples=16, grad_clip=1.0, optimizer="adamw",
        weight_decay=0.01, label_smoothing=0.1, device="cpu", threads=1, seed=seed,
    )  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.rand(64, 28, 28, generator=gen), torch.arange(64) % 10
    return ImageTask(config, (x[:48], y[:48]), (x[48:], y[48:]))


def charlm_task(seed: int = 0) -> Task:
    from rnnflow.tasks.charlm import CharLMTask, prepare_data
    from rnnflow.text.config import CharLMConfig

    config = CharLMConfig(
        embed_size=8, num_units=12, cell="lstm", dropout=0.2, batch_size=4, epochs=3,
        min_count=1, max_len=16, val_fraction=0.2, log_every=10, eval_every=16, ema_decay=0.9,
        warmup_examples=8, optimizer="adamw", grad_clip=1.0, device="cpu", threads=1, seed=seed,
    )  # fmt: skip
    rng = random.Random(seed)
    docs = ["".join(rng.choice("abcdefgh ") for _ in range(rng.randint(5, 40))) for _ in range(30)]
    return CharLMTask(config, prepare_data(config, documents=docs))


def sequence_task(seed: int = 0, conv_branch: str = "none", deltas: bool = False) -> Task:
    import numpy as np

    from rnnflow.data.sequences import SequenceDataset
    from rnnflow.tasks.sequence import SequenceTask
    from rnnflow.tasks.sequence_config import SequenceConfig

    config = SequenceConfig(
        num_units=6, cell="gru", dropout=0.2, batch_size=8, epochs=4, eval_every=40, log_every=24,
        ema_decay=0.9, schedule="cosine", warmup_examples=16, grad_clip=1.0, optimizer="adamw",
        weight_decay=0.01, label_smoothing=0.1, noise_std=0.1, crop_min=0.7, bucket=True,
        device="cpu", threads=1, seed=seed, num_channels=3, class_names=("a", "b", "c"),
        norm_mean=(0.0, 0.0, 0.0), norm_std=(1.0, 1.0, 1.0), conv_branch=conv_branch,
        deltas=deltas, delta_mean=(0.1, 0.0, -0.1) if deltas else (),
        delta_std=(1.5, 1.4, 1.3) if deltas else (),
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    series = [rng.normal(size=(int(rng.integers(1, 10)), 3)).astype(np.float32) for _ in range(64)]
    data = SequenceDataset.from_arrays(series, np.arange(64) % 3, config.class_names)

    def part(lo: int, hi: int) -> SequenceDataset:
        return SequenceDataset(data.series[lo:hi], data.labels[lo:hi], data.class_names)

    return SequenceTask(config, part(0, 48), part(48, 64), part(48, 64))


def text_classify_task(seed: int = 0) -> Task:
    from rnnflow.tasks.text_classify import TextClassifyTask, prepare_data
    from rnnflow.text.classify_config import TextClassifyConfig
    from rnnflow.text.labelled_text import LabelledTexts

    config = TextClassifyConfig(
        embedding_size=6, num_units=5, dropout=0.2, batch_size=4, epochs=3, min_count=1,
        max_chars=12, log_every=10, eval_every=16, ema_decay=0.9, warmup_examples=8,
        optimizer="adamw", grad_clip=1.0, device="cpu", threads=1, seed=seed,
    )  # fmt: skip
    rng = random.Random(seed)
    texts = [
        "".join(rng.choice("好坏的了是 ") for _ in range(rng.randint(1, 20))) + str(i)
        for i in range(40)
    ]
    labels = tuple(int("好" in t) for t in texts)
    data = LabelledTexts(tuple(texts), labels, ("neg", "pos"))
    return TextClassifyTask(*prepare_data(config, texts=data))


# task name -> a small task with every stateful feature on (seq, senti: add one line each)
TASKS: dict[str, Callable[[], Task]] = {
    "classifier": image_task,
    "charlm": charlm_task,
    "sequence": sequence_task,
    "text-classify": text_classify_task,
}

# variants of a task with more state: batch norm's running statistics (the conv branch)
VARIANTS: dict[str, Callable[[], Task]] = {
    "sequence+fcn-se": lambda: sequence_task(conv_branch="fcn-se", deltas=True),
}
RUNS = TASKS | VARIANTS

WALL_CLOCK = ("examples_per_s", "elapsed_s", "tokens_per_s")


class Killed(Exception):
    """Stands for a SIGKILL: the process ends between two checkpoints, saving nothing."""


def _train(task: Task, run_dir: Path, **kwargs: Any) -> Any:
    run_dir.mkdir(exist_ok=True)
    resume = kwargs.get("resume")
    keep = resume.progress["step"] if resume is not None else 0
    with MetricsLogger(run_dir, keep_until_step=keep) as metrics:
        return fit(task, run_dir, metrics=metrics, **kwargs)


def _resume(make: Callable[[], Task], run_dir: Path) -> Any:
    checkpoint = load_checkpoint(run_dir / "checkpoint.safetensors")
    return _train(make(), run_dir, resume=checkpoint), checkpoint.progress["step"]


def _files(run_dir: Path) -> dict[str, Any]:
    """Every tensor and metadata entry of the run's two checkpoints (but wall-clock time), and
    its metrics records (but wall-clock fields)."""
    out: dict[str, Any] = {}
    for name in ("checkpoint.safetensors", "best.safetensors"):
        with safe_open(str(run_dir / name), framework="pt") as f:
            meta = dict(f.metadata())
            out |= {f"{name}/{k}": f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        import json

        progress = json.loads(meta.pop("progress"))
        progress.pop("train_seconds")
        out[f"{name}/progress"] = progress
        out[f"{name}/metadata"] = meta
    records = read_metrics(run_dir / "metrics.jsonl")
    out["metrics"] = [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in records]
    return out


def _assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(got[key], value, rtol=0, atol=0, equal_nan=True, msg=key)
        else:
            assert got[key] == value, key


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, dict[str, Any]]:
    runs = {}
    for name, make in RUNS.items():
        run_dir = tmp_path_factory.mktemp(name) / "run"
        _, progress = _train(make(), run_dir)
        assert progress.finished
        runs[name] = _files(run_dir)
    return runs


def test_every_registered_task_is_tested_here():
    assert sorted(TASKS) == sorted(t.name for t in REGISTRY)
    for make in TASKS.values():
        assert isinstance(make(), Task)  # the protocol's members, structurally


@pytest.mark.parametrize("task", sorted(RUNS))
def test_ctrl_c_then_resume_equals_the_uninterrupted_run(task, uninterrupted, tmp_path):
    """A real SIGINT (the CLI's handler, rnnflow.cli.train.StopFlag) at a step between
    checkpoints and log records: fit saves there, and the resumed run ends identical."""
    from rnnflow.cli.train import StopFlag

    run_dir = tmp_path / "run"

    def interrupt(progress: Any, info: dict[str, Any]) -> None:
        if progress.step == 7 and info.get("kind") != "val":
            os.kill(os.getpid(), signal.SIGINT)

    with StopFlag(announce=False) as stop:
        _, progress = _train(RUNS[task](), run_dir, on_step=interrupt, should_stop=stop)
    assert stop.requested and progress.step == 7 and not progress.finished
    (_, progress), start = _resume(RUNS[task], run_dir)
    assert start == 7 and progress.finished
    _assert_same(_files(run_dir), uninterrupted[task])


@pytest.mark.parametrize("task", sorted(RUNS))
def test_a_kill_between_checkpoints_then_resume_equals_the_uninterrupted_run(
    task, uninterrupted, tmp_path
):
    """Killed at step 9: the run continues from its last periodic checkpoint (step 5 or 4),
    redoes the lost steps, drops their metrics lines, and ends identical."""
    run_dir = tmp_path / "run"

    def kill(progress: Any, info: dict[str, Any]) -> None:
        if progress.step == 9:
            raise Killed

    with pytest.raises(Killed):
        _train(RUNS[task](), run_dir, on_step=kill)
    (_, progress), start = _resume(RUNS[task], run_dir)
    assert 0 < start < 9 and progress.finished
    _assert_same(_files(run_dir), uninterrupted[task])


@pytest.mark.parametrize("task", sorted(RUNS))
def test_stop_at_step_twice_then_resume_equals_the_uninterrupted_run(task, uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    _train(RUNS[task](), run_dir, stop_at_step=3)
    checkpoint = load_checkpoint(run_dir / "checkpoint.safetensors")
    _train(RUNS[task](), run_dir, resume=checkpoint, stop_at_step=11)
    (_, progress), start = _resume(RUNS[task], run_dir)
    assert start == 11 and progress.finished
    _assert_same(_files(run_dir), uninterrupted[task])


def test_the_comparison_can_tell_another_seed(uninterrupted, tmp_path):
    """The checks above can fail: a run with another seed differs in its weights."""
    run_dir = tmp_path / "run"
    _train(charlm_task(seed=1), run_dir)
    other = _files(run_dir)
    with pytest.raises(AssertionError):
        _assert_same(other, uninterrupted["charlm"])


def test_a_checkpoint_of_another_task_is_refused(tmp_path):
    _train(charlm_task(), tmp_path / "lm", stop_at_step=2)
    checkpoint = load_checkpoint(tmp_path / "lm" / "checkpoint.safetensors")
    assert checkpoint.task == "charlm" and "vocab" in checkpoint.metadata
    with pytest.raises(ValueError, match=r"checkpoint.safetensors: a 'charlm' checkpoint; this run "
                       r"is a 'classifier' one"):  # fmt: skip
        fit(image_task(), tmp_path / "lm", resume=checkpoint)


def test_load_trained_rebuilds_any_tasks_model_from_its_checkpoint(tmp_path):
    """rnnflow.tasks.load_trained dispatches on the recorded task (the char LM's model needs
    its vocabulary from the metadata); asking for another task is refused, naming both."""
    from rnnflow.models.char_lm import CharLM
    from rnnflow.tasks import load_trained
    from rnnflow.tasks.image import load_trained_model
    from rnnflow.training import CheckpointError

    trained, _ = _train(charlm_task(), tmp_path / "lm", stop_at_step=2)
    model, checkpoint = load_trained(tmp_path / "lm")
    assert isinstance(model, CharLM) and not model.training and checkpoint.task == "charlm"
    for name, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    with pytest.raises(CheckpointError, match=r"checkpoint\.safetensors: a 'charlm' checkpoint, "
                       r"not a 'classifier' one"):  # fmt: skip
        load_trained_model(tmp_path / "lm")
