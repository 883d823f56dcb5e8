"""End to end: TF1 checkpoints of the tutorial's program, trained with real TensorFlow, become
rnnflow models that compute TF's logits, and runs that evaluate, predict and keep training."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from interop._tf1_bundle import FIXTURES, load_expected

from rnnflow.cli import main
from rnnflow.interop.tf1_checkpoint import TF1Checkpoint, TF1CheckpointError, TF1ChecksumError
from rnnflow.interop.tf1_names import TF1NameError
from rnnflow.tasks.image import import_tutorial

MODELS = {  # name: (cell, units, layers)
    "basic_rnn": ("rnn", 128, 1),
    "basic_lstm": ("lstm", 64, 1),
    "gru": ("gru", 64, 1),
    "multi_lstm": ("lstm", 32, 2),
    "lstm_cell": ("lstm_cell", 64, 1),  # tf.nn.rnn_cell.LSTMCell: rnn/lstm_cell/kernel [128, 256]
}


def _batch(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(FIXTURES / "batch.npz") as data:
        images, labels = data["images"], data["labels"]
    x = torch.from_numpy(images).to(torch.float64).div(255.0).to(dtype)  # [N, 28, 28]
    return x, torch.from_numpy(labels)


@pytest.mark.parametrize("model", MODELS)
def test_imported_model_matches_tf_logits(model: str) -> None:
    imported = import_tutorial(FIXTURES / model / "model.ckpt")
    expected = load_expected(model)
    cell, units, layers = MODELS[model]
    config = imported.config
    assert (config.cell, config.num_units, config.num_layers) == (cell, units, layers)
    assert config.projection_size is None and not config.bidirectional
    assert imported.step == 300 and imported.skipped == []
    x32, _ = _batch(torch.float32)
    with torch.no_grad():
        logits = imported.model(x32)
    # float32 against TF's float32 graph (same weights, same inputs)
    torch.testing.assert_close(logits, torch.from_numpy(expected["logits"]), atol=1e-5, rtol=0)
    # ... and against the exact function (TF in float64): rnnflow's own float32 error
    torch.testing.assert_close(
        logits.double(), torch.from_numpy(expected["logits_f64"]), atol=1e-5, rtol=0
    )
    # float64 against a float64 copy of TF's graph: the same function (measured <= 1.3e-14)
    model64 = imported.model.to(torch.float64)
    with torch.no_grad():
        logits64 = model64(_batch(torch.float64)[0])
    torch.testing.assert_close(
        logits64, torch.from_numpy(expected["logits_f64"]), atol=1e-11, rtol=0
    )


@pytest.mark.parametrize("model", MODELS)
def test_imported_adam_state_continues_like_tf(model: str) -> None:
    """One more Adam step from the imported slots lands where TF's next step did."""
    from rnnflow.training import build_optimizer

    imported = import_tutorial(FIXTURES / model / "model.ckpt")
    expected = load_expected(model)
    net = imported.model.train()
    optimizer = build_optimizer(imported.config, net)
    optimizer.load_state_dict(imported.optimizer_state)
    state = optimizer.state[net.weights_in]
    assert float(state["step"]) == 300
    tf_m = TF1Checkpoint(FIXTURES / model / "model.ckpt").read("Variable/Adam")
    torch.testing.assert_close(state["exp_avg"], tf_m, atol=0, rtol=0)
    x, y = _batch(torch.float32)
    loss = F.cross_entropy(net(x), y)
    torch.testing.assert_close(loss, torch.tensor(float(expected["loss"])), atol=1e-5, rtol=0)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        after = net(x)
    # TF and PyTorch place Adam's epsilon differently (see tf1_import); negligible here
    torch.testing.assert_close(
        after, torch.from_numpy(expected["logits_after_step"]), atol=2e-5, rtol=0
    )


