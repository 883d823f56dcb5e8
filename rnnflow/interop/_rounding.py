"""How far a correct float32 evaluation of a model may land from the exact result.

Two correct float32 implementations of one function (PyTorch's fused path, onnxruntime's graph,
a TorchScript module) sum in different orders and use different ``tanh``/``sigmoid``
approximations, so their logits differ by rounding error. How much depends on the model at hand:
the size of its logits, the width of its matrix products, how strongly the recurrence carries an
early error to the end. :func:`rounding_error_bound` computes, for every image and logit, a bound
``E`` on ``|float32 result - exact result|``; two correct implementations then agree to ``2 E``
(what ``rnnflow export`` checks an exported model against).

The method: first-order rounding-error analysis by automatic differentiation (S. Linnainmaa,
"Taylor expansion of the accumulated rounding error", BIT 16 (1976) 146-160; M. Iri, "History of
automatic differentiation and rounding error estimation", in *Automatic Differentiation of
Algorithms*, SIAM 1991, 3-16), with rounding errors treated as independent, mean-zero random
variables (N. J. Higham and T. Mary, "A new approach to probabilistic rounding error analysis",
SIAM J. Sci. Comput. 41 (2019) A2815-A2835). A float32 evaluation equals the exact one with every
operation's result ``v_k`` perturbed by an error ``d_k``, ``|d_k| <= r_k``; to first order

    float32 logit - exact logit = sum_k g_k d_k,        g_k = d logit / d v_k

a sum of independent bounded terms, so by Hoeffding's inequality
``P(|float32 - exact| >= E) <= 2 exp(-confidence**2 / 2)`` (4.6e-11 for the default 7) with

    E = confidence * sqrt(sum_k (g_k r_k)**2)

``u = 2**-24`` is float32's unit roundoff; each operation's ``r_k`` is the standard one (Higham,
*Accuracy and Stability of Numerical Algorithms*, 2nd ed., SIAM 2002, eq. (2.4)):

* ``+ - *`` and friends: ``r = u |v|``; ``tanh``, ``sigmoid``, ``exp`` and other functions that
  libraries approximate: ``r = 4 ulp = 8 u |v|`` (Sleef, behind PyTorch's vectorised CPU kernels,
  documents 1.0 ulp for these; 4 leaves room for onnxruntime's MLAS approximations);
* a matrix product ``A @ B`` (+ bias) with inner size ``n``: each output is a sum of ``n + 1``
  terms, rounded ``n`` times, each time by at most ``u * (|A| @ |B| + |bias|)`` (the sum of
  |terms| bounds every partial sum, in any order or blocking, with or without fused multiply-adds);
  those ``n`` independent errors count as one of range ``r = sqrt(n + 1) u (|A| @ |B| + |bias|)``
  (the same sum of squares in Hoeffding's bound; Higham and Mary's ``sqrt(n) u``);
* data movement (``cat``, ``split``, views, ``where``, ``relu``): exact, ``r = 0``.

The derivatives ``g_k`` and the sums ``|A| @ |B|`` come from running the exported function
(:class:`~rnnflow.interop._traceable.TraceableClassifier`, the reference loop) in float64 on the
same float32 weights and images (float64's own rounding, ``2**-53``, is negligible here), with a
``TorchFunctionMode`` that records every operation. On the tutorial model the float32 errors
actually measured stay 60-400 times below ``E`` (docs/DEPLOYING.md); an export bug (a wrong gate
order, a missing step) moves logits by 1e-2 and more.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from rnnflow.interop._traceable import TraceableClassifier
from rnnflow.models.classifier import SequenceClassifier

__all__ = ["FLOAT32_UNIT_ROUNDOFF", "rounding_error_bound"]

FLOAT32_UNIT_ROUNDOFF = 2.0**-24
_APPROXIMATED_ULPS = 4  # tanh, sigmoid, exp, ...: error allowed, in units in the last place

# Functions whose floating result is one of their inputs' values, unrounded.
_EXACT = {
    "__getitem__", "cat", "chunk", "clone", "contiguous", "detach", "expand", "flip", "movedim",
    "narrow", "new_zeros", "permute", "relu", "reshape", "select", "split", "squeeze", "stack",
    "t", "transpose", "unbind", "unsqueeze", "view", "masked_fill", "where", "zeros_like",
    "new_empty", "abs", "neg", "__neg__", "max", "min", "maximum", "minimum", "clamp",
    "__get__", "to", "float", "double", "type_as",
}  # fmt: skip
_APPROXIMATED = {"tanh", "sigmoid", "exp", "log", "softplus", "log_softmax", "softmax", "erf"}
_MATMUL = {"addmm", "matmul", "__matmul__", "__rmatmul__", "mm", "linear", "bmm"}
_CHUNK = 211  # images per float64 pass (its graph holds every step's intermediates)


def _name(func: Callable[..., Any]) -> str:
    return getattr(func, "__name__", "")


class _RoundingRecorder(TorchFunctionMode):
    """Adds a zero ``p_k`` (requires grad) to every rounded result ``v_k`` and keeps ``r_k``."""

    def __init__(self, batch: int) -> None:
        super().__init__()
        self.batch = batch
        self.records: list[tuple[Tensor, Tensor, int | None]] = []  # (p_k, r_k, batch dim)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = _name(func)
        if not isinstance(out, Tensor) or not out.is_floating_point() or name in _EXACT:
            return out
        with torch.no_grad():
            if name in _MATMUL:
                bound = self._matmul_bound(name, args, kwargs)
            else:
                ulps = _APPROXIMATED_ULPS * 2 if name in _APPROXIMATED else 1
                bound = ulps * FLOAT32_UNIT_ROUNDOFF * out.abs()
        if bound is None:
            return out
        batch_dims = [d for d, size in enumerate(out.shape) if size == self.batch]
        if len(batch_dims) > 1:
            raise _AmbiguousBatch
        p = torch.zeros_like(out, requires_grad=True)
        self.records.append((p, bound.expand_as(out), batch_dims[0] if batch_dims else None))
        return out + p

    @staticmethod
    def _matmul_bound(name: str, args: tuple, kwargs: dict) -> Tensor | None:
        if name == "addmm":
            bias, a, b = args[:3]
        elif name == "linear":
            a, w = args[:2]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            b = w.t()
        else:
            a, b = args[:2]
            bias = None
        if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
            return None
        n = a.shape[-1] + (bias is not None)
        terms = a.abs() @ b.abs()
        if bias is not None:
            terms = terms + bias.abs()
        return math.sqrt(n) * FLOAT32_UNIT_ROUNDOFF * terms


class _AmbiguousBatch(Exception):
    """Some intermediate has two axes as long as the chunk: retry with another chunk size."""


def _per_image(values: Tensor, batch_dim: int | None, batch: int) -> Tensor:
    """Sums of ``values`` [C, *shape] per class and image: [C, batch]."""
    classes = values.shape[0]
    if batch_dim is None:  # an operation on weights alone: charged to every image in full
        return values.reshape(classes, -1).sum(1, keepdim=True).expand(classes, batch)
    return values.movedim(batch_dim + 1, 1).reshape(classes, batch, -1).sum(2)


def _primes_from(n: int) -> Iterator[int]:
    """Primes >= n, ascending: chunk sizes unlikely to equal one of the model's dimensions."""
    while True:
        if n > 1 and all(n % d for d in range(2, math.isqrt(n) + 1)):
            yield n
        n += 1


