"""Export a trained SequenceClassifier to TorchScript, and run the file with ``torch.jit.load``.

The module's ``forward(images)`` maps float32 [batch, D, D] (D = the model's ``input_size``, 28
for MNIST: D rows of D pixels) to logits float32 [batch, num_classes], any batch size. It is
:class:`~rnnflow.interop._traceable.TraceableClassifier` traced by ``torch.jit.trace`` (the
reference loop unrolled over the D rows), so it loads in C++ (libtorch) or Python without
rnnflow. The row count is fixed by that unrolling and the module itself does not check it: fed
more rows it reads the first D (the backward direction of a bidirectional model the last D) and
returns wrong logits without a word, fed fewer it fails inside the interpreter;
:func:`torchscript_logits` refuses both before running. PyTorch has deprecated TorchScript (2.13
warns on ``torch.jit.trace/save/load``); prefer ONNX for new deployments. ``metadata`` is stored
as the extra file ``rnnflow.json`` (``torch.jit.load(path, _extra_files={"rnnflow.json": ""})``).
"""

from __future__ import annotations

import io
import json
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
    read_model,
    real_inputs,
    run_in_batches,
    unit_interval,
)
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
    batch of 2 zero images [2, D, D] (D = ``model.input_size``); ``model`` is left as it was.

    Raises ``TypeError`` for a model that is not a SequenceClassifier or metadata that is not
    str -> str, ``ValueError`` for a model off the CPU."""
    traceable = TraceableClassifier(model, "to_torchscript")
    extra = {METADATA_FILE: json.dumps(check_metadata("to_torchscript", metadata))}
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"to_torchscript: model must be on the CPU, got parameters on {device}")
    example = torch.zeros(2, model.input_size, model.input_size)  # [B, T, D]; T = D rows
    buffer = io.BytesIO()
    with quiet_tracing(), torch.no_grad():
        traced = torch.jit.trace(traceable, (example,), check_trace=False)
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
    """``torch.jit.load`` of an exported model (bytes or a path) on the CPU, in eval mode.

    Raises ``TypeError`` for another type, ``FileNotFoundError`` for a missing file,
    ``ValueError`` for bytes or a file ``torch.jit.load`` cannot read."""
    return _load("load_torchscript", model)


def _load(owner: str, model: object) -> torch.jit.ScriptModule:
    def read(source: bytes | str) -> torch.jit.ScriptModule:
        with quiet_tracing():
            loaded = torch.jit.load(
                io.BytesIO(source) if isinstance(source, bytes) else source, map_location="cpu"
            )
        return loaded.eval()

    described = "the TorchScript bytes or a path to a TorchScript file (.pt)"
    return read_model(owner, model, kind="TorchScript", described=described, reader=read)


def _traced_sizes(owner: str, module: torch.jit.ScriptModule) -> tuple[int, int]:
    """(D, C) of a module :func:`to_torchscript` wrote: it maps [B, D, D] to [B, C], D the rows
    of ``model.weights_in`` [D, P] (the trace unrolled D rows), C the columns of
    ``model.weights_out`` [F, C]."""
    params = dict(module.named_parameters())
    weights_in, weights_out = params.get("model.weights_in"), params.get("model.weights_out")
    if weights_in is None or weights_out is None:
        raise ValueError(
            f"{owner}: model is not an rnnflow TorchScript export (to_torchscript): it has no "
            f"parameters model.weights_in and model.weights_out"
        )
    return weights_in.shape[0], weights_out.shape[1]


def torchscript_logits(
    model: bytes | str | os.PathLike[str],
    images: Tensor | np.ndarray,
    *,
    batch_size: int = 1000,
) -> Tensor:
    """Logits float32 [N, C] of an exported model (bytes or a path) for ``images`` [N, D, D]
    (a tensor or NumPy array of real numbers; D the rows the trace unrolled, 28 for MNIST),
    computed by the TorchScript interpreter ``batch_size`` images at a time, as
    :func:`rnnflow.interop.onnx.onnx_logits` computes them with onnxruntime.

    Every argument is checked before anything runs, with ``onnx_logits``' wording:
    ``FileNotFoundError`` for a missing model file, ``ValueError`` for a model
    ``torch.jit.load`` cannot read or that ``to_torchscript`` did not write, another shape
    (another number of rows too: the traced module would read the first D and answer without
    a word), a NaN or infinite pixel, one float32 cannot hold, ``batch_size`` < 1 or not an
    int; ``TypeError`` for other types (bool and complex images too)."""
    owner = "torchscript_logits"
    batch_size = check_batch_size(owner, batch_size)
    module = _load(owner, model)
    size, classes = _traced_sizes(owner, module)
    raw = real_inputs(owner, "images", images, [None, size, size], "the exported height and width")
    x = unit_interval(
        owner, "images", finite_float32(owner, "images", raw, ("row", "column"), None)
    )

    def run(part: dict[str, np.ndarray]) -> Tensor:
        return module(torch.from_numpy(part["images"]))  # [rows, C]

    with torch.no_grad():
        return run_in_batches(run, {"images": x}, batch_size, classes)  # [N, C]
