"""`rnnflow export` end to end: train tiny models through the real CLI on generated IDX files,
export them to ONNX and TorchScript, and compare onnxruntime's / torch.jit's logits with
PyTorch's at several batch sizes; then the refusals."""

from __future__ import annotations

import dataclasses
import json
import re
import sys

import pytest
import torch
from test_cli_train import write_fake_dataset

from rnnflow.cli import main
from rnnflow.data.datasets import DATASETS
from rnnflow.interop._rounding import FLOAT32_UNIT_ROUNDOFF, _chunk_bound, rounding_error_bound
from rnnflow.interop._traceable import TraceableClassifier, compare_logits
from rnnflow.models.classifier import SequenceClassifier
from rnnflow.tasks.image import load_trained_model

JIT_LOAD_DEPRECATED = "ignore:`torch.jit.load` is deprecated:DeprecationWarning"

# name -> train flags on top of the tutorial preset (BasicRNN(128), normal init)
CONFIGS = {
    "tutorial": [],
    "lstm": ["--cell", "lstm", "--num-units", "16"],
    "gru-bidirectional": ["--cell", "gru", "--bidirectional", "--num-units", "12"],
    "lstm-2-layers-dropout": ["--cell", "lstm", "--num-layers", "2", "--num-units", "10",
                              "--dropout", "0.2"],
}  # fmt: skip
TINY = [
    "--preset", "tutorial", "--dataset", "fashion-mnist", "--batch-size", "32",
    "--train-examples", "64", "--val-size", "40", "--log-every", "64", "--eval-every", "64",
    "--quiet", "--threads", "1",
]  # fmt: skip