def _chunk_bound(model: nn.Module, images: Tensor, confidence: float) -> Tensor:
    """``E`` [B, C] for one chunk of float64 images [B, T, D]."""
    batch = images.shape[0]
    recorder = _RoundingRecorder(batch)
    with torch.enable_grad():
        with recorder:
            logits = model(images)  # [B, C]
        records = recorder.records
        classes = logits.shape[1]
        # d logits[:, c] / d v_k for every class c at once: a batch of C backward passes
        seeds = torch.eye(classes, dtype=logits.dtype).unsqueeze(1).expand(classes, batch, classes)
        grads = torch.autograd.grad(
            logits,
            [p for p, _, _ in records],
            grad_outputs=seeds,
            is_grads_batched=True,
            allow_unused=True,
        )  # each [C, *v_k.shape]
    variance = torch.zeros(classes, batch, dtype=torch.float64)  # [C, B]
    for g, (_, r, batch_dim) in zip(grads, records):
        if g is not None:
            variance += _per_image((g * r).square(), batch_dim, batch)  # g: [C, *v_k.shape]
    return confidence * variance.sqrt().t()  # [B, C]


def rounding_error_bound(
    model: SequenceClassifier, images: Tensor, *, confidence: float = 7.0
) -> Tensor:
    """First-order bound ``E`` [N, C] on ``|float32 logits - exact logits|`` (module docstring).

    Args:
        model: the classifier (float32 weights; any device; not modified).
        images: float32 [N, T, D], the images the logits are computed for.

    Returns:
        float64 [N, C], >= 0: for image ``i`` and class ``c``, how far a correct float32
        evaluation of ``model(images)[i, c]`` may be from the exact value (first order in ``u``).
    """
    model64 = TraceableClassifier(copy.deepcopy(model).to("cpu", torch.float64))
    for parameter in model64.parameters():
        parameter.requires_grad_(False)
    x = images.detach().to("cpu", torch.float64)  # [N, T, D]
    parts = []
    lo = 0
    primes = _primes_from(min(len(x), _CHUNK))
    chunk = next(primes)
    while lo < len(x):
        part = x[lo : lo + chunk]
        pad = chunk - len(part)  # a short last chunk is padded to the chosen size
        if pad:
            part = torch.cat([part, part.new_zeros(pad, *part.shape[1:])])
        try:
            parts.append(_chunk_bound(model64, part, confidence)[: chunk - pad])
        except _AmbiguousBatch:
            chunk = next(primes)  # a model dimension equals the chunk size: choose another
            continue
        lo += chunk
    if not parts:
        return torch.zeros(0, model.num_classes, dtype=torch.float64)
    return torch.cat(parts)  # [N, C]
