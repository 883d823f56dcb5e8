"""Export a sequence classifier to ONNX with its lengths and its standardisation, and run it.

The graph (opset 17)::

    series          float32 [batch, max_steps, D]   raw values (as in the training files),
                                                    padded past each length with anything
    sequence_length int64   [batch]                 1 <= length <= max_steps (the domain:
                                                    the graph cannot raise, so a length
                                                    outside it gives meaningless logits or
                                                    an onnxruntime error; check before
                                                    running, as onnx_sequence_logits does)
      -> logits     float32 [batch, num_classes]

Inside: ``(series - mean) / std`` with the run's training statistics, then the classifier with
``sequence_length`` exactly as PyTorch runs it: the reference loop unrolled over ``max_steps``
steps, outputs zero and state carried past each length (TF1's ``dynamic_rnn`` semantics),
the last valid output (and for a bidirectional model the backward direction reading each row
reversed within its length, ``tf.reverse_sequence``) fed to the output layer. So values past a
row's length never change its logits, and ``batch`` is a dynamic axis; the time axis is fixed at
``max_steps`` (tracing unrolls the loop): pad shorter series to it; longer ones cannot be fed.

Needs ``onnx`` and ``onnxruntime`` (``pip install 'rnnflow[export]'``), imported when used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from rnnflow.interop._inputs import check_batch_size, finite_float32, length_inputs, real_inputs
from rnnflow.interop._onnx_run import open_session, run_batches
from rnnflow.interop._traceable import pooled_features
from rnnflow.interop.onnx import OPSET, OUTPUT_NAME, trace_to_onnx
from rnnflow.models.classifier import SequenceClassifier

__all__ = [
    "LENGTHS_NAME",
    "SERIES_NAME",
    "TraceableSequenceClassifier",
    "onnx_sequence_logits",
    "sequence_to_onnx",
]

SERIES_NAME = "series"
LENGTHS_NAME = "sequence_length"


class TraceableSequenceClassifier(nn.Module):
    """``model(standardise(series), sequence_length)`` on the reference loop, for tracing.

        x      = ((series - mean) / std) @ weights_in + biases_in       # [B, T, D] -> [B, T, P]
                 (deltas: model.model_inputs appends the scaled deltas first, [B, T, 2D])
        out    = masked reference loop(cell, x, sequence_length)        # [T, B, H]
        h      = pool_outputs(out, sequence_length, pooling)             # [B, K * H]
        h      = concat(h, fcn(standardised series, sequence_length))   # a conv branch, if any
        logits = h @ weights_out + biases_out                           # [B, C]

    Bidirectional: ``out = cat(out_fw, out_bw)`` where ``out_bw`` is the backward cell's outputs
    over each row reversed within its length, reversed back. ``pool_outputs`` is
    :func:`rnnflow.models.classifier.pool_outputs`, the classifier's own pooling (``last``:
    the forward output at ``len - 1`` and the backward one at step 0; ``mean``, ``max`` or
    their concatenations). A convolutional branch (``conv_branch``, rnnflow.models.fcn) runs as
    in eval mode: its batch norm uses the running statistics.
    Shares ``model``'s parameters; always in eval mode (dropout off).
    """

    def __init__(
        self, model: SequenceClassifier, mean: Sequence[float], std: Sequence[float]
    ) -> None:
        super().__init__()
        if not isinstance(model, SequenceClassifier):
            raise TypeError(
                f"TraceableSequenceClassifier: model must be a SequenceClassifier, got "
                f"{type(model).__name__}"
            )
        if len(mean) != model.input_size or len(std) != model.input_size:
            raise ValueError(
                f"TraceableSequenceClassifier: mean and std must hold {model.input_size} values "
                f"(the model's channels), got {len(mean)} and {len(std)}"
            )
        self.model = model
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32))  # [D]
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32))  # [D]
        self.eval()

    def train(self, mode: bool = True) -> TraceableSequenceClassifier:
        return super().train(False)  # an exported graph never drops out

    def forward(self, series: Tensor, sequence_length: Tensor) -> Tensor:
        m = self.model
        lengths = sequence_length.to(torch.int64)  # [B]
        standardised = (series - self.mean) / self.std  # [B, T, D]
        standardised = m.model_inputs(standardised)  # [B, T, D] (2D with deltas)
        x = (standardised @ m.weights_in + m.biases_in).transpose(0, 1)  # [T, B, P]
        h = pooled_features(m, x, lengths)  # [B, K * F]
        if m.conv_branch != "none":  # eval mode: batch norm is an affine map per channel
            h = torch.cat([h, m.fcn(standardised, lengths)], dim=1)  # [B, K * F + 128]
        return h @ m.weights_out + m.biases_out  # [B, C]


def sequence_to_onnx(
    model: SequenceClassifier,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    max_steps: int,
    metadata: Mapping[str, str] | None = None,
    opset: int = OPSET,
) -> bytes:
    """The serialized ONNX model (see the module docstring) of a CPU ``model`` with the run's
    statistics ``mean``/``std`` (D floats each), its time axis fixed at ``max_steps``.
    ``metadata`` (str -> str) goes to ``metadata_props``. Raises ``TypeError`` for a model
    that is not a SequenceClassifier or metadata that is not str -> str, ``ValueError`` for a
    model off the CPU, ``max_steps`` < 1 or ``mean``/``std`` of another length than the
    model's channels, ``ImportError`` naming the extra without onnx."""
    traceable = TraceableSequenceClassifier(model, mean, std)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"sequence_to_onnx: max_steps must be an int >= 1, got {max_steps!r}")
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"sequence_to_onnx: model must be on the CPU, got parameters on {device}")
    # lengths max_steps and 1: the trace must not specialise on either
    example = (torch.zeros(2, max_steps, model.input_size), torch.tensor([max_steps, 1]))
    doc = (
        f"rnnflow SequenceClassifier ({model.extra_repr()}): {SERIES_NAME} float32 "
        f"[batch, {max_steps}, {model.input_size}] (raw values, padded past each length), "
        f"{LENGTHS_NAME} int64 [batch] in [1, {max_steps}] -> {OUTPUT_NAME} float32 "
        f"[batch, {model.num_classes}]"
    )
    return trace_to_onnx(
        traceable,
        example,
        [SERIES_NAME, LENGTHS_NAME],
        doc,
        metadata=metadata,
        opset=opset,
        owner="sequence_to_onnx",
    )