def needs_onnxruntime():
    pytest.importorskip("onnx", reason="ONNX export needs onnx: pip install 'rnnflow[export]'")
    return pytest.importorskip(
        "onnxruntime", reason="the ONNX checks need onnxruntime: pip install 'rnnflow[export]'"
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Fashion-MNIST replaced by generated files; one tiny trained run folder per config."""
    root = tmp_path_factory.mktemp("export")
    rows = write_fake_dataset(root / "data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(DATASETS, "fashion-mnist", dataclasses.replace(DATASETS["fashion-mnist"],
                                                                  mirrors=(), **rows))  # fmt: skip
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        mp.delenv("RNNFLOW_DATA_DIR", raising=False)
        folders = {}
        for name, flags in CONFIGS.items():
            folders[name] = root / name
            argv = ["train", *TINY, *flags, "--data-dir", str(root / "data")]
            assert main([*argv, "--out", str(folders[name])]) == 0, name
        yield folders


def random_images(n: int) -> torch.Tensor:
    return torch.rand(n, 28, 28, generator=torch.Generator().manual_seed(n))  # [N, 28, 28]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_onnx_export_matches_pytorch_at_any_batch_size(runs, name, tmp_path, capsys):
    ort = needs_onnxruntime()
    out = tmp_path / "model.onnx"
    assert main(["export", str(runs[name]), "--format", "onnx", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"tolerance \S+: twice this model's float32 rounding-error bound", text)
    assert re.search(r"max \|onnxruntime - pytorch\| = \S+ on 60 images .*within", text), text
    assert "argmax agreement 60/60 (100.00%)" in text
    assert f"wrote {out}" in text

    model, checkpoint = load_trained_model(runs[name])
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (graph_input,) = session.get_inputs()
    assert graph_input.name == "images" and graph_input.shape == ["batch", 28, 28]
    for batch in (1, 7):  # traced with 2
        x = random_images(batch)
        (logits,) = session.run(["logits"], {"images": x.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(logits), model(x), rtol=0, atol=1e-5)
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["rnnflow.config"]) == json.loads(
        json.dumps(dataclasses.asdict(checkpoint.config))
    )
    assert json.loads(meta["rnnflow.class_names"])[0] == "T-shirt/top"


@pytest.mark.filterwarnings(JIT_LOAD_DEPRECATED)
@pytest.mark.parametrize("name", ["tutorial", "gru-bidirectional"])
def test_torchscript_export_matches_pytorch_at_any_batch_size(runs, name, tmp_path, capsys):
    out = tmp_path / "model.pt"
    assert main(["export", str(runs[name]), "--format", "torchscript", "--out", str(out)]) == 0
    assert "argmax agreement 60/60" in capsys.readouterr().out
    model, _ = load_trained_model(runs[name])
    extra = {"rnnflow.json": ""}
    module = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["rnnflow.json"])["rnnflow.output"] == "logits float32 [batch, 10]"
    for batch in (1, 7):
        x = random_images(batch)
        with torch.no_grad():
            torch.testing.assert_close(module(x), model(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cell": "rnn"},
        {"cell": "lstm", "num_layers": 2, "dropout": 0.3},
        {"cell": "gru", "bidirectional": True, "num_layers": 2},
        {"cell": "lstm", "bidirectional": True, "projection_size": 5},
    ],
)
def test_traceable_forward_is_the_classifier_without_lengths(kwargs):
    model = SequenceClassifier(num_units=8, **kwargs).double().eval()
    x = random_images(3).double()
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(TraceableClassifier(model)(x), expected, rtol=1e-12, atol=1e-12)
        full = torch.full((3,), 28)  # the lengths-free call is the all-rows-full call
        torch.testing.assert_close(model(x, full), expected, rtol=1e-12, atol=1e-12)


def test_a_failed_check_writes_nothing(runs, tmp_path, capsys, monkeypatch):
    needs_onnxruntime()
    import rnnflow.interop.onnx as onnx_module

    real = onnx_module.onnx_logits
    monkeypatch.setattr(onnx_module, "onnx_logits", lambda *a, **k: real(*a, **k) + 1e-3)
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous")
    assert main(["export", str(runs["lstm"]), "--format", "onnx", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    bound = float(re.search(r"rounding-error bound (\S+) ", captured.out)[1])
    assert 0 < bound < 1e-4  # a 16-unit LSTM's logits: float32 errors far below the 1e-3 shift
    assert re.search(
        r"max \|onnxruntime - pytorch\| = 0\.001 .* NOT within atol \S+ \+ rtol 0 ", captured.out
    )
    assert re.search(
        r"rnnflow export: the exported model's logits differ from PyTorch's by more than atol "
        rf"\S+ \+ rtol 0 \* \|logit\|; nothing was written to {re.escape(str(out))}\. .*export "
        r"bug.*rerun with --atol 0\.0011 \(and --rtol R",
        captured.err,
    )
    assert out.read_bytes() == b"previous"


@pytest.mark.parametrize(
    ("flags", "written"),
    [
        (["--atol", "2e-3"], True),  # a fixed tolerance above the 1e-3 shift accepts it
        (["--atol", "5e-4"], False),
        (["--rtol", "2e-3"], True),  # logits scaled by 1 + 1e-3: within 2e-3 * |logit|
        (["--rtol", "5e-4"], False),
        (["--atol", "0", "--rtol", "0"], False),
    ],
)
def test_atol_and_rtol_replace_the_computed_tolerance(runs, tmp_path, capsys, monkeypatch, flags,
                                                      written):  # fmt: skip
    needs_onnxruntime()
    import rnnflow.interop.onnx as onnx_module

    real = onnx_module.onnx_logits
    if "--atol" in flags:  # a shift: only an absolute tolerance accepts it
        shifted = lambda *a, **k: real(*a, **k) + 1e-3  # noqa: E731
    else:  # a relative change, no shift: a relative tolerance accepts it
        shifted = lambda *a, **k: real(*a, **k) * (1 + 1e-3)  # noqa: E731
    monkeypatch.setattr(onnx_module, "onnx_logits", shifted)
    out = tmp_path / "model.onnx"
    status = main(["export", str(runs["lstm"]), "--format", "onnx", "--out", str(out), *flags])
    captured = capsys.readouterr()
    text = captured.out
    assert "rounding-error bound" not in text  # the fixed rule replaces the computed one
    atol = float(flags[flags.index("--atol") + 1]) if "--atol" in flags else 0.0
    rtol = float(flags[flags.index("--rtol") + 1]) if "--rtol" in flags else 0.0
    assert re.search(rf"within atol {atol:.3g} \+ rtol {rtol:.3g} \* \|logit\|", text), text
    assert (status, out.exists()) == ((0, True) if written else (1, False))
    if not written:
        assert re.search(
            r"To accept it, rerun with --atol \S+ \(and --rtol R to add R \* \|logit\|\), or "
            r"without --atol/--rtol to use this model's float32 rounding bound",
            captured.err,
        )


def test_rounding_bound_of_one_product_is_the_hand_computed_one():
    u = FLOAT32_UNIT_ROUNDOFF
    x = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.25, -4.0], [2.0, 0.0, -1.0]], dtype=torch.float64)
    w = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [2.0, -3.0]], dtype=torch.float64)  # [3, C=2]

    class Product(torch.nn.Module):
        def forward(self, images):
            return images @ w  # one rounded operation: 3 terms, rounded twice

    terms = torch.tensor(
        [[1 + 2 + 6, 2 + 1 + 9], [0.5 + 0.25 + 8, 1 + 0.125 + 12], [4, 7]], dtype=torch.float64
    )  # |x| @ |w|
    expected = 7 * 3**0.5 * u * terms  # confidence * sqrt(n) * u * (|x| @ |w|)
    torch.testing.assert_close(_chunk_bound(Product(), x, 7.0), expected, rtol=1e-12, atol=0)

    class Squashed(torch.nn.Module):
        def forward(self, images):
            return torch.tanh(images @ w)  # tanh: 4 ulp = 8u of its result

    y = torch.tanh(x @ w)
    expected = 2 * ((1 - y**2) ** 2 * (3**0.5 * u * terms) ** 2 + (8 * u * y.abs()) ** 2).sqrt()
    torch.testing.assert_close(_chunk_bound(Squashed(), x, 2.0), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cell": "rnn", "init": "normal", "num_units": 32},  # the tutorial's large logits
        {"cell": "lstm", "num_layers": 2, "dropout": 0.3},
        {"cell": "gru", "bidirectional": True},
        {"cell": "lstm", "bidirectional": True, "projection_size": 5},
    ],
)
def test_rounding_bound_covers_float32_error_and_is_not_vacuous(kwargs):
    torch.manual_seed(0)
    model = SequenceClassifier(**{"num_units": 12, **kwargs}).eval()
    x = random_images(37)
    bound = rounding_error_bound(model, x)  # [37, 10]
    with torch.no_grad():
        float32 = model(x).double()
        exact = TraceableClassifier(SequenceClassifier(**{"num_units": 12, **kwargs}).double())
        exact.model.load_state_dict(model.state_dict())
        exact = exact(x.double())
    ratio = (float32 - exact).abs() / bound
    assert ratio.max() <= 1  # the float32 result is within the bound of the exact one
    assert ratio.max() > 1e-3  # and the bound is within 1000x of the largest error seen


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "pb"], r"--format must be one of onnx, torchscript, got 'pb'"),
        (["--format", "onnx", "--rtol", "-1"], r"--rtol must be a finite number >= 0, got -1\.0"),
        (["--format", "onnx", "--out", "{tmp}"], r"cannot write .*: it is a folder"),
        (["--format", "onnx", "--out", "{tmp}/file/m.onnx"],
         r"cannot write .*m\.onnx: .*file is not a folder"),
    ],
)  # fmt: skip
def test_cli_refusals(runs, tmp_path, capsys, args, message):
    """Usage errors (a value, a path of the wrong kind): exit status 2, nothing written. A
    missing parent folder is created instead (tests/cli/test_consistency.py)."""
    (tmp_path / "file").write_text("x")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "m.onnx")]
    assert main(["export", str(runs["tutorial"]), *args]) == 2
    err = capsys.readouterr().err
    assert re.search(r"^rnnflow export: " + message, err), err
    assert not (tmp_path / "m.onnx").exists()


def test_missing_run_dir(tmp_path, capsys):
    needs_onnxruntime()
    missing = tmp_path / "no-run"
    assert main(["export", str(missing), "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    assert re.search(rf"^rnnflow export: .*{re.escape(str(missing))}", capsys.readouterr().err)


def test_unwritable_out_keeps_nothing(runs, tmp_path, capsys, monkeypatch):
    needs_onnxruntime()
    import rnnflow._atomic as atomic_module

    def refuse(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(atomic_module, "atomic_write_bytes", refuse)
    out = tmp_path / "m.onnx"
    assert main(["export", str(runs["tutorial"]), "--format", "onnx", "--out", str(out)]) == 1
    assert re.search(
        rf"rnnflow export: cannot write {re.escape(str(out))}: \[Errno 13\] Permission denied",
        capsys.readouterr().err,
    )
    assert not out.exists()


def test_library_errors(monkeypatch):
    with pytest.raises(TypeError, match=r"model must be a SequenceClassifier, got Linear"):
        TraceableClassifier(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"expected shape \(2, 10\), got \(2, 9\)"):
        compare_logits(torch.zeros(2, 10), torch.zeros(2, 9), atol=0, rtol=0)
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    from rnnflow.interop.onnx import to_onnx

    with pytest.raises(
        ImportError, match=r"needs the onnx package; .*pip install 'rnnflow\[export\]'"
    ):
        to_onnx(SequenceClassifier(num_units=4))


@pytest.mark.parametrize(
    ("atol", "rtol", "expected"),
    [
        (None, None, (1e-4, 2e-4)),  # the task's own tolerance
        (0.5, None, (0.5, 0.0)),  # --atol alone: a purely absolute tolerance
        (None, 0.25, (1e-4, 0.25)),  # --rtol alone replaces only the relative part
        (0.5, 0.25, (0.5, 0.25)),
    ],
)
def test_fixed_tolerance_of_the_sequence_and_text_exports(atol, rtol, expected):
    """--atol/--rtol over a task's fixed export tolerance (sequence and text-classify runs)."""
    import argparse

    from rnnflow.cli.export import fixed_tolerance

    args = argparse.Namespace(atol=atol, rtol=rtol)
    assert fixed_tolerance(args, 1e-4, 2e-4) == expected
