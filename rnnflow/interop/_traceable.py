"""What the ONNX and TorchScript exporters share: a traceable forward and the logits check.

``SequenceClassifier.forward`` dispatches through ``dynamic_rnn(impl="auto")``, whose fused path
uses custom autograd Functions and a C++ extension that no tracer can see into. The exporters
trace :class:`TraceableClassifier` instead: the same parameters, the same function (the
classifier without ``sequence_length``, as ``rnnflow evaluate`` and ``predict`` call it), on the
reference loop, unrolled over T = 28 steps.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnnflow import _nest
from rnnflow.models.classifier import SequenceClassifier, pool_outputs
from rnnflow.recurrence._masking import reverse_sequence
from rnnflow.recurrence.reference import reference_dynamic_rnn

__all__ = [
    "ExportCheck",
    "TraceableClassifier",
    "compare_logits",
    "pooled_features",
    "pytorch_logits",
    "quiet_tracing",
    "run_reference",
]


class TraceableClassifier(nn.Module):
    """``SequenceClassifier.forward(images)`` (no ``sequence_length``) on the reference loop.

        x      = images @ weights_in + biases_in            # [B, T, D] -> [B, T, P]
        x      = x.transpose(0, 1)                          # [T, B, P]
        out, _ = reference loop(cell, x, zero state)        # [T, B, H]
        h      = out[T - 1]                                 # [B, H]
        logits = h @ weights_out + biases_out               # [B, C]

    Bidirectional: ``h = cat(out_fw[T - 1], out_bw_reversed[T - 1])`` ([B, 2H]), i.e. the
    classifier's ``cat(out_fw[:, T - 1], out_bw[:, 0])``. The zero state is built from the input
    (``x.new_zeros(B, size)``), so a traced graph keeps the batch axis dynamic.

    Shares ``model``'s parameters (no copy); always runs in eval mode (dropout off).
    """

    def __init__(self, model: SequenceClassifier, owner: str = "TraceableClassifier") -> None:
        super().__init__()
        if not isinstance(model, SequenceClassifier):
            raise TypeError(
                f"TraceableClassifier: model must be a SequenceClassifier, "
                f"got {type(model).__name__}"
            )
        options = [
            f"{name}={value!r}"
            for name, value, plain in (
                ("pooling", model.pooling, "last"),
                ("conv_branch", model.conv_branch, "none"),
                ("deltas", model.deltas, False),
            )
            if value != plain
        ]
        if options:  # this graph reads the last step's h only: it would answer wrongly
            raise ValueError(
                f"{owner}: the image export runs the last step's output only, got a model "
                f"with {', '.join(options)}: export it with "
                f"rnnflow.interop.sequence_onnx.sequence_to_onnx, which runs them"
            )
        self.model = model
        self.eval()

    def train(self, mode: bool = True) -> TraceableClassifier:
        return super().train(False)  # an exported graph never drops out

    def forward(self, images: Tensor) -> Tensor:
        m = self.model
        x = (images @ m.weights_in + m.biases_in).transpose(0, 1)  # [T, B, P]
        if m.bidirectional:
            out_fw = run_reference(m.cell_fw, x)  # [T, B, H]
            out_bw_rev = run_reference(m.cell_bw, x.flip(0))  # [T, B, H], step t = input step T-1-t
            h = torch.cat([out_fw[-1], out_bw_rev[-1]], dim=1)  # [B, 2H]
        else:
            h = run_reference(m.cell, x)[-1]  # [B, H]
        return h @ m.weights_out + m.biases_out  # [B, C]


def run_reference(cell: nn.Module, x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """The reference loop over time-major ``x`` [T, B, P] from a zero state, masked past each of
    ``lengths`` [B] int64 when given (outputs zero, state carried): outputs [T, B, H]."""
    batch = x.shape[1]  # traced as a size, not a constant
    state = _nest.map_structure(lambda size: x.new_zeros(batch, size), cell.state_size)
    outputs, _ = reference_dynamic_rnn(cell, x, lengths, state)
    return outputs


def pooled_features(model: SequenceClassifier, x: Tensor, lengths: Tensor) -> Tensor:
    """``model``'s recurrent features of the projected, time-major ``x`` [T, B, P] with
    ``lengths`` [B] int64, on the masked reference loop: [B, K * F] (F = H, 2H bidirectional).

    Bidirectional: ``cat(out_fw, out_bw)`` where ``out_bw`` is the backward cell's outputs over
    each row reversed within its length (``tf.reverse_sequence``), reversed back; then
    :func:`rnnflow.models.classifier.pool_outputs`, the classifier's own pooling (``last``: the
    forward output at ``len - 1`` and the backward one at step 0; ``mean``, ``max`` or their
    concatenations)."""
    if model.bidirectional:
        out_fw = run_reference(model.cell_fw, x, lengths)  # [T, B, H]
        out_bw_rev = run_reference(model.cell_bw, reverse_sequence(x, lengths), lengths)
        out = torch.cat([out_fw, reverse_sequence(out_bw_rev, lengths)], dim=2)  # [T, B, 2H]
    else:
        out = run_reference(model.cell, x, lengths)  # [T, B, H]
    return pool_outputs(
        out.transpose(0, 1),  # [B, T, F]
        lengths,
        pooling=model.pooling,
        backward_units=model.num_units if model.bidirectional else 0,
    )  # [B, K * F]


@contextlib.contextmanager
def quiet_tracing() -> Iterator[None]:
    """Silence the warnings that tracing this model is known to raise, and only those.

    * ``TracerWarning``: the cells' input checks compare shapes in Python (depth == 28, state
      batch == input batch, T != 0). They hold for every batch size, so freezing them into the
      graph changes nothing; the tests run exported graphs at batch sizes other than the traced
      one to prove it.
    * PyTorch's deprecation notices for the TorchScript-based ONNX exporter and for
      ``torch.jit.trace/save/load`` (see docs/DEPLOYING.md for why we use them).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        for message in (
            r"You are using the legacy TorchScript-based ONNX export",
            r"The feature will be removed\. Please remove usage of this function",
            r"`torch\.jit\.(trace|trace_method|save|load)` is deprecated",
        ):
            warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
        yield


