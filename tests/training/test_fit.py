"""The fit engine's pieces (learning-rate schedule, EMA, non-finite stop, metrics log on
resume) and the image task's (augmentation, evaluation, label-smoothed loss)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from rnnflow.tasks.image import ERASE_AREA, ImageTask, augment, evaluate, random_erase
from rnnflow.training import MetricsLogger, learning_rate, read_metrics
from rnnflow.training.config import TrainConfig
from rnnflow.training.engine import NonFiniteError, check_warmup, fit, update_ema


def test_constant_schedule_is_the_tutorials():
    config = TrainConfig()
    steps = config.steps
    assert {learning_rate(config, s, steps) for s in (0, 100, steps - 1)} == {0.001}


def test_warmup_then_cosine():
    config = replace(
        TrainConfig(), schedule="cosine", lr=0.1, min_lr=0.0, warmup_examples=1280,
        batch_size=128, train_examples=128 * 110,
    )  # fmt: skip

    def lr(step):
        return learning_rate(config, step, config.steps)

    assert lr(0) == pytest.approx(0.01)
    assert lr(9) == pytest.approx(0.1)
    assert lr(10) == pytest.approx(0.1)
    assert lr(60) == pytest.approx(0.05)
    assert lr(110) == pytest.approx(0.0, abs=1e-12)
    assert all(lr(s) >= lr(s + 1) for s in range(10, 109))
    assert not math.isnan(lr(200))


def test_fit_refuses_a_warmup_longer_than_the_run(tmp_path):
    """110 steps of 128: a warm-up of 111 steps would end the run below lr; 110 is allowed."""
    config = replace(TrainConfig(), batch_size=128, train_examples=128 * 110)
    check_warmup(replace(config, warmup_examples=128 * 110 + 127), config.steps)  # 110 steps
    long = replace(config, warmup_examples=128 * 111)

    class Task:  # fit checks before it reads anything else of the task
        def __init__(self) -> None:
            self.config = long

        def epoch_length(self) -> int:
            return 110

        def total_steps(self) -> int:
            return 110

    with pytest.raises(
        ValueError,
        match=r"^fit: warmup_examples \(14208: 111 steps of batch_size 128\) is longer than the "
        r"whole run \(110 steps\): the learning rate would never reach lr \(0.001\); give "
        r"warmup_examples \(--warmup-examples\) <= 14080 \(0: no warm-up\) or train for more "
        r"steps$",
    ):
        fit(Task(), tmp_path)  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())

    class Resumed:  # a run that started keeps its schedule: resuming it is not refused
        task = "other"
        path = tmp_path / "ckpt.pt"

    Task.name = "image"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"a 'other' checkpoint; this run is a 'image' one"):
        fit(Task(), tmp_path, resume=Resumed())  # type: ignore[arg-type]


def test_augment_is_seeded_and_keeps_shape_and_content():
    x = torch.zeros(64, 28, 28)
    x[:, 10:18, 3:8] = 1.0  # a block on the left
    config = replace(TrainConfig(), hflip=True, max_shift=2)
    a = augment(x, config, torch.Generator().manual_seed(1))
    b = augment(x, config, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape
    assert torch.equal(a.sum((1, 2)), x.sum((1, 2)))  # shifts of <= 2 keep the block inside
    right = a[:, :, 14:].sum((1, 2)) > 0
    assert 10 < int(right.sum()) < 54  # about half mirrored
    assert augment(x, TrainConfig(), torch.Generator()) is x


def test_random_erase_replaces_one_rectangle_per_chosen_image():
    x = torch.full((2000, 28, 28), -1.0)  # noise is in [0, 1], so erased pixels are >= 0
    out = random_erase(x, 0.5, torch.Generator().manual_seed(0))
    erased = out >= 0  # [B, 28, 28]
    chosen = erased.any(-1).any(-1)
    assert 900 < int(chosen.sum()) < 1100  # about half the images
    assert torch.equal(out[~erased], x[~erased])  # the rest is untouched
    for mask in erased[chosen][:200]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        assert box.all() and int(mask.sum()) == box.numel()  # one solid rectangle
        h, w = box.shape
        assert h * w <= ERASE_AREA[1] * 784 * 1.2 and max(h, w) / min(h, w) <= 1 / 0.3 + 1.5
    areas = erased[chosen].sum((1, 2)).double() / 784
    assert ERASE_AREA[0] <= areas.median() <= ERASE_AREA[1]
    same = random_erase(x, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(out, same)


def test_erasing_is_off_by_default_and_draws_nothing_then():
    x = torch.rand(8, 28, 28)
    gen = torch.Generator().manual_seed(3)
    before = gen.get_state()
    config = replace(TrainConfig(), hflip=True, max_shift=1)
    a = augment(x, config, gen)
    assert torch.equal(a, augment(x, config, torch.Generator().set_state(before)))
    by_hand = torch.Generator().set_state(before)  # the flip and shift draws, nothing more
    torch.rand(8, generator=by_hand), torch.randint(0, 3, (2, 8), generator=by_hand)
    assert torch.equal(gen.get_state(), by_hand.get_state())  # erase_prob=0 draws nothing
    erased = augment(x, replace(config, erase_prob=0.9), torch.Generator().set_state(before))
    assert not torch.equal(erased, a)
    with pytest.raises(ValueError, match=r"erase_prob must be in \[0, 1\), got 1.5"):
        replace(config, erase_prob=1.5)


class Fixed(nn.Module):
    """Predicts class (sum of the first row) mod 3."""

    num_classes = 3

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        k = x[:, 0].sum(-1).long() % 3
        return nn.functional.one_hot(k, 3).float() * 10 + self.w


def test_evaluate_accuracy_confusion_per_class():
    x = torch.zeros(6, 28, 28)
    x[:, 0, 0] = torch.tensor([0, 1, 2, 0, 1, 2.0])
    y = torch.tensor([0, 1, 2, 1, 1, 0])
    result = evaluate(Fixed(), x, y, batch_size=4, num_classes=3)
    assert result.accuracy == pytest.approx(4 / 6)
    assert result.confusion.tolist() == [[1, 0, 1], [1, 2, 0], [0, 0, 1]]
    assert result.per_class_accuracy.tolist() == pytest.approx([0.5, 2 / 3, 1.0])
    assert result.probabilities.shape == (6, 3)


def test_metrics_log_drops_lines_after_the_resumed_checkpoint(tmp_path):
    with MetricsLogger(tmp_path) as log:
        for step in (10, 20, 30):
            log.log({"kind": "train", "step": step, "examples": step * 2, "loss": float("nan")})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"kind": "tr')  # torn by a kill
    with MetricsLogger(tmp_path, keep_until_step=20) as log:
        log.log({"kind": "val", "step": 20, "examples": 40, "accuracy": 0.5})
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["kind"], r["step"]) for r in records] == [("train", 10), ("train", 20), ("val", 20)]
    assert records[0]["loss"] is None
    json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])


def test_update_ema_matches_a_hand_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))  # parameters and buffers
    average = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).requires_grad_(False)
    model(torch.randn(5, 3))  # training mode: moves running_mean / running_var
    a0 = [p.detach().clone() for p in average.parameters()]
    p0 = [p.detach().clone() for p in model.parameters()]
    update_ema(average, model, decay=0.75)
    for a, before, p in zip(average.parameters(), a0, p0, strict=True):
        torch.testing.assert_close(a, 0.75 * before + 0.25 * p)
    w_a, w_p = a0[0][0, 0].item(), p0[0][0, 0].item()  # one weight, by hand
    assert average[0].weight[0, 0].item() == pytest.approx(0.75 * w_a + 0.25 * w_p)
    for a, b in zip(average.buffers(), model.buffers(), strict=True):
        assert torch.equal(a, b)  # buffers are copied
    assert not any(p.requires_grad for p in average.parameters())
    update_ema(average, model, decay=0.0)  # decay 0: the average is the model
    for a, p in zip(average.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, p)


def test_resume_with_ema_decay_needs_a_weight_average_in_the_checkpoint(tmp_path):
    from rnnflow.tasks.image import build_model
    from rnnflow.training import load_checkpoint, save_checkpoint

    config = replace(TrainConfig(), num_units=4, batch_size=4, train_examples=8, ema_decay=0.9)
    save_checkpoint(
        tmp_path / "c.safetensors",
        model=build_model(config),
        config=config,
        progress={"step": 1, "examples": 4},
        optimizer=torch.optim.Adam(build_model(config).parameters()),
    )
    data = (torch.rand(8, 28, 28), torch.arange(8) % 10)
    with pytest.raises(
        ValueError,
        match=r"c.safetensors: holds no weight average \(ema\.\* "
        r"tensors\) but its config has ema_decay=0.9; cannot resume from it",
    ):
        fit(ImageTask(config, data, data), tmp_path,
            resume=load_checkpoint(tmp_path / "c.safetensors"))  # fmt: skip


def _tiny_run(tmp_path, nan_pixels=False, **changes):
    config = replace(
        TrainConfig(), num_units=4, batch_size=8, train_examples=64, val_size=0,
        eval_every=16, log_every=8, threads=1, device="cpu", **changes,
    )  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    data = (torch.rand(32, 28, 28, generator=gen), torch.arange(32) % 10)
    if nan_pixels:
        data[0][:, 5, 5] = math.nan
    return config, data, lambda **kw: fit(ImageTask(config, data, data), tmp_path, **kw)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    """Keras's TerminateOnNaN: a NaN pixel in the data makes the loss NaN at the first step."""
    _, _, run = _tiny_run(tmp_path, nan_pixels=True)
    with pytest.raises(
        NonFiniteError,
        match=r"fit: the loss is nan at optimizer step 1 \(learning rate 0.001\); training "
        r"stopped and no checkpoint had been written yet\. Try a lower --lr",
    ):
        run()
    assert not (tmp_path / "checkpoint.safetensors").exists()


