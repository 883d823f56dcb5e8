"""Checkpoints: round trip, never unpickled, clear errors, atomic against a crash mid-save."""

from __future__ import annotations

import os
import pickle

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
    assert ckpt.config == PRESETS["best"] and ckpt.progress == {"step": 2, "epoch": 0}
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
    save_checkpoint(path, model=model, config=PRESETS["best"], progress={}, ema=average)
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
