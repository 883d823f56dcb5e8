"""ONNX export of a text classifier: onnxruntime's logits equal PyTorch's for texts of every
length with garbage past each length, at batch sizes other than the traced one."""

from __future__ import annotations

import pytest
import torch

from rnnflow.models.text_classifier import TextClassifier

pytest.importorskip("onnx", reason="needs the export extra")
pytest.importorskip("onnxruntime", reason="needs the export extra")

VOCAB, MAX_CHARS = 11, 7


@pytest.mark.parametrize("pooling", ["last", "max"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_onnxruntime_equals_pytorch_on_padded_texts(pooling: str, bidirectional: bool) -> None:
    from rnnflow.interop.text_onnx import onnx_text_logits, text_to_onnx

    torch.manual_seed(0)
    model = TextClassifier(
        vocab_size=VOCAB, num_classes=3, embedding_size=5, num_units=4, pooling=pooling,  # type: ignore[arg-type]
        bidirectional=bidirectional, dropout=0.5, embedding_dropout=0.5,
    ).eval()  # fmt: skip
    data = text_to_onnx(model, max_chars=MAX_CHARS, metadata={"rnnflow.task": "text-classify"})
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([1, 7, 3, 5, 2])
    tokens = torch.randint(0, VOCAB, (5, MAX_CHARS), generator=g)
    got = onnx_text_logits(data, tokens, lengths)
    with torch.no_grad():  # the truth: each text alone, exactly its length, in PyTorch
        want = torch.cat(
            [
                model(tokens[i : i + 1, :n], lengths[i : i + 1])
                for i, n in enumerate(lengths.tolist())
            ]
        )
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    garbage = tokens.clone()
    garbage[torch.arange(MAX_CHARS)[None, :] >= lengths[:, None]] = VOCAB - 1
    torch.testing.assert_close(onnx_text_logits(data, garbage, lengths, batch_size=2), got)


def test_text_to_onnx_refuses_bad_arguments() -> None:
    from rnnflow.interop.text_onnx import TraceableTextClassifier, text_to_onnx

    model = TextClassifier(vocab_size=VOCAB, num_classes=2, embedding_size=3, num_units=2)
    with pytest.raises(ValueError, match=r"text_to_onnx: max_chars must be an int >= 1, got 0"):
        text_to_onnx(model, max_chars=0)
    with pytest.raises(
        TypeError, match=r"TraceableTextClassifier: model must be a TextClassifier, got Linear"
    ):
        TraceableTextClassifier(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