def test_map_overrides_and_their_errors() -> None:
    prefix = FIXTURES / "basic_rnn" / "model.ckpt"
    same = import_tutorial(prefix, overrides={"Variable_3": "biases_out"})
    assert same.mapping["biases_out"] == "Variable_3"
    with pytest.raises(
        TF1NameError,
        match=r"no assignment of Variable_2 \[128\], Variable_3 \[10\] to \['biases_in', "
        r"'biases_out'\] \(with weights_in \[128, 10\], weights_out \[28, 128\] given\)",
    ):
        import_tutorial(prefix, overrides={"Variable_1": "weights_in", "Variable": "weights_out"})
    with pytest.raises(TF1NameError, match=r"--map names unknown rnnflow parameters \['cell.w'\]"):
        import_tutorial(prefix, overrides={"rnn/basic_rnn_cell/bias": "cell.w"})
    with pytest.raises(TF1NameError, match=r"no variable 'Variable_9' in the checkpoint"):
        import_tutorial(prefix, overrides={"Variable_9": "weights_in"})
    with pytest.raises(
        TF1NameError,
        match=r"--map Variable=w_in: unknown rnnflow parameter 'w_in'; expected one of",
    ):
        import_tutorial(prefix, overrides={"Variable": "w_in"})


def test_extra_variables_need_map_or_ignore(tmp_path: Path, bundle_writer) -> None:
    source = TF1Checkpoint(FIXTURES / "gru" / "model.ckpt")
    tensors = {n: source.read(n).numpy() for n in source}
    tensors["Variable_4"] = np.ones(7, np.float32)  # e.g. a second head the user added
    tensors["global_step"] = np.array(300, np.int64)
    prefix = bundle_writer(tmp_path / "extra" / "model.ckpt", tensors)
    with pytest.raises(TF1NameError, match=r"found 5: Variable \[28, 64\], .*Variable_4 \[7\]"):
        import_tutorial(prefix)
    imported = import_tutorial(prefix, ignore=["Variable_4"])
    assert imported.skipped == ["Variable_4", "global_step"]
    without = import_tutorial(prefix, ignore=["Variable_4"], with_optimizer=False)
    assert without.optimizer_state is None and without.step == 0
    assert "beta1_power" in without.skipped


def test_checkpoint_without_adam_slots(tmp_path: Path, bundle_writer) -> None:
    source = TF1Checkpoint(FIXTURES / "basic_lstm" / "model.ckpt")
    tensors = {n: source.read(n).numpy() for n in source if "Adam" not in n and "power" not in n}
    prefix = bundle_writer(tmp_path / "plain" / "model.ckpt", tensors)
    imported = import_tutorial(prefix)
    assert imported.optimizer_state is None and imported.step == 0
    assert imported.notes == [
        "no Adam slots in the checkpoint: continued training starts a fresh Adam"
    ]
    partial = dict(tensors, **{"Variable/Adam": tensors["Variable"]})
    partial["Variable/Adam_1"] = tensors["Variable"]
    prefix = bundle_writer(tmp_path / "partial" / "model.ckpt", partial)
    with pytest.raises(TF1NameError, match=r"incomplete Adam state \(no slots for \['biases_in'"):
        import_tutorial(prefix)


# ----------------------------------------------------------------------------- the CLI
def test_cli_list(capsys) -> None:
    assert main(["import-tf1", str(FIXTURES / "gru"), "--list", "--check"]) == 0
    out = capsys.readouterr().out
    assert "model.ckpt: 26 variables, 1 shard\n" in out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:-1]}
    assert lines["rnn/gru_cell/gates/kernel"] == ["float32", "128x128", "model"]
    assert lines["beta1_power"] == ["float32", "scalar", "optimizer"]
    assert lines["Variable/Adam_1"] == ["float32", "28x64", "optimizer"]
    assert out.endswith("all tensors read; crc32c verified\n")


def test_cli_check_skips_what_it_cannot_decode(tmp_path: Path, bundle_writer, capsys) -> None:
    from interop._tf1_bundle import entry_proto

    string = entry_proto(dtype=7, shape=(), size=5, crc=0)  # like TF2's object graph
    prefix = bundle_writer(
        tmp_path / "tf2" / "ckpt",
        {"w/.ATTRIBUTES/VARIABLE_VALUE": np.ones((3, 4), np.float32)},
        entries={"_CHECKPOINTABLE_OBJECT_GRAPH": string},
    )
    assert main(["import-tf1", str(prefix), "--list", "--check"]) == 0
    out = capsys.readouterr().out
    assert "_CHECKPOINTABLE_OBJECT_GRAPH  string    scalar       model" in out
    assert out.endswith(
        "1 tensor read, crc32c verified; 1 skipped (string, sliced or other "
        "dtypes this reader does not decode)\n"
    )


