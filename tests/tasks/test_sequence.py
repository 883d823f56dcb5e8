"""The sequence task on generated variable-length data.

The label of a series is the sign of its LAST VALID step's channel 0; past each length the file
holds garbage whose sign is independent of the label. A model that reads only valid steps learns
it; the controls (labels shuffled; the model denied ``sequence_length``) must not, which shows
the test can fail. Also: garbage past each length never changes a prediction, the statistics come
from the training part only, and the config records what the run read.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnflow.data.sequence_augment import random_crop
from rnnflow.tasks.sequence import (
    SequenceTask,
    build_model,
    evaluate,
    make_task,
    predict_proba,
    read_splits,
)
from rnnflow.tasks.sequence_config import SequenceConfig
from rnnflow.training.distributed import SINGLE_PROCESS

MAX_T, DEPTH = 12, 2


def make_series(n: int, seed: int) -> tuple[np.ndarray, ...]:
    """Padded x [n, MAX_T, DEPTH], lengths [n], labels [n]. Past each length x holds garbage
    drawn like the valid steps, so only the lengths tell where a series ends."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, MAX_T, size=n)  # 2 .. MAX_T - 1: at least one garbage step
    x = rng.normal(size=(n, MAX_T, DEPTH)).astype(np.float32)
    labels = (x[np.arange(n), lengths - 1, 0] > 0).astype(np.int64)
    return x, lengths, labels


def write_npz(path: Path, *, shuffle_labels: bool = False, drop_lengths: bool = False) -> Path:
    xtr, ltr, ytr = make_series(400, 0)
    xte, lte, yte = make_series(200, 1)
    if shuffle_labels:
        ytr = np.random.default_rng(2).permutation(ytr)
    if drop_lengths:  # every series read as MAX_T steps long: the garbage becomes data
        ltr, lte = np.full_like(ltr, MAX_T), np.full_like(lte, MAX_T)
    np.savez(
        path,
        x_train=xtr,
        lengths_train=ltr,
        labels_train=ytr,
        x_test=xte,
        lengths_test=lte,
        labels_test=yte,
        class_names=np.array(["negative", "positive"]),
    )
    return path


def config(path: Path, **changes) -> SequenceConfig:
    base = SequenceConfig(
        dataset="npz",
        train_file=str(path),
        cell="gru",
        num_units=16,
        bidirectional=False,
        batch_size=32,
        lr=0.01,
        schedule="constant",
        warmup_examples=0,
        epochs=8,
        seed=0,
        threads=1,
    )
    return replace(base, **changes)


def train_plain(task: SequenceTask) -> torch.nn.Module:
    """A plain loop over the task's own batches and steps (the engine adds no numerics)."""
    torch.manual_seed(task.config.seed)
    model = task.build_model()
    opt = torch.optim.Adam(model.parameters(), lr=task.config.lr)
    generator = torch.Generator().manual_seed(1)
    model.train()
    for epoch in range(task.config.epochs):
        for batch in task.batches(epoch, 0):
            out = task.step(model, batch, SINGLE_PROCESS, generator)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("seq")
    return {
        "real": write_npz(folder / "real.npz"),
        "shuffled": write_npz(folder / "shuffled.npz", shuffle_labels=True),
        "no_lengths": write_npz(folder / "no_lengths.npz", drop_lengths=True),
    }


@pytest.fixture(scope="module")
def trained(files: dict[str, Path]) -> tuple[SequenceTask, torch.nn.Module]:
    task = make_task(config(files["real"]))
    return task, train_plain(task)


def test_learns_the_label_inside_each_length(trained) -> None:
    task, model = trained
    result = evaluate(model, task.test)
    assert result.accuracy >= 0.95, result.accuracy
    assert int(result.confusion.sum()) == 200 and result.confusion.shape == (2, 2)


def test_garbage_past_each_length_does_not_change_predictions(trained) -> None:
    task, model = trained
    x, lengths, _ = make_series(64, 7)
    other = x.copy()
    for i, length in enumerate(lengths):
        other[i, length:] = -1000.0 * x[i, length:]  # new garbage, of the opposite sign
    with torch.no_grad():
        a = model(torch.from_numpy(x), torch.from_numpy(lengths))
        b = model(torch.from_numpy(other), torch.from_numpy(lengths))
    assert torch.equal(a, b)
    # predict_proba pads each batch itself: the same numbers from the series cut at their lengths
    cut = [x[i, :length] for i, length in enumerate(lengths)]
    torch.testing.assert_close(predict_proba(model, cut, batch_size=5), a.softmax(-1))


def test_control_shuffled_labels_do_not_generalise(files) -> None:
    task = make_task(config(files["shuffled"]))
    accuracy = evaluate(train_plain(task), task.test).accuracy
    assert accuracy < 0.75, accuracy  # near chance (0.5) on the true test labels