def onnx_sequence_logits(
    model: bytes | str | os.PathLike[str],
    series: Tensor | np.ndarray,
    sequence_length: Tensor | np.ndarray | Sequence[int],
    *,
    batch_size: int = 1000,
) -> Tensor:
    """Logits float32 [N, C] of an exported sequence model (bytes or a path) for padded raw
    ``series`` [N, max_steps, D] (a tensor or NumPy array of real numbers, unstandardised) and
    ``sequence_length`` [N] (integers, as :func:`rnnflow.dynamic_rnn` takes them), by
    onnxruntime's CPU provider ``batch_size`` series at a time.

    Every argument is checked before anything runs, as ``dynamic_rnn`` checks its lengths:
    ``TypeError`` for bool or float lengths (never truncated), a series of bool or complex
    values, other types; ``ValueError`` for a length outside the graph's domain [1, max_steps]
    (0 or below would give the logits of some other length, one above max_steps an onnxruntime
    error from inside the graph), a series of another shape than the graph's input, a NaN or
    infinite value within a series' length (padding past it may hold anything, NaN too),
    ``batch_size`` < 1, a model onnxruntime cannot read; ``FileNotFoundError`` for a missing
    model file."""
    owner = "onnx_sequence_logits"
    batch_size = check_batch_size(owner, batch_size)
    session = open_session(owner, model, [SERIES_NAME, LENGTHS_NAME], "sequence_to_onnx")
    max_steps, depth = session.get_inputs()[0].shape[1:]  # fixed by sequence_to_onnx
    what = "the exported max_steps and channels"
    raw = real_inputs(owner, "series", series, [None, max_steps, depth], what)
    lengths = length_inputs(owner, sequence_length, batch=len(raw), max_steps=max_steps)
    x = finite_float32(owner, "series", raw, ("step", "channel"), lengths)
    return run_batches(session, OUTPUT_NAME, {SERIES_NAME: x, LENGTHS_NAME: lengths}, batch_size)