def test_cli_list_reports_a_corrupted_tensor(tf1_copy, capsys) -> None:
    prefix = tf1_copy("gru")
    data = Path(f"{prefix}.data-00000-of-00001")
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0xFF
    data.write_bytes(bytes(raw))
    assert main(["import-tf1", str(prefix), "--list"]) == 0  # the index alone is fine
    assert main(["import-tf1", str(prefix), "--list", "--check"]) == 1
    assert "crc32c mismatch for 'Variable'" in capsys.readouterr().err


def test_cli_import_writes_a_run_that_evaluates_predicts_and_resumes(tmp_path: Path, capsys):
    from rnnflow.tasks.image import ImageTask, load_trained_model
    from rnnflow.training import fit, load_checkpoint

    run_dir = tmp_path / "run"
    argv = ["import-tf1", str(FIXTURES / "basic_rnn" / "model.ckpt"), "--preset", "tutorial"]
    argv += ["--out", str(run_dir), "--dataset", "fashion-mnist", "--train-examples", "38656"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "  weights_in   <- Variable\n" in out and "Adam state: step 300" in out
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "best.safetensors",
        "checkpoint.safetensors",
        "config.json",
        "import.json",
    ]
    record = json.loads((run_dir / "import.json").read_text())
    assert record["mapping"]["cell.kernel"] == "rnn/basic_rnn_cell/kernel"
    assert json.loads((run_dir / "config.json").read_text())["dataset"] == "fashion-mnist"

    # evaluate / predict load it as a trained run: TF's logits
    model, checkpoint = load_trained_model(run_dir)
    assert checkpoint.progress["step"] == 300
    x, _ = _batch(torch.float32)
    with torch.no_grad():
        logits = model(x)
    expected = load_expected("basic_rnn")
    torch.testing.assert_close(logits, torch.from_numpy(expected["logits"]), atol=1e-5, rtol=0)

    # training continues from TF's Adam state at step 300: one more step (38656 = 302 * 128)
    resume = load_checkpoint(run_dir / "checkpoint.safetensors")
    assert resume.optimizer is not None and len(resume.optimizer["state"]) == 6
    images = torch.from_numpy(np.load(FIXTURES / "batch.npz")["images"]).float() / 255
    labels = torch.from_numpy(np.load(FIXTURES / "batch.npz")["labels"])
    train = (images.repeat(4, 1, 1), labels.repeat(4))  # 256 examples: 2 batches
    task = ImageTask(resume.config, train, (images, labels))
    _, progress = fit(task, run_dir, resume=resume, stop_at_step=301)
    assert progress.step == 301


def test_cli_import_errors(tmp_path: Path, capsys) -> None:
    prefix = str(FIXTURES / "basic_rnn" / "model.ckpt")
    assert main(["import-tf1", str(tmp_path / "none"), "--list"]) == 1
    assert "rnnflow import-tf1: TF1Checkpoint: no index file" in capsys.readouterr().err
    assert main(["import-tf1", prefix]) == 2
    assert "give --list, or --preset tutorial --out RUN_DIR" in capsys.readouterr().err
    out = ["--preset", "tutorial", "--out", str(tmp_path / "r")]
    assert main(["import-tf1", prefix, *out, "--num-units", "64"]) == 2
    assert "--num-units: the model's shape comes from the checkpoint" in capsys.readouterr().err
    assert main(["import-tf1", prefix, *out, "--map", "Variable"]) == 2
    assert "--map expects NAME=PARAM, got 'Variable'" in capsys.readouterr().err
    assert main(["import-tf1", prefix, *out, "--map", "Variable_1=weights_in"]) == 2
    assert "no assignment of" in capsys.readouterr().err
    assert main(["import-tf1", prefix, *out]) == 0
    capsys.readouterr()
    assert main(["import-tf1", prefix, *out]) == 2
    assert "already holds a run; choose another --out" in capsys.readouterr().err


