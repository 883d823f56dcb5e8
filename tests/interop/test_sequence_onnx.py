"""ONNX export of a sequence classifier: onnxruntime on variable-length, garbage-padded batches
against PyTorch's classifier (standardised by hand) and against the rows cut at their lengths."""

from __future__ import annotations

import pytest
import torch

from rnnflow.models import SequenceClassifier

onnx = pytest.importorskip("onnx", reason="ONNX export needs onnx: pip install 'rnnflow[export]'")
pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime: 'rnnflow[export]'")

from rnnflow.interop.sequence_onnx import (  # noqa: E402
    TraceableSequenceClassifier,
    onnx_sequence_logits,
    sequence_to_onnx,
)

MEAN, STD = [0.5, -1.0, 2.0], [2.0, 0.5, 1.5]
MAX_STEPS = 9


def model(
    cell: str,
    bidirectional: bool,
    layers: int,
    pooling: str = "last",
    conv_branch: str = "none",
    deltas: bool = False,
) -> SequenceClassifier:
    torch.manual_seed(0)
    m = SequenceClassifier(
        input_size=3,
        num_classes=4,
        cell=cell,
        num_units=8,
        num_layers=layers,
        bidirectional=bidirectional,
        init="glorot",
        pooling=pooling,
        conv_branch=conv_branch,  # type: ignore[arg-type]
        deltas=deltas,
    )
    if deltas:
        m.set_delta_standardisation([0.5, 2.0, 1.5], [0.1, -0.2, 0.3])
    with torch.no_grad():  # batch norm's running statistics away from 0 and 1
        for _ in range(3):
            m(3 * torch.randn(5, MAX_STEPS, 3) + 1, torch.tensor([9, 2, 5, 7, 3]))
    return m.eval()


@pytest.mark.parametrize(
    ("cell", "bidirectional", "layers", "pooling", "conv_branch"),
    [
        ("gru", True, 1, "last", "none"),
        ("lstm", False, 2, "last", "none"),
        ("rnn", True, 2, "last", "none"),
        ("gru", False, 1, "mean", "none"),
        ("lstm", True, 1, "mean", "none"),
        ("gru", True, 1, "max", "none"),
        ("gru", True, 1, "last+max", "none"),
        ("rnn", False, 2, "last+mean+max", "none"),
        ("gru", True, 1, "last", "fcn-se"),
        ("lstm", False, 1, "mean", "fcn"),
        ("gru", True, 1, "last", "fcn-se+deltas"),
        ("gru", False, 1, "max", "none+deltas"),
    ],
)
def test_onnxruntime_equals_pytorch_on_variable_lengths(
    cell, bidirectional, layers, pooling, conv_branch
):
    branch, _, deltas = conv_branch.partition("+")
    m = model(cell, bidirectional, layers, pooling, branch, deltas=bool(deltas))
    data = sequence_to_onnx(m, mean=MEAN, std=STD, max_steps=MAX_STEPS, metadata={"k": "v"})
    generator = torch.Generator().manual_seed(1)
    lengths = torch.tensor([9, 1, 4, 7, 2, 5, 9])  # batch 7: not the traced batch of 2
    raw = 3 * torch.randn(7, MAX_STEPS, 3, generator=generator)
    got = onnx_sequence_logits(data, raw, lengths, batch_size=3)
    with torch.no_grad():
        expected = m((raw - torch.tensor(MEAN)) / torch.tensor(STD), lengths)
        # each row alone, cut at its length: what the padding must not change
        alone = torch.cat(
            [
                m((raw[i : i + 1, :n] - torch.tensor(MEAN)) / torch.tensor(STD))
                for i, n in enumerate(lengths.tolist())
            ]
        )
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, alone, rtol=1e-5, atol=1e-5)
    garbage = raw.clone()
    for i, n in enumerate(lengths.tolist()):
        garbage[i, n:] = 1e4 * torch.randn(MAX_STEPS - n, 3, generator=generator)
    assert torch.equal(onnx_sequence_logits(data, garbage, lengths, batch_size=3), got)
    props = {p.key: p.value for p in onnx.load_model_from_string(data).metadata_props}
    assert props == {"k": "v"}


def test_export_errors() -> None:
    m = model("gru", False, 1)
    with pytest.raises(ValueError, match=r"sequence_to_onnx: max_steps must be an int >= 1, got 0"):
        sequence_to_onnx(m, mean=MEAN, std=STD, max_steps=0)
    with pytest.raises(
        ValueError, match=r"mean and std must hold 3 values \(the model's channels\), got 2 and 3"
    ):
        TraceableSequenceClassifier(m, MEAN[:2], STD)
    with pytest.raises(TypeError, match=r"model must be a SequenceClassifier, got Linear"):
        TraceableSequenceClassifier(torch.nn.Linear(2, 2), MEAN, STD)  # type: ignore[arg-type]