def test_weights_that_overflow_stop_the_run(tmp_path):
    """lr = 1e37 is finite and accepted; the first Adam step moves every weight by ~1e38."""
    _, _, run = _tiny_run(tmp_path, lr=1e37)
    with pytest.raises(NonFiniteError, match=r"at optimizer step [12] \(learning rate 1e\+37\)"):
        run()


def test_a_nan_optimizer_step_stops_the_run(tmp_path):
    """A corrupt optimizer state (a negative second moment, as in a bad TF1 Adam_1) makes the
    weights NaN at the next step: the run stops, the checkpoint on disk is not replaced."""
    from rnnflow.training import load_checkpoint

    _, _, run = _tiny_run(tmp_path)
    run(stop_at_step=2)
    path = tmp_path / "checkpoint.safetensors"
    checkpoint = load_checkpoint(path)
    for state in checkpoint.optimizer["state"].values():
        state["exp_avg_sq"] = -state["exp_avg_sq"] - 1.0
    before = path.read_bytes()
    with pytest.raises(
        NonFiniteError,
        match=r"fit: a weight is not finite after the optimizer step at optimizer step 3 "
        r"\(learning rate 0.001\); training stopped and the last good checkpoint \(.*"
        r"checkpoint.safetensors, step 2\) is kept",
    ):
        run(resume=checkpoint)
    assert path.read_bytes() == before


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_the_training_loss_is_label_smoothed_cross_entropy_by_hand(tmp_path, smoothing):
    """The first logged training loss equals, in float64 from the same initial weights and
    batch, (1 - e) * (-log p_y) + e * mean_k(-log p_k) (Szegedy et al., 2016), averaged over
    the batch: a loop that ignored label_smoothing would log the e = 0 value."""
    from rnnflow.data import BatchIterator
    from rnnflow.tasks.image import build_model

    config, data, run = _tiny_run(tmp_path, label_smoothing=smoothing, seed=5)
    with MetricsLogger(tmp_path) as log:
        run(metrics=log, stop_at_step=1)
    logged = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["step"] for r in logged] == [1]

    torch.manual_seed(config.seed)
    model = build_model(config).double()
    batch = BatchIterator(*data, 8, shuffle=True, seed=config.seed).order(0)[:8]
    with torch.no_grad():
        logp = model(data[0][batch].double()).log_softmax(-1)  # [8, 10]
    y = data[1][batch]
    nll = -logp[torch.arange(8), y]
    uniform = -logp.mean(-1)
    expected = ((1 - smoothing) * nll + smoothing * uniform).mean().item()
    assert logged[0]["loss"] == pytest.approx(expected, rel=1e-5)
    without = nll.mean().item()
    assert smoothing == 0 or abs(without - expected) > 1e-3  # the test can tell them apart