def test_dropout_for_continued_training_wraps_the_imported_cells() -> None:
    from dataclasses import replace

    from rnnflow.training import PRESETS

    base = replace(PRESETS["tutorial"], dropout=0.2)
    imported = import_tutorial(FIXTURES / "multi_lstm" / "model.ckpt", base_config=base)
    assert imported.config.dropout == 0.2
    assert imported.mapping["cell.cell_1.cell.kernel"] == (
        "rnn/multi_rnn_cell/cell_1/basic_lstm_cell/kernel"
    )
    with torch.no_grad():  # eval mode: dropout off, TF's function
        logits = imported.model.eval()(_batch(torch.float32)[0])
    expected = load_expected("multi_lstm")["logits"]
    torch.testing.assert_close(logits, torch.from_numpy(expected), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- hostile files
def _tensors(model: str) -> dict[str, np.ndarray]:
    source = TF1Checkpoint(FIXTURES / model / "model.ckpt")
    return {name: source.read(name).numpy() for name in source}


@pytest.mark.parametrize("units", [20_000, 10**6])
def test_an_index_claiming_a_huge_model_is_refused_before_building_it(
    tmp_path: Path, bundle_writer, monkeypatch, capsys, units: int
) -> None:
    """The index claims H units, the data file holds 40 bytes: refused from the file sizes,
    before a model (3.4 GB for H = 20000) is built."""
    from interop._tf1_bundle import entry_proto

    import rnnflow.tasks.image

    claims = {
        "Variable": (28, units),
        "Variable_1": (units, 10),
        "Variable_2": (units,),
        "Variable_3": (10,),
        "rnn/basic_rnn_cell/kernel": (2 * units, units),
        "rnn/basic_rnn_cell/bias": (units,),
    }
    entries = {
        name: entry_proto(dtype=1, shape=shape, size=4 * int(np.prod(shape)), crc=0)
        for name, shape in claims.items()
    }
    prefix = bundle_writer(
        tmp_path / "liar" / "model.ckpt", {"pad": np.zeros(10, np.float32)}, entries=entries
    )

    def no_building(*args, **kwargs):
        raise AssertionError("build_model ran before the data files were checked")

    monkeypatch.setattr(rnnflow.tasks.image, "build_model", no_building)
    message = r"claims bytes \[0, \d+\) \(\d+ bytes\), but the file has only 40 bytes"
    with pytest.raises(TF1CheckpointError, match=message):
        import_tutorial(prefix, ignore=["pad"])
    out = ["--preset", "tutorial", "--out", str(tmp_path / "run"), "--ignore", "pad"]
    assert main(["import-tf1", str(prefix), *out]) == 1
    assert "but the file has only 40 bytes" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("rnn/basic_rnn_cell/kernel/Adam_1", -1.0,
         r"'rnn/basic_rnn_cell/kernel/Adam_1' holds negative values \(min -1\); Adam's second "
         r"moment \(Adam_1\) is a running mean of squares, never negative"),
        ("Variable/Adam_1", float("nan"), r"'Variable/Adam_1' holds NaN or infinite values"),
        ("Variable_1/Adam", float("inf"), r"'Variable_1/Adam' holds NaN or infinite values"),
        ("rnn/basic_rnn_cell/bias", float("nan"),
         r"'rnn/basic_rnn_cell/bias' holds NaN or infinite values"),
    ],
)  # fmt: skip
def test_non_finite_values_and_a_negative_second_moment_are_refused_at_import(
    tmp_path: Path, bundle_writer, capsys, name: str, value: float, message: str
) -> None:
    tensors = _tensors("basic_rnn")
    tensors[name] = tensors[name].copy()
    tensors[name].reshape(-1)[0] = value
    prefix = bundle_writer(tmp_path / "bad" / "model.ckpt", tensors)
    with pytest.raises(TF1NameError, match=rf"import_tutorial: {message}"):
        import_tutorial(prefix)
    run_dir = tmp_path / "run"
    assert main(["import-tf1", str(prefix), "--preset", "tutorial", "--out", str(run_dir)]) == 2
    assert "rnnflow import-tf1: import_tutorial: " in capsys.readouterr().err
    assert not run_dir.exists()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("beta1_power", np.array([0.9, 0.9], np.float32),
         r"'beta1_power' has shape \[2\], expected a scalar \[\] \(TF's AdamOptimizer stores it "
         r"as one float\)"),
        ("beta2_power", np.zeros((1, 1), np.float32),
         r"'beta2_power' has shape \[1, 1\], expected a scalar \[\] .*"),
        ("beta1_power", np.array(1, np.int64),
         r"'beta1_power' has dtype torch\.int64, expected a float scalar"),
        ("beta2_power", np.array(np.nan, np.float32),
         r"'beta2_power' holds NaN or infinite values"),
    ],
)  # fmt: skip
def test_adam_powers_must_be_float_scalars(tmp_path: Path, bundle_writer, capsys, name, value,
                                           message) -> None:  # fmt: skip
    """Before: a [2] power raised PyTorch's "only one element tensors can be converted to Python
    scalars" (naming no variable), an int64 1 was read as 1.0 and blamed on beta1."""
    prefix = bundle_writer(tmp_path / "bad" / "model.ckpt", {**_tensors("gru"), name: value})
    with pytest.raises(TF1NameError, match=rf"^import_tutorial: {message}$"):
        import_tutorial(prefix)
    run_dir = tmp_path / "run"
    assert main(["import-tf1", str(prefix), "--preset", "tutorial", "--out", str(run_dir)]) == 2
    assert re.search(rf"rnnflow import-tf1: import_tutorial: {message}", capsys.readouterr().err)
    assert not run_dir.exists()
    imported = import_tutorial(prefix, with_optimizer=False)  # the way out the message implies
    assert imported.optimizer_state is None