def pytorch_logits(model: nn.Module, *inputs: Tensor, batch_size: int = 1000) -> Tensor:
    """``model(*inputs)`` float32 [N, C] in eval mode without gradients, ``batch_size`` rows of
    every input at a time (the same call ``rnnflow evaluate`` makes, before its softmax): images
    [N, 28, 28], or a padded batch and its lengths [N]."""
    was_training = model.training
    model.eval()
    n = len(inputs[0])
    try:
        with torch.no_grad():
            parts = [
                model(*(x[lo : lo + batch_size] for x in inputs)) for lo in range(0, n, batch_size)
            ]
    finally:
        model.train(was_training)
    return torch.cat(parts).float()  # [N, C]


@dataclass(frozen=True)
class ExportCheck:
    """How closely an exported model's logits follow PyTorch's on the same images."""

    examples: int
    max_abs_diff: float  # max |actual - expected|
    max_abs_logit: float  # max |expected|: float32's spacing there bounds what is achievable
    argmax_agreement: float  # fraction of images whose predicted class is the same
    atol: float
    rtol: float
    passed: bool  # every |actual - expected| <= atol + rtol * |expected|

    def describe(self, runtime: str, unit: str = "images") -> str:
        """One line: 'max |onnxruntime - pytorch| = ... on N ``unit``; argmax agreement ...'."""
        verdict = "within" if self.passed else "NOT within"
        agree = round(self.argmax_agreement * self.examples)
        return (
            f"max |{runtime} - pytorch| = {self.max_abs_diff:.3g} on {self.examples} {unit} "
            f"(largest |logit| {self.max_abs_logit:.3g}; {verdict} atol {self.atol:.3g} + rtol "
            f"{self.rtol:.3g} * |logit|); argmax agreement {agree}/{self.examples} "
            f"({100 * self.argmax_agreement:.2f}%)"
        )


def compare_logits(expected: Tensor, actual: Tensor, *, atol: float, rtol: float) -> ExportCheck:
    """Compare ``actual`` [N, C] logits with PyTorch's ``expected`` [N, C] elementwise:
    passed when every ``|actual - expected| <= atol + rtol * |expected|`` and ``actual`` is
    finite (``rnnflow.interop._rounding`` gives ``atol`` for the model at hand)."""
    if expected.shape != actual.shape:
        raise ValueError(
            f"compare_logits: actual logits must have the expected shape "
            f"{tuple(expected.shape)}, got {tuple(actual.shape)}"
        )
    for name, value in (("atol", atol), ("rtol", rtol)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ValueError(f"compare_logits: {name} must be a finite float >= 0, got {value!r}")
    expected, actual = expected.double(), actual.double()
    n = expected.shape[0]
    if n == 0:
        return ExportCheck(0, 0.0, 0.0, 1.0, atol, rtol, True)
    diff = (actual - expected).abs()  # [N, C]
    passed = bool((diff <= atol + rtol * expected.abs()).all()) and bool(actual.isfinite().all())
    return ExportCheck(
        examples=n,
        max_abs_diff=float(diff.max()),
        max_abs_logit=float(expected.abs().max()),
        argmax_agreement=float((actual.argmax(1) == expected.argmax(1)).double().mean()),
        atol=float(atol),
        rtol=float(rtol),
        passed=passed,
    )
