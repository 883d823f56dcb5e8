"""Export a text classifier to ONNX with its token ids and lengths, and run it.

The graph (opset 17)::

    tokens          int64 [batch, max_chars]   character ids (the run's vocab.json), padded past
                                               each length with any id in [0, vocab size)
    sequence_length int64 [batch]              1 <= length <= max_chars
      -> logits     float32 [batch, num_classes]

Inside: the embedding (a Gather), then :class:`~rnnflow.models.text_classifier.TextClassifier`'s
computation with ``sequence_length`` exactly as PyTorch runs it: the reference loop unrolled over
``max_chars`` steps, outputs zero and state carried past each length (TF1's ``dynamic_rnn``), the
backward direction reading each row reversed within its length (``tf.reverse_sequence``), then
the pooling (last valid outputs, or the maximum over the valid steps) and the output layer.
Values past a row's length never change its logits; ``batch`` is a dynamic axis, the time axis
is fixed at ``max_chars`` (tracing unrolls the loop): pad shorter texts to it.

Needs ``onnx`` and ``onnxruntime`` (``pip install 'rnnflow[export]'``), imported when used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from rnnflow.interop._inputs import check_batch_size, length_inputs, token_inputs
from rnnflow.interop._onnx_run import initializer_shape, open_session, run_batches
from rnnflow.interop._traceable import pooled_features
from rnnflow.interop.onnx import OPSET, OUTPUT_NAME, trace_to_onnx
from rnnflow.models.text_classifier import TextClassifier

__all__ = [
    "LENGTHS_NAME",
    "TOKENS_NAME",
    "TraceableTextClassifier",
    "onnx_text_logits",
    "text_to_onnx",
]

TOKENS_NAME = "tokens"
LENGTHS_NAME = "sequence_length"
_TABLE = "model.embedding.weight"  # the embedding's initializer in the graph: [vocab, E]


class TraceableTextClassifier(nn.Module):
    """``TextClassifier(tokens, sequence_length)`` on the reference loop, for tracing; shares the
    model's parameters and is always in eval mode (no dropout)."""

    def __init__(self, model: TextClassifier) -> None:
        super().__init__()
        if not isinstance(model, TextClassifier):
            raise TypeError(
                f"TraceableTextClassifier: model must be a TextClassifier, got "
                f"{type(model).__name__}"
            )
        self.model = model
        self.eval()

    def train(self, mode: bool = True) -> TraceableTextClassifier:
        return super().train(False)  # an exported graph never drops out

    def forward(self, tokens: Tensor, sequence_length: Tensor) -> Tensor:
        m, c = self.model, self.model.classifier  # c.pooling is m.pooling
        lengths = sequence_length.to(torch.int64)  # [B]
        x = m.embedding(tokens) @ c.weights_in + c.biases_in  # [B, T, P]
        x = x.transpose(0, 1)  # [T, B, P]
        features = pooled_features(c, x, lengths)  # [B, K * F]
        return features @ c.weights_out + c.biases_out  # [B, C]


def text_to_onnx(
    model: TextClassifier,
    *,
    max_chars: int,
    metadata: Mapping[str, str] | None = None,
    opset: int = OPSET,
) -> bytes:
    """The serialized ONNX model (see the module docstring) of a CPU ``model``, its time axis
    fixed at ``max_chars``; ``metadata`` (str -> str) goes to ``metadata_props``. Raises
    ``TypeError`` for a model that is not a TextClassifier or metadata that is not str -> str,
    ``ValueError`` for a model off the CPU or ``max_chars`` < 1, ``ImportError`` naming the
    extra without onnx."""
    traceable = TraceableTextClassifier(model)
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise ValueError(f"text_to_onnx: max_chars must be an int >= 1, got {max_chars!r}")
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"text_to_onnx: model must be on the CPU, got parameters on {device}")
    # lengths max_chars and 1: the trace must not specialise on either
    example = (torch.zeros(2, max_chars, dtype=torch.long), torch.tensor([max_chars, 1]))
    doc = (
        f"rnnflow TextClassifier: {TOKENS_NAME} int64 [batch, {max_chars}] (character ids, "
        f"padded past each length), {LENGTHS_NAME} int64 [batch] in [1, {max_chars}] -> "
        f"{OUTPUT_NAME} float32 [batch, {model.num_classes}]"
    )
    return trace_to_onnx(
        traceable,
        example,
        [TOKENS_NAME, LENGTHS_NAME],
        doc,
        metadata=metadata,
        opset=opset,
        owner="text_to_onnx",
    )


def onnx_text_logits(
    model: bytes | str | os.PathLike[str],
    tokens: Tensor | np.ndarray,
    sequence_length: Tensor | np.ndarray | Sequence[int],
    *,
    batch_size: int = 1000,
) -> Tensor:
    """Logits float32 [N, C] of an exported text model (bytes or a path) for padded ``tokens``
    [N, max_chars] (integer character ids >= 0) and ``sequence_length`` [N] (integers in
    [1, max_chars], as :func:`rnnflow.dynamic_rnn` takes them), by onnxruntime's CPU provider
    ``batch_size`` texts at a time.

    Every argument is checked before anything runs: ``TypeError`` for bool, float or complex
    ids or lengths (never truncated) and other types; ``ValueError`` for another shape, a
    an id outside the model's vocabulary, padding included (a negative one ONNX's Gather would
    read from the end of the table), a length outside [1, max_chars], ``batch_size`` < 1, a
    model onnxruntime cannot read; ``FileNotFoundError`` for a missing model file."""
    owner = "onnx_text_logits"
    batch_size = check_batch_size(owner, batch_size)
    session = open_session(owner, model, [TOKENS_NAME, LENGTHS_NAME], "text_to_onnx")
    max_chars = session.get_inputs()[0].shape[1]  # fixed by text_to_onnx
    table = initializer_shape(owner, model, _TABLE)
    ids = token_inputs(
        owner,
        "tokens",
        tokens,
        [None, max_chars],
        "the exported max_chars",
        vocab=table[0] if table else None,
    )
    lengths = length_inputs(
        owner, sequence_length, batch=len(ids), max_steps=max_chars, axis="max_chars", unit="text"
    )
    return run_batches(session, OUTPUT_NAME, {TOKENS_NAME: ids, LENGTHS_NAME: lengths}, batch_size)
