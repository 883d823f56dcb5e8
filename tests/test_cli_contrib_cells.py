"""The classifier with each tf.contrib cell (`--cell lstm_block|gru_block|layer_norm_lstm|
cudnn_lstm|cudnn_gru`), end to end through the real `rnnflow` entry point on generated IDX files:
train, stop and resume (bit for bit as an uninterrupted run), evaluate, predict, and export to
ONNX and TorchScript (checked against PyTorch at other batch sizes)."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest
import torch
from PIL import Image
from test_cli_train import assert_same_tensors, make_images, params, write_fake_dataset

from rnnflow.cells import (
    CudnnCompatibleGRUCell,
    CudnnCompatibleLSTMCell,
    DropoutWrapper,
    GRUBlockCellV2,
    LayerNormBasicLSTMCell,
    LSTMBlockCell,
    MultiRNNCell,
)
from rnnflow.cli import main
from rnnflow.data.datasets import DATASETS
from rnnflow.interop._rounding import rounding_error_bound
from rnnflow.interop._traceable import TraceableClassifier
from rnnflow.interop.tf1_names import cell_tf_names
from rnnflow.models.classifier import CELL_KINDS, SequenceClassifier
from rnnflow.tasks.image import load_trained_model
from rnnflow.training import TrainConfig
from rnnflow.training.config import field_type

JIT_LOAD_DEPRECATED = "ignore:`torch.jit.load` is deprecated:DeprecationWarning"

# --cell value -> (rnnflow class, its TF1 scope and variables in a dynamic_rnn: the independent
# truth of which tf.contrib cell the flag builds; TF r1.15's own scopes and variable names)
CONTRIB = {
    "lstm_block": (LSTMBlockCell, ["rnn/lstm_cell/kernel", "rnn/lstm_cell/bias"]),
    "gru_block": (GRUBlockCellV2, ["rnn/gru_cell/gates/kernel", "rnn/gru_cell/gates/bias",
                                   "rnn/gru_cell/candidate/kernel", "rnn/gru_cell/candidate/bias"]),
    "layer_norm_lstm": (LayerNormBasicLSTMCell, ["rnn/layer_norm_basic_lstm_cell/kernel"] + [
        f"rnn/layer_norm_basic_lstm_cell/{s}/{p}"
        for s in ("input", "transform", "forget", "output", "state") for p in ("gamma", "beta")]),
    "cudnn_lstm": (CudnnCompatibleLSTMCell, ["rnn/cudnn_compatible_lstm_cell/kernel",
                                             "rnn/cudnn_compatible_lstm_cell/bias"]),
    "cudnn_gru": (CudnnCompatibleGRUCell, [
        f"rnn/cudnn_compatible_gru_cell/{p}" for p in (
            "gates/kernel", "gates/bias", "candidate/input_projection/kernel",
            "candidate/input_projection/bias", "candidate/hidden_projection/kernel",
            "candidate/hidden_projection/bias")]),
}  # fmt: skip

TINY = [
    "--preset", "tutorial", "--dataset", "fashion-mnist", "--batch-size", "32",
    "--train-examples", "96", "--val-size", "40", "--log-every", "32", "--eval-every", "64",
    "--num-units", "8", "--seed", "5", "--quiet", "--threads", "1",
]  # fmt: skip


def test_every_contrib_cell_is_a_cli_choice():
    assert set(CONTRIB) <= set(CELL_KINDS)
    assert typing.get_args(field_type("cell")) == CELL_KINDS  # the config's flag choices


@pytest.mark.parametrize("kind", list(CONTRIB))
def test_classifier_builds_the_tf_contrib_cell(kind):
    cls, tf_names = CONTRIB[kind]
    model = SequenceClassifier(cell=kind, num_units=6, projection_size=5)
    assert type(model.cell) is cls and model.cell.num_units == 6
    assert sorted(cell_tf_names(model.cell, "rnn").values()) == sorted(tf_names)
    stacked = SequenceClassifier(
        cell=kind, num_units=6, num_layers=2, dropout=0.5, projection_size=5
    )
    assert isinstance(stacked.cell, MultiRNNCell)
    assert all(type(c) is DropoutWrapper and type(c.cell) is cls for c in stacked.cell.cells)
    assert [c.cell.input_size for c in stacked.cell.cells] == [5, 6]  # P, then layer 1's h


@pytest.mark.parametrize("kind", ["lstm_block", "layer_norm_lstm"])
def test_forget_bias_reaches_the_contrib_lstm_cells(kind):
    model = SequenceClassifier(cell=kind, num_units=4, forget_bias=0.25)
    assert model.cell.forget_bias == 0.25
    assert SequenceClassifier(cell="cudnn_lstm", num_units=4).cell.forget_bias == 0.0  # cuDNN's


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Fashion-MNIST replaced by generated files (no network)."""
    root = tmp_path_factory.mktemp("contrib")
    rows = write_fake_dataset(root / "data")
    with pytest.MonkeyPatch.context() as mp:
        spec = dataclasses.replace(DATASETS["fashion-mnist"], mirrors=(), **rows)
        mp.setitem(DATASETS, "fashion-mnist", spec)
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        mp.delenv("RNNFLOW_DATA_DIR", raising=False)
        yield root / "data"


