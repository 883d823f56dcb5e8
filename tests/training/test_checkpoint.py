"""Checkpoints: round trip, never unpickled, clear errors, atomic against a crash mid-save."""

from __future__ import annotations

import json
import os
import pickle
import re

import pytest
import torch
from safetensors.torch import save_file

from rnnflow.models import SequenceClassifier
from rnnflow.training import CheckpointError, load_checkpoint, save_checkpoint
from rnnflow.training.checkpoint import FORMAT
from rnnflow.training.config import PRESETS


def trained():
    model = SequenceClassifier(cell="lstm", num_units=8, bidirectional=True, init="glorot")
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    for _ in range(2):
        model(torch.rand(4, 28, 28)).sum().backward()
        opt.step()
    return model, opt


def save(path, model, opt):
    save_checkpoint(
        path,
        model=model,
        config=PRESETS["best"],
        progress={"step": 2, "epoch": 0},
        optimizer=opt,
        rng={"torch": torch.get_rng_state()},
    )


def test_round_trip_restores_model_optimizer_and_rng(tmp_path):
    model, opt = trained()
    path = tmp_path / "c.safetensors"
    save(path, model, opt)
    ckpt = load_checkpoint(path)
    assert ckpt.config == PRESETS["best"] and ckpt.progress["step"] == 2
    assert ckpt.progress["epoch"] == 0 and ckpt.progress["examples"] == 0  # a default
    assert ckpt.model.keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt.model[k], v)
    assert torch.equal(ckpt.rng["torch"], torch.get_rng_state())
    # a restored optimizer takes exactly the step the original takes
    clone, _ = trained()
    clone.load_state_dict(ckpt.model)
    opt2 = torch.optim.AdamW(clone.parameters(), lr=0.01)
    opt2.load_state_dict(ckpt.optimizer)
    x = torch.rand(4, 28, 28)
    for m, o in ((model, opt), (clone, opt2)):
        o.zero_grad()
        m(x).sum().backward()
        o.step()
    for a, b in zip(model.parameters(), clone.parameters()):
        assert torch.equal(a, b)


def test_truncated_file_is_a_clear_error(tmp_path):
    model, opt = trained()
    path = tmp_path / "c.safetensors"
    save(path, model, opt)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"truncated"):
            load_checkpoint(path)
    path.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match=r"too short for a safetensors file"):
        load_checkpoint(path)


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(
        CheckpointError, match=r"not an rnnflow checkpoint: metadata 'format' is 'pt'"
    ):
        load_checkpoint(path)


class Exploit:
    def __reduce__(self):
        return (os.mkdir, (os.environ["EXPLOIT_MARKER"],))


def test_a_pickle_is_refused_without_running_it(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EXPLOIT_MARKER", str(marker))
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"model": Exploit()}))
    with pytest.raises(
        CheckpointError, match=r"evil\.pt: truncated or not a safetensors file: the header declares"
    ):
        load_checkpoint(path)
    assert not marker.exists()


def test_newer_format_version(tmp_path):
    path = tmp_path / "future.safetensors"
    save_file({"model.w": torch.zeros(1)}, str(path), {"format": FORMAT, "format_version": "99"})
    with pytest.raises(
        CheckpointError,
        match=r"format_version 99 is not supported \(this rnnflow reads versions 1, 2\)",
    ):
        load_checkpoint(path)


def test_weight_average_round_trip_and_version_1_files_still_load(tmp_path):
    model, opt = trained()
    average, _ = trained()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model=model, config=PRESETS["best"], progress={"step": 0}, ema=average)
    ckpt = load_checkpoint(path)
    assert ckpt.ema.keys() == average.state_dict().keys()
    for k, v in average.state_dict().items():
        assert torch.equal(ckpt.ema[k], v)
    # a version-1 file (before the weight average existed): loads, with no average
    old = tmp_path / "v1.safetensors"
    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "format_version": "1", "config": '{"cell": "lstm"}'}
    save_file(tensors, str(old), meta | {"progress": '{"step": 2}'})
    ckpt = load_checkpoint(old)
    assert ckpt.ema == {} and ckpt.model.keys() == model.state_dict().keys()