@pytest.mark.parametrize(
    "name", ["rnn/gru_cell/candidate/kernel", "Variable_1/Adam", "Variable/Adam_1"]
)
def test_every_float64_tensor_converted_gets_a_note(tmp_path: Path, bundle_writer, name) -> None:
    """Parameters and Adam slots alike (before: a float64 slot was converted without a note);
    the values are the float64 ones rounded to float32 (NumPy's rounding is the truth)."""
    tensors = _tensors("gru")
    wide = tensors[name].astype(np.float64) + 1e-12  # a value float32 cannot hold exactly
    prefix = bundle_writer(tmp_path / "f64" / "model.ckpt", {**tensors, name: wide})
    imported = import_tutorial(prefix)
    assert f"{name}: converted torch.float64 -> torch.float32" in imported.notes
    assert sum("converted" in note for note in imported.notes) == 1
    param, slot = name.rsplit("/", 1) if "/Adam" in name else (name, "")
    key = {v: k for k, v in imported.mapping.items()}[param]
    if slot:
        order = [k for k, _ in imported.model.named_parameters()].index(key)
        field = {"Adam": "exp_avg", "Adam_1": "exp_avg_sq"}[slot]
        got = imported.optimizer_state["state"][order][field]
    else:
        got = imported.model.state_dict()[key]
    assert torch.equal(got, torch.from_numpy(wide.astype(np.float32)))


