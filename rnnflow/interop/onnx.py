"""Export a trained SequenceClassifier to ONNX, and run the file with onnxruntime.

The graph (opset 17)::

    images float32 [batch, 28, 28]  ->  logits float32 [batch, num_classes]

``batch`` is a dynamic axis. The graph is :class:`~rnnflow.interop._traceable.TraceableClassifier`
traced by PyTorch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``; the
torch.export-based one needs the extra ``onnxscript`` package): the reference loop unrolled over
the 28 rows, about 10-20 nodes per step, no ONNX ``RNN``/``LSTM``/``GRU`` operators (TF1's GRU and
``forget_bias`` LSTM differ from ONNX's). The model's config and class names travel in the file's
``metadata_props`` (``rnnflow.config``, ``rnnflow.class_names``).

Needs the optional packages ``onnx`` and ``onnxruntime`` (``pip install 'rnnflow[export]'``),
imported when used.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from rnnflow._atomic import atomic_write_bytes
from rnnflow.interop._inputs import (
    check_batch_size,
    check_metadata,
    finite_float32,
    real_inputs,
    unit_interval,
)
from rnnflow.interop._onnx_run import _import, load_proto, open_session, run_batches
from rnnflow.interop._traceable import TraceableClassifier, quiet_tracing
from rnnflow.models.classifier import SequenceClassifier

__all__ = [
    "INPUT_NAME",
    "OPSET",
    "OUTPUT_NAME",
    "export_onnx",
    "onnx_logits",
    "onnx_metadata",
    "to_onnx",
    "trace_to_onnx",
]

OPSET = 17  # onnxruntime >= 1.11; the legacy exporter's well-trodden range
INPUT_NAME = "images"
OUTPUT_NAME = "logits"


def to_onnx(
    model: SequenceClassifier,
    *,
    metadata: Mapping[str, str] | None = None,
    opset: int = OPSET,
) -> bytes:
    """The serialized ONNX model of ``model``'s forward (see the module docstring).

    ``metadata`` (str -> str) is stored in the model's ``metadata_props``. The model must be on
    the CPU; it is traced in eval mode with a batch of 2 zero images and left as it was.
    Raises ``TypeError`` for a model that is not a SequenceClassifier or metadata that is not
    str -> str, ``ValueError`` for a model off the CPU, ``ImportError`` naming the extra
    without onnx.
    """
    traceable = TraceableClassifier(model, "to_onnx")
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"to_onnx: model must be on the CPU, got parameters on {device}")
    example = torch.zeros(2, model.input_size, model.input_size)  # [B, T, D]; T = D = 28 rows
    doc = (
        f"rnnflow SequenceClassifier ({model.extra_repr()}): {INPUT_NAME} float32 "
        f"[batch, 28, 28] (rows as time steps, pixels in [0, 1]) -> {OUTPUT_NAME} float32 "
        f"[batch, {model.num_classes}]"
    )
    return trace_to_onnx(
        traceable, (example,), [INPUT_NAME], doc, metadata=metadata, opset=opset, owner="to_onnx"
    )


def trace_to_onnx(
    module: torch.nn.Module,
    example: tuple[Tensor, ...],
    input_names: list[str],
    doc_string: str,
    *,
    metadata: Mapping[str, str] | None = None,
    opset: int = OPSET,
    owner: str = "trace_to_onnx",
) -> bytes:
    """Trace ``module`` on ``example`` with the TorchScript-based exporter (axis 0 of every
    input and of the output ``logits`` dynamic, named "batch"), checked by ``onnx.checker``;
    ``metadata`` (str -> str, else ``TypeError`` naming ``owner``) goes to ``metadata_props``.
    Used by :func:`to_onnx`, the sequence and the text exports."""
    props = check_metadata(owner, metadata)
    onnx = _import("onnx")
    buffer = io.BytesIO()
    batch = {0: "batch"}
    with quiet_tracing(), torch.no_grad():
        torch.onnx.export(
            module,
            example,
            buffer,
            input_names=input_names,
            output_names=[OUTPUT_NAME],
            dynamic_axes={**dict.fromkeys(input_names, batch), OUTPUT_NAME: batch},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load_model_from_string(buffer.getvalue())
    proto.producer_name = "rnnflow"
    proto.doc_string = doc_string
    if props:
        onnx.helper.set_model_props(proto, props)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def export_onnx(
    model: SequenceClassifier,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, str] | None = None,
    opset: int = OPSET,
) -> None:
    """Write :func:`to_onnx`'s bytes to ``path`` atomically (temporary file + ``os.replace``)."""
    atomic_write_bytes(path, to_onnx(model, metadata=metadata, opset=opset))


def onnx_logits(
    model: bytes | str | os.PathLike[str], images: Tensor | np.ndarray, *, batch_size: int = 1000
) -> Tensor:
    """Logits float32 [N, C] of an exported model (bytes or a path) for ``images`` [N, 28, 28]
    (a tensor or NumPy array of real numbers, the graph's height and width), computed by
    onnxruntime's CPU provider ``batch_size`` images at a time.

    Every argument is checked before anything runs: ``FileNotFoundError`` for a missing model
    file, ``ValueError`` for a model onnxruntime cannot read, another shape, a NaN or infinite
    pixel or ``batch_size`` < 1, ``TypeError`` for other types (bool and complex images too)."""
    owner = "onnx_logits"
    batch_size = check_batch_size(owner, batch_size)
    session = open_session(owner, model, [INPUT_NAME], "to_onnx")
    shape = [None, *session.get_inputs()[0].shape[1:]]
    raw = real_inputs(owner, "images", images, shape, "the exported height and width")
    x = unit_interval(
        owner, "images", finite_float32(owner, "images", raw, ("row", "column"), None)
    )
    return run_batches(session, OUTPUT_NAME, {INPUT_NAME: x}, batch_size)  # [N, C]


def onnx_metadata(model: bytes | str | os.PathLike[str]) -> dict[str, str]:
    """The ``metadata_props`` of an exported ONNX model (bytes or a path; ``rnnflow.config`` is
    JSON). Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for one ``onnx``
    cannot read as a model, ``TypeError`` for another type."""
    proto = load_proto("onnx_metadata", model)
    return {p.key: p.value for p in proto.metadata_props}