def test_missing_file():
    with pytest.raises(FileNotFoundError, match=r"load_checkpoint: nope.safetensors: no such file"):
        load_checkpoint("nope.safetensors")


@pytest.mark.parametrize("fail_in", ["fsync", "replace"])
def test_crash_mid_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch, fail_in):
    model, opt = trained()
    path = tmp_path / "c.safetensors"
    save(path, model, opt)
    before = path.read_bytes()
    with torch.no_grad():
        model.weights_out.add_(1.0)

    def crash(*args, **kwargs):
        raise OSError("simulated crash")

    monkeypatch.setattr(os, fail_in, crash)
    with pytest.raises(OSError, match="simulated crash"):
        save(path, model, opt)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]  # no temp file left
    load_checkpoint(path)


# ------------------------------------------------------------------------------------------------
# Hostile and corrupt files: refused with the file's name, before anything big is allocated.


def small_run(tmp_path, name="c.safetensors"):
    """A real checkpoint of a 4-unit LSTM classifier after one Adam step (model, optimizer,
    RNG states, progress); returns its path and config."""
    from dataclasses import replace

    from rnnflow.tasks.image import build_model
    from rnnflow.training.config import TrainConfig

    config = replace(TrainConfig(), cell="lstm", num_units=4, batch_size=4, train_examples=8)
    model = build_model(config)
    opt = torch.optim.Adam(model.parameters())
    model(torch.rand(2, 28, 28)).sum().backward()
    opt.step()
    path = tmp_path / name
    save_checkpoint(
        path,
        model=model,
        config=config,
        progress={"step": 1, "examples": 4},
        optimizer=opt,
        rng={"torch": torch.get_rng_state(), "augment": torch.Generator().get_state()},
    )
    return path, config


