"""Export a trained SequenceClassifier to TorchScript, and run the file with ``torch.jit.load``.

The module's ``forward(images)`` maps float32 [batch, 28, 28] to logits float32
[batch, num_classes], any batch size. It is :class:`~rnnflow.interop._traceable.TraceableClassifier`
traced by ``torch.jit.trace`` (the reference loop unrolled over the 28 rows), so it loads in
C++ (libtorch) or Python without rnnflow. PyTorch has deprecated TorchScript (2.13 warns on
``torch.jit.trace/save/load``); prefer ONNX for new deployments. ``metadata`` is stored as the
extra file ``rnnflow.json`` (``torch.jit.load(path, _extra_files={"rnnflow.json": ""})``).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping

import torch
from torch import Tensor

from rnnflow._atomic import atomic_write_bytes
from rnnflow.interop._traceable import TraceableClassifier, quiet_tracing
from rnnflow.models.classifier import SequenceClassifier

__all__ = [
    "METADATA_FILE",
    "export_torchscript",
    "load_torchscript",
    "to_torchscript",
    "torchscript_logits",
]

METADATA_FILE = "rnnflow.json"


def to_torchscript(
    model: SequenceClassifier, *, metadata: Mapping[str, str] | None = None
) -> bytes:
    """The serialized TorchScript module of ``model``'s forward, traced in eval mode on a CPU
    batch of 2 zero images; ``model`` is left as it was."""
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"to_torchscript: model must be on the CPU, got parameters on {device}")
    traceable = TraceableClassifier(model)
    example = torch.zeros(2, model.input_size, model.input_size)  # [B, T, D]; T = D = 28 rows
    buffer = io.BytesIO()
    with quiet_tracing(), torch.no_grad():
        traced = torch.jit.trace(traceable, (example,), check_trace=False)
        extra = {METADATA_FILE: json.dumps(dict(metadata or {}))}
        torch.jit.save(traced, buffer, _extra_files=extra)
    return buffer.getvalue()


def export_torchscript(
    model: SequenceClassifier,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write :func:`to_torchscript`'s bytes to ``path`` atomically (temp file + ``os.replace``)."""
    atomic_write_bytes(path, to_torchscript(model, metadata=metadata))


def load_torchscript(model: bytes | str | os.PathLike[str]) -> torch.jit.ScriptModule:
    """``torch.jit.load`` of an exported model (bytes or a path) on the CPU, in eval mode."""
    source = io.BytesIO(model) if isinstance(model, bytes) else os.fspath(model)
    with quiet_tracing():
        module = torch.jit.load(source, map_location="cpu")
    return module.eval()


def torchscript_logits(
    model: bytes | str | os.PathLike[str], images: Tensor, *, batch_size: int = 1000
) -> Tensor:
    """Logits float32 [N, C] of an exported model for ``images`` [N, 28, 28], ``batch_size``
    images at a time."""
    module = load_torchscript(model)
    x = images.detach().to("cpu", torch.float32)
    with torch.no_grad():
        parts = [module(x[lo : lo + batch_size]) for lo in range(0, len(x), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, 0)  # [N, C]