def test_control_without_lengths_the_label_is_invisible(files) -> None:
    task = make_task(config(files["no_lengths"]))
    accuracy = evaluate(train_plain(task), task.test).accuracy
    assert accuracy < 0.75, accuracy  # the last step read is garbage: chance (0.5)


def test_config_records_the_data_and_training_only_statistics(files) -> None:
    recorded, train, val, test = read_splits(config(files["real"], val_size=100))
    assert recorded.num_channels == DEPTH and recorded.class_names == ("negative", "positive")
    assert len(train) == 300 and val is not None and len(val) == 100 and len(test) == 200
    assert recorded.data_sha256[0].startswith("real.npz=") and len(recorded.data_sha256) == 1
    # the statistics are those of the 300 training series' valid steps, recomputed by hand
    z = np.load(files["real"])
    xtr, ltr = z["x_train"], z["lengths_train"]
    perm = torch.randperm(400, generator=torch.Generator().manual_seed(0)).numpy()
    keep = np.sort(perm[100:])
    steps = np.concatenate([xtr[i, : ltr[i]] for i in keep]).astype(np.float64)
    np.testing.assert_allclose(recorded.norm_mean, steps.mean(0), rtol=1e-12)
    np.testing.assert_allclose(recorded.norm_std, steps.std(0), rtol=1e-12)
    # and they standardise the training part to mean 0, std 1 (not the test split)
    standard = np.concatenate(train.series).astype(np.float64)
    np.testing.assert_allclose(standard.mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(standard.std(0), 1.0, atol=1e-6)
    assert not math.isclose(float(np.concatenate(test.series)[:, 0].mean()), 0.0, abs_tol=1e-9)


def test_resume_refuses_changed_files(files, tmp_path: Path) -> None:
    recorded = make_task(config(files["real"])).config
    moved = tmp_path / "real.npz"
    write_npz(moved, shuffle_labels=True)
    with pytest.raises(ValueError, match=r"the files differ from those this run recorded"):
        read_splits(replace(recorded, train_file=str(moved)))


def test_build_model_needs_a_recorded_config(files) -> None:
    with pytest.raises(ValueError, match=r"num_channels/class_names are not recorded"):
        build_model(config(files["real"]))
    model = build_model(make_task(config(files["real"])).config)
    assert (model.input_size, model.num_classes) == (DEPTH, 2)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"train_file": None}, r"SequenceConfig: dataset 'npz' needs train_file"),
        ({"dataset": "ts", "test_file": None}, r"dataset 'ts' needs test_file"),
        ({"dataset": "japanese-vowels"}, r"train_file and test_file are for datasets 'npz' and"),
        (
            {"num_channels": 2, "norm_mean": (0.0,), "norm_std": (1.0,)},
            r"norm_mean and norm_std must hold num_channels \(2\) values each, got 1 and 1",
        ),
        ({"epochs": 0}, r"SequenceConfig: epochs must be > 0, got 0"),
        ({"norm_mean": (float("nan"),)}, r"SequenceConfig: norm_mean must be a tuple of float"),
        ({"norm_std": ("1",)}, r"SequenceConfig: norm_std must be a tuple of float, got \('1',\)"),
        ({"val_size": -1}, r"val_size"),
        (
            {"num_channels": 1, "norm_mean": (0.0,), "norm_std": (1.0,), "delta_mean": (0.0,)},
            r"delta_mean and delta_std must hold num_channels \(1\) values each, got 1 and 0",
        ),
        (
            {"num_channels": 1, "norm_mean": (0.0,), "norm_std": (0.0,)},
            r"SequenceConfig: norm_std must be > 0, got 0.0",
        ),
        (
            {
                "num_channels": 1,
                "norm_mean": (0.0,),
                "norm_std": (1.0,),
                "delta_mean": (0.0,),
                "delta_std": (-2.0,),
            },
            r"SequenceConfig: delta_std must be > 0, got -2.0",
        ),
        (
            {"conv_branch": "inception"},
            r"SequenceConfig: conv_branch must be one of \['none', 'fcn', 'fcn-se'\], got 'incep",
        ),
    ],
)
def test_config_errors(tmp_path: Path, changes, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        config(tmp_path / "x.npz", **changes)


def test_a_config_of_a_run_before_the_conv_branch_loads_without_one(files) -> None:
    """config.json of older runs has no conv_branch or deltas: they load as they trained."""
    from dataclasses import asdict

    from rnnflow.tasks.sequence_config import config_from_dict

    recorded = make_task(config(files["real"])).config
    old = {k: v for k, v in asdict(recorded).items() if k not in ("conv_branch", "deltas")}
    loaded = config_from_dict(json.loads(json.dumps(old)))
    assert loaded == recorded and loaded.conv_branch == "none" and not loaded.deltas
    model = build_model(loaded)
    assert not hasattr(model, "fcn") and not model.deltas
    needs = r"SequenceConfig: deltas needs delta_mean/delta_std recorded; build the model from"
    with pytest.raises(ValueError, match=needs):
        build_model(replace(loaded, deltas=True))


def test_the_model_standardises_its_deltas_with_the_training_differences(files) -> None:
    """The built model's delta channels of a standardised training series equal its raw
    differences (0 first) standardised with mean and std of all training differences, both
    computed here with numpy from the file."""
    recorded, train, _, _ = read_splits(config(files["real"], deltas=True))
    z = np.load(files["real"])
    raw = [x[:n].astype(np.float64) for x, n in zip(z["x_train"], z["lengths_train"])]
    diffs = [np.diff(x, axis=0, prepend=x[:1]) for x in raw]
    steps = np.concatenate(diffs)
    mean, std = steps.mean(0), steps.std(0)
    model = build_model(recorded)
    for i in (0, 5):
        got = model.model_inputs(torch.from_numpy(train.series[i])[None])[0, :, DEPTH:]
        np.testing.assert_allclose(got.numpy(), (diffs[i] - mean) / std, rtol=1e-5, atol=1e-5)


def test_val_size_must_leave_both_parts(files) -> None:
    with pytest.raises(ValueError, match=r"val_size must leave both parts non-empty .*got 400"):
        read_splits(config(files["real"], val_size=400))


def test_step_loss_is_normalised_by_the_global_batch(trained) -> None:
    """Two ranks, each computing its strided half, give gradients that sum (DDP averages, and
    the loss is scaled by world_size) to the single-process gradient of the whole batch."""
    task, model = trained
    model = build_model(task.config)
    batch = next(iter(task.batches(0, 0)))
    batch = tuple(t[:7] for t in batch)  # an odd batch: shards of 4 and 3 rows

    class Rank:
        def __init__(self, rank: int) -> None:
            self.rank, self.world_size = rank, 2

        def shard(self, t: torch.Tensor) -> torch.Tensor:
            return t[self.rank :: 2]

    def grads(ctx) -> list[torch.Tensor]:
        model.zero_grad()
        task.step(model, batch, ctx, torch.Generator()).loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    single = grads(SINGLE_PROCESS)
    ranks = [grads(Rank(r)) for r in (0, 1)]
    for s, a, b in zip(single, *ranks):
        torch.testing.assert_close((a + b) / 2, s, rtol=1e-5, atol=1e-6)


def test_input_noise_is_drawn_from_the_generator_for_the_whole_batch(trained) -> None:
    task, _ = trained
    noisy = SequenceTask(replace(task.config, noise_std=0.5), task.train, None, task.test)
    torch.manual_seed(0)
    model = noisy.build_model()
    batch = next(iter(noisy.batches(0, 0)))

    def loss(t: SequenceTask, seed: int) -> float:
        return t.step(model, batch, SINGLE_PROCESS, torch.Generator().manual_seed(seed)).loss.item()

    assert loss(noisy, 1) == loss(noisy, 1) != loss(noisy, 2)
    assert loss(task, 1) == loss(task, 2)  # no noise: the generator is not used
    x, lengths, _ = batch
    expected = x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(expected, lengths)
    want = torch.nn.functional.cross_entropy(logits, batch[2]).item()
    assert loss(noisy, 1) == pytest.approx(want, rel=1e-6)


def test_random_crop_is_drawn_from_the_generator_before_the_noise(trained) -> None:
    task, _ = trained
    config = replace(task.config, crop_min=0.5, noise_std=0.3)
    augmented = SequenceTask(config, task.train, None, task.test)
    torch.manual_seed(0)
    model = augmented.build_model()
    batch = next(iter(augmented.batches(0, 0)))

    def loss(seed: int) -> float:
        generator = torch.Generator().manual_seed(seed)
        return augmented.step(model, batch, SINGLE_PROCESS, generator).loss.item()

    assert loss(1) == loss(1) != loss(2)
    x, lengths, labels = batch
    g = torch.Generator().manual_seed(1)
    x, lengths = random_crop(x, lengths, crop_min=0.5, generator=g)
    assert int(lengths.min()) >= 1 and not torch.equal(lengths, batch[1])
    x = x + 0.3 * torch.randn(x.shape, generator=g)
    with torch.no_grad():
        want = torch.nn.functional.cross_entropy(model(x, lengths), labels).item()
    assert loss(1) == pytest.approx(want, rel=1e-6)