@pytest.mark.filterwarnings(JIT_LOAD_DEPRECATED)
@pytest.mark.parametrize("kind", list(CONTRIB))
def test_train_resume_evaluate_predict_export(kind, data, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="ONNX export needs pip install 'rnnflow[export]'")
    full, cut = tmp_path / "full", tmp_path / "cut"
    argv = ["train", *TINY, "--cell", kind, "--data-dir", str(data)]
    assert main([*argv, "--out", str(full)]) == 0
    assert main([*argv, "--out", str(cut), "--stop-at-step", "1"]) == 0
    assert main(["train", "--resume", str(cut), "--quiet"]) == 0
    assert_same_tensors(params(full), params(cut))  # resumed == uninterrupted, bit for bit
    config = json.loads((full / "config.json").read_text())
    assert config["cell"] == kind
    model, checkpoint = load_trained_model(full)
    assert type(model.cell) is CONTRIB[kind][0] and checkpoint.config.cell == kind
    capsys.readouterr()

    assert main(["evaluate", str(full), "--data-dir", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == 60 and sum(map(sum, report["confusion"])) == 60
    png = tmp_path / "one.png"
    Image.fromarray(make_images(1, 7)[0][0]).save(png)
    assert main(["predict", str(full), str(png), "--json"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out)["predictions"]
    x = torch.from_numpy(make_images(1, 7)[0]).float() / 255  # [1, 28, 28]
    with torch.no_grad():
        probabilities = model(x).softmax(1)[0]
    names = DATASETS["fashion-mnist"].class_names
    assert prediction["class"] == names[int(probabilities.argmax())]
    assert prediction["probability"] == pytest.approx(float(probabilities.max()), abs=1e-6)

    for fmt, suffix in (("onnx", "onnx"), ("torchscript", "pt")):
        out = tmp_path / f"model.{suffix}"
        assert main(["export", str(full), "--format", fmt, "--out", str(out)]) == 0
        assert "argmax agreement 60/60" in capsys.readouterr().out
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    module = torch.jit.load(str(tmp_path / "model.pt"))
    for batch in (1, 5):  # traced with 2
        x = torch.rand(batch, 28, 28, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(x)
            torch.testing.assert_close(module(x), expected, rtol=0, atol=1e-5)
        (logits,) = session.run(["logits"], {"images": x.numpy()})
        torch.testing.assert_close(torch.from_numpy(logits), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", list(CONTRIB))
def test_rounding_bound_covers_float32_error_of_the_contrib_cells(kind):
    """The export tolerance (twice this bound) is sound for each cell: the float32 logits lie
    within it of float64 ones computed on the same weights, and it is not vacuous."""
    torch.manual_seed(0)
    model = SequenceClassifier(cell=kind, num_units=12, init="glorot").eval()
    x = torch.rand(23, 28, 28, generator=torch.Generator().manual_seed(1))
    bound = rounding_error_bound(model, x)  # [23, 10]
    exact_model = SequenceClassifier(cell=kind, num_units=12).double()
    exact_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        ratio = (model(x).double() - TraceableClassifier(exact_model)(x.double())).abs() / bound
    assert ratio.max() <= 1
    assert ratio.max() > 1e-3


def test_config_refuses_an_unknown_cell():
    with pytest.raises(
        ValueError, match=r"TrainConfig: cell must be one of .*'cudnn_gru'\], got 'x'"
    ):
        TrainConfig(cell="x")  # type: ignore[arg-type]