@pytest.mark.parametrize("name", ["Variable", "rnn/gru_cell/gates/kernel/Adam_1"])
def test_a_corrupted_data_file_is_caught_by_the_import_itself(tf1_copy, capsys, name) -> None:
    """crc32c is verified on the import path (a weight and an Adam slot), not only by --check."""
    prefix = tf1_copy("gru")
    entry = TF1Checkpoint(prefix).entries[name]
    data = Path(f"{prefix}.data-00000-of-00001")
    raw = bytearray(data.read_bytes())
    raw[entry.offset + entry.size // 2] ^= 0x01  # one bit of one float
    data.write_bytes(bytes(raw))
    with pytest.raises(TF1ChecksumError, match=rf"crc32c mismatch for '{name}'"):
        import_tutorial(prefix)
    run_dir = prefix.parent / "run"
    assert main(["import-tf1", str(prefix), "--preset", "tutorial", "--out", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert f"crc32c mismatch for '{name}'" in err and "the data file is corrupted" in err
    assert not run_dir.exists()


def test_the_assumed_dataset_is_said_and_recorded(tmp_path: Path, capsys) -> None:
    prefix = str(FIXTURES / "basic_rnn" / "model.ckpt")
    assert main(["import-tf1", prefix, "--preset", "tutorial", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert (
        "  dataset: mnist ASSUMED (the tutorial preset's default; a TF1 checkpoint does not say "
        "what it was trained on). For a Fashion-MNIST model, import again with --dataset "
        "fashion-mnist, or evaluate this run with "
        f"`rnnflow evaluate {tmp_path / 'a'} --dataset fashion-mnist`"  # runnable: the run
    ) in out
    record = json.loads((tmp_path / "a" / "import.json").read_text())
    assert record["dataset"] == "mnist" and record["dataset_assumed"] is True
    argv = ["import-tf1", prefix, "--preset", "tutorial", "--out", str(tmp_path / "b")]
    assert main([*argv, "--dataset", "fashion-mnist"]) == 0
    assert "ASSUMED" not in capsys.readouterr().out
    record = json.loads((tmp_path / "b" / "import.json").read_text())
    assert record["dataset"] == "fashion-mnist" and record["dataset_assumed"] is False


def test_import_hints_start_as_the_user_ran_rnnflow(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [".venv/bin/rnnflow"])
    monkeypatch.setenv("PATH", "/nonexistent")  # not on PATH: rnnflow.cli.prog() gives the path
    prefix = str(FIXTURES / "basic_rnn" / "model.ckpt")
    assert main(["import-tf1", prefix, "--preset", "tutorial", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert f"`.venv/bin/rnnflow evaluate {tmp_path / 'a'} --dataset fashion-mnist`" in out
    assert f"evaluate with: .venv/bin/rnnflow evaluate {tmp_path / 'a'}  (dataset: mnist)" in out
    assert "rnnflow evaluate" not in out.replace(".venv/bin/rnnflow evaluate", "")


def test_cli_import_refuses_bad_arguments_before_reading_or_writing(tmp_path: Path, capsys):
    """--out at a file, --dataset idx (offered by --help, as every TrainConfig dataset) and
    --check without --list: one line naming the flag, exit 2, nothing written."""
    prefix = str(FIXTURES / "gru" / "model.ckpt")
    afile = tmp_path / "afile"
    afile.write_text("keep")
    cases = [
        (["--preset", "tutorial", "--out", str(afile)],
         rf"--out {re.escape(str(afile))} exists and is not a folder: choose another path"),
        (["--preset", "tutorial", "--out", str(tmp_path / "r"), "--dataset", "idx"],
         r"--dataset idx: an imported run needs a catalogued dataset .*import with --dataset "
         r"mnist or fashion-mnist"),
        (["--check"], r"--check verifies the tensors --list reads: give --list --check"),
        (["--check", "--preset", "tutorial", "--out", str(tmp_path / "r")],
         r"--check verifies the tensors --list reads: give --list --check"),
    ]  # fmt: skip
    for args, message in cases:
        assert main(["import-tf1", prefix, *args]) == 2, args
        err = capsys.readouterr().err
        assert re.fullmatch(r"rnnflow import-tf1: " + message + r"\n", err), err
    assert afile.read_text() == "keep" and not (tmp_path / "r").exists()


def test_cli_reads_the_checkpoint_through_tfs_state_file(tmp_path: Path, capsys) -> None:
    """Passing Saver's ``checkpoint`` state file (beside the prefix) means the checkpoint it
    names, not "a V1 checkpoint"; a state file that names none says so."""
    run = tmp_path / "tf"
    shutil.copytree(FIXTURES / "gru", run)
    (run / "checkpoint").write_text('model_checkpoint_path: "model.ckpt"\n')
    assert main(["import-tf1", str(run / "checkpoint"), "--list", "--check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{run / 'model.ckpt'}: ") and "crc32c verified" in out, out
    (run / "checkpoint").write_text("all_model_checkpoint_paths: []\n")
    assert main(["import-tf1", str(run / "checkpoint"), "--list"]) == 1
    err = capsys.readouterr().err
    assert "is tf.train.Saver's checkpoint state file but names no checkpoint" in err, err
    assert "V1" not in err