def rewrite(path, *, tensors=None, meta=None):
    """Save ``path`` again with some tensors or metadata replaced (a hand-edited file)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        old_meta = f.metadata()
        old = {k: f.get_tensor(k) for k in f.keys()}
    save_file(old | (tensors or {}), str(path), old_meta | (meta or {}))


def edit_json_meta(path, key, edit):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        value = json.loads(f.metadata()[key])
    rewrite(path, meta={key: json.dumps(edit(value))})


def load_model(path):
    from rnnflow.tasks.image import load_trained_model

    return load_trained_model(path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        # 41 s and 3.4 GB before this check: now refused from the stored shapes
        ("num_units", 20000, r"model\.weights_in is stored as torch\.float32 \[28, 4\], the "
         r"model its config describes \(cell='lstm', num_units=20000, .*\) needs torch\.float32 "
         r"\[28, 20000\]"),
        # an allocator traceback before: the shapes overflow even on the meta device
        ("num_units", 10**9, r"its config describes no model this file can hold"),
        # minutes of building before
        ("num_layers", 10**6, r"its config says num_layers=1000000, but the file holds only 6 "
         r"weight tensors"),
        ("cell", "gru", r"the model weights do not fit the model its config describes "
         r"\(cell='gru', .*\): missing \['cell\.candidate\.bias'"),
    ],
)  # fmt: skip
def test_a_config_that_does_not_describe_the_tensors_is_refused_before_building(
    tmp_path, field, value, message
):
    path, _ = small_run(tmp_path)
    edit_json_meta(path, "config", lambda c: c | {field: value})
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))}: {message}"):
        load_model(path)
    load_checkpoint(path)  # the file itself is well-formed: only its config lies


def test_a_float_kernel_relabelled_int32_is_refused(tmp_path):
    path, _ = small_run(tmp_path)
    data = path.read_bytes()
    entry = b'"model.cell.kernel":{"dtype":"F32"'
    assert data.count(entry) == 1
    path.write_bytes(data.replace(entry, entry.replace(b"F32", b"I32")))  # same byte count
    with pytest.raises(
        CheckpointError,
        match=r"tensor 'model\.cell\.kernel' is stored as I32, expected a floating-point dtype",
    ):
        load_checkpoint(path)


def test_a_deeply_nested_header_is_a_clear_error(tmp_path):
    path = tmp_path / "deep.safetensors"
    header = b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(CheckpointError, match=r"deep\.safetensors: .*header is nested too deeply"):
        load_checkpoint(path)


def test_a_header_that_describes_less_than_the_file_is_refused_before_reading(tmp_path):
    path, _ = small_run(tmp_path)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size + (1 << 33))  # sparse: 8 GB that must never be read
    with pytest.raises(
        CheckpointError,
        match=r"truncated or corrupt checkpoint: the header describes \d+ bytes of tensor data, "
        r"the file holds 85899\d{5}",
    ):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: {k: v for k, v in p.items() if k != "step"}, r"no 'step'"),
        (lambda p: p | {"step": "x"}, r"'step' is 'x', expected a int >= 0"),
        (lambda p: p | {"examples": -5}, r"'examples' is -5, expected a int >= 0"),
        (lambda p: p | {"finished": 1}, r"'finished' is 1, expected a bool"),
        (lambda p: p | {"colour": 1}, r"unknown keys \['colour'\] \(expected keys among \["),
        (lambda p: 5, r"expected a JSON object, got int"),
        # counters the config's run cannot reach (#14): batch_size 4, 8 examples = 2 steps
        (
            lambda p: p | {"step": 10**18},
            r"'step' is 1000000000000000000, but its config's run has only 2 steps",
        ),
        (lambda p: p | {"examples": 5}, r"'examples' is 5, more than step x batch_size = 1 x 4"),
        (lambda p: p | {"best_step": 2}, r"'best_step' is 2, more than step \(1\)"),
        (lambda p: p | {"epoch": 2}, r"'epoch' is 2, more than step \(1\)"),
        (lambda p: p | {"batch_in_epoch": 3}, r"'batch_in_epoch' is 3, more than step \(1\)"),
    ],
)
def test_corrupt_progress_metadata_is_named(tmp_path, edit, message):
    path, _ = small_run(tmp_path)
    edit_json_meta(path, "progress", edit)
    with pytest.raises(
        CheckpointError, match=rf"{re.escape(str(path))}: corrupt progress metadata: {message}"
    ):
        load_checkpoint(path)


def test_progress_at_the_end_of_the_run_is_accepted(tmp_path):
    path, _ = small_run(tmp_path)
    edit_json_meta(path, "progress", lambda p: p | {"step": 2, "examples": 8, "best_step": 2})
    assert load_checkpoint(path).progress["step"] == 2  # the bounds themselves are allowed


def test_garbage_rng_state_is_named_at_load(tmp_path):
    path, _ = small_run(tmp_path)
    rewrite(path, tensors={"rng.torch": torch.full((5056,), 7, dtype=torch.uint8)})
    with pytest.raises(
        CheckpointError,
        match=r"RNG state 'rng\.torch' is not a torch CPU generator state",
    ):
        load_checkpoint(path)
    rewrite(path, tensors={"rng.torch": torch.zeros(3, dtype=torch.float32)})
    with pytest.raises(
        CheckpointError, match=r"RNG state 'rng\.torch' is F32\[3\], expected a 1-D U8"
    ):
        load_checkpoint(path)


def test_optimizer_state_of_the_wrong_shape_is_refused_before_resuming(tmp_path):
    from rnnflow.tasks.image import ImageTask
    from rnnflow.training.engine import fit

    path, config = small_run(tmp_path)
    rewrite(path, tensors={"optimizer.0.exp_avg": torch.zeros(3)})
    resume = load_checkpoint(path)
    data = (torch.rand(8, 28, 28), torch.arange(8) % 10)
    with pytest.raises(
        CheckpointError,
        match=r"optimizer state 'exp_avg' of parameter '.*' is stored as torch\.float32 \[3\], "
        r"the parameter is torch\.float32 \[",
    ):
        fit(ImageTask(config, data, data), tmp_path / "run", resume=resume)


@pytest.mark.parametrize(
    ("tensor", "value", "message"),
    [
        ("model.cell.bias", float("nan"), r"tensor 'model\.cell\.bias' holds NaN or infinite"),
        ("optimizer.0.exp_avg_sq", -1.0, r"'optimizer\.0\.exp_avg_sq' \(Adam's second moment\) "
         r"holds negative values"),
        ("optimizer.0.exp_avg", float("inf"), r"'optimizer\.0\.exp_avg' holds NaN or infinite"),
    ],
)  # fmt: skip
def test_non_finite_weights_and_a_negative_second_moment_are_refused(
    tmp_path, tensor, value, message
):
    path, _ = small_run(tmp_path)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        bad = f.get_tensor(tensor).clone()
    bad.view(-1)[0] = value
    rewrite(path, tensors={tensor: bad})
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda o: [1, 2], r"the optimizer metadata needs a 'param_groups' list"),
        (lambda o: o | {"param_groups": [{"lr": 1e-3}]},
         r"a param group must be an object with a 'params' list"),
        (lambda o: o | {"param_groups": [o["param_groups"][0] | {"lr": float("nan")}]},
         r"param group entry 'lr' is nan, expected finite"),
        (lambda o: o | {"param_groups": [o["param_groups"][0] | {"params": [0, 0]}]},
         r"a parameter index appears in two param groups"),
    ],
)  # fmt: skip
def test_corrupt_optimizer_metadata_is_named(tmp_path, edit, message):
    path, _ = small_run(tmp_path)
    edit_json_meta(path, "optimizer", edit)
    with pytest.raises(CheckpointError, match=rf"corrupt optimizer state: {message}"):
        load_checkpoint(path)


def test_an_optimizer_that_lists_other_parameters_is_refused(tmp_path):
    path, config = small_run(tmp_path)
    edit_json_meta(
        path, "optimizer", lambda o: o | {"param_groups": [o["param_groups"][0] | {"params": [0]}]}
    )
    with pytest.raises(CheckpointError, match=r"state for parameter indices \[1, 2, 3, 4, 5\]"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("old", "score"),
    [
        ({"best_val_accuracy": 0.75}, 0.75),  # the image loop's record
        ({"best_val_accuracy": -1.0}, None),  # its "none yet"
        ({"best_val_loss": 2.5, "tokens": 40}, -2.5),  # the char-LM loop's (minus the loss)
        ({"best_val_loss": None, "tokens": 0}, None),
    ],
)
def test_checkpoints_written_before_the_one_engine_still_load(tmp_path, old, score):
    """Files of the two loops before ``fit``: no "task" key (a classifier), progress with their
    own best-score fields, read as ``best_score`` (higher is better)."""
    from safetensors import safe_open

    path, _ = small_run(tmp_path)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    meta.pop("task")
    meta["progress"] = json.dumps({"step": 1, "examples": 4, "best_step": 1, **old})
    save_file(tensors, str(path), meta)
    checkpoint = load_checkpoint(path)
    assert checkpoint.task == "classifier" and checkpoint.metadata == {}
    assert checkpoint.progress["best_score"] == score and "tokens" not in checkpoint.progress


def test_a_checkpoint_of_another_task_or_a_reserved_metadata_key_is_refused(tmp_path):
    path, config = small_run(tmp_path)
    rewrite(path, meta={"task": "charlm"})
    with pytest.raises(CheckpointError, match=r"c\.safetensors: a checkpoint of task 'charlm', not "
                       r"'classifier'"):  # fmt: skip
        load_checkpoint(path)
    with pytest.raises(ValueError, match=r"save_checkpoint: metadata keys \['config'\] are "):
        save_checkpoint(path, model=torch.nn.Linear(1, 1), config=config, progress={"step": 0},
                        metadata={"config": "{}"})  # fmt: skip
