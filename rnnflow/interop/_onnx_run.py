"""Running an exported ONNX model with onnxruntime: the optional imports, the session, the
graph's initializers, the batched run. The argument checks are
:mod:`rnnflow.interop._inputs`'s, shared with the TorchScript runner."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from torch import Tensor

from rnnflow.interop._inputs import read_model, run_in_batches

INSTALL_HINT = "install the export extra: pip install 'rnnflow[export]'"
DESCRIBED = "the ONNX bytes or a path to an .onnx file"


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"rnnflow.interop.onnx: needs the {name} package; {INSTALL_HINT}"
        ) from exc


def open_session(owner: str, model: object, inputs: list[str], exporter: str) -> Any:
    """An onnxruntime CPU session of ``model`` (the serialized bytes or a path), whose graph
    inputs must be ``inputs`` (the names ``exporter`` writes).

    Raises ``TypeError`` for another type, ``FileNotFoundError`` naming a path that is not a
    file, ``ValueError`` for bytes or a file onnxruntime cannot read as a model, or a graph
    with other inputs (another task's export: onnxruntime would only say inputs are missing)."""
    ort = _import("onnxruntime")
    session = read_model(
        owner,
        model,
        kind="ONNX",
        described=DESCRIBED,
        reader=lambda source: ort.InferenceSession(source, providers=["CPUExecutionProvider"]),
    )
    found = [i.name for i in session.get_inputs()]
    if found != inputs:
        raise ValueError(
            f"{owner}: model must be a graph written by {exporter} (inputs {inputs}), got a "
            f"graph with inputs {found}"
        )
    return session


def load_proto(owner: str, model: object) -> Any:
    """The ``onnx.ModelProto`` of ``model`` (the serialized bytes or a path; external data not
    loaded), with :func:`open_session`'s errors."""
    onnx = _import("onnx")
    return read_model(
        owner,
        model,
        kind="ONNX",
        described=DESCRIBED,
        reader=lambda source: (
            onnx.load_model_from_string(source)
            if isinstance(source, bytes)
            else onnx.load(source, load_external_data=False)
        ),
    )


def initializer_shape(owner: str, model: object, name: str) -> list[int] | None:
    """The shape of the graph initializer ``name`` of ``model`` (bytes or a path), or None when
    the graph has none of that name."""
    found = [list(i.dims) for i in load_proto(owner, model).graph.initializer if i.name == name]
    return found[0] if found else None


def run_batches(session: Any, output: str, feeds: dict[str, np.ndarray], batch_size: int) -> Tensor:
    """``output`` of ``session`` over ``feeds`` (arrays with one batch axis N), ``batch_size``
    rows at a time: float32 [N, C] (an empty [0, C] for N = 0)."""
    return run_in_batches(
        lambda part: session.run([output], part)[0],
        feeds,
        batch_size,
        session.get_outputs()[0].shape[1],
    )
