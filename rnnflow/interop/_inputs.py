"""The argument checks every exported-model runner shares (``onnx_logits``,
``onnx_sequence_logits``, ``onnx_text_logits``, ``torchscript_logits``, and the loaders), made
before anything runs, and the batched run itself.

Each check names the calling function and the argument, the expected and the actual value, so a
bad argument never reaches onnxruntime or the TorchScript interpreter (whose errors name
neither) or, worse, runs: a float length would be truncated, a negative token id wraps around in
ONNX's ``Gather``, a NaN series gives NaN logits, a TorchScript image with more rows than the
trace unrolled is cut to them without a word.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TypeVar, cast

import numpy as np
import torch
from torch import Tensor

from rnnflow.recurrence._masking import check_sequence_length

T = TypeVar("T")


def read_model(
    owner: str, model: object, *, kind: str, described: str, reader: Callable[[bytes | str], T]
) -> T:
    """``reader(source)`` for ``model``: the serialized bytes or a path to a file (``source``
    is the bytes or the path as a str); ``kind`` ("ONNX", "TorchScript") and ``described``
    ("the ONNX bytes or a path to an .onnx file") word the errors.

    Raises ``TypeError`` for another type, ``FileNotFoundError`` naming a path that is not a
    file, ``ValueError`` for bytes or a file ``reader`` cannot read (any exception it raises)."""
    if isinstance(model, bytes):
        source: bytes | str = model
        what = f"the {len(model)} bytes given"
    elif isinstance(model, (str, os.PathLike)):
        source = os.fspath(model)
        if not isinstance(source, str):
            raise TypeError(f"{owner}: model must be {described}, got the bytes path {source!r}")
        if not os.path.isfile(source):
            raise FileNotFoundError(f"{owner}: model {source!r}: no such file")
        what = repr(source)
    else:
        raise TypeError(f"{owner}: model must be {described}, got {type(model).__name__}")
    try:
        return reader(source)
    except Exception as exc:  # onnxruntime's and TorchScript's errors derive from Exception only
        raise ValueError(f"{owner}: model {what} is not a readable {kind} model: {exc}") from exc


def check_batch_size(owner: str, batch_size: object) -> int:
    """``batch_size`` as an int >= 1, or ``ValueError``."""
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"{owner}: batch_size must be an int >= 1, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"{owner}: batch_size must be an int >= 1, got {batch_size}")
    return int(batch_size)


def _array(owner: str, name: str, values: object) -> np.ndarray:
    if isinstance(values, Tensor):
        if values.layout != torch.strided or values.is_nested or values.is_meta:
            raise TypeError(f"{owner}: {name} must be a dense tensor holding values")
        values = values.detach().cpu()
        try:
            return values.numpy()  # the same dtype: the checks name the dtype given
        except TypeError:  # no NumPy dtype (bfloat16, float8, complex32): exactly, widened
            wide = torch.float64 if values.is_floating_point() else torch.complex128
            return values.to(wide).numpy()
    if isinstance(values, np.ndarray):
        return values
    raise TypeError(
        f"{owner}: {name} must be a torch.Tensor or a NumPy array, got {type(values).__name__}"
    )


def _check_shape(owner: str, name: str, array: np.ndarray, shape: list, what: str) -> None:
    """``shape``: ints or None (any size); ``what`` says where the fixed sizes come from."""
    fixed = zip(shape, array.shape, strict=False)
    if array.ndim != len(shape) or any(s is not None and s != a for s, a in fixed):
        expected = ", ".join("N" if s is None else str(s) for s in shape)
        raise ValueError(
            f"{owner}: {name} must have shape [{expected}] ({what}), got {list(array.shape)}"
        )


def real_inputs(owner: str, name: str, values: object, shape: list, what: str) -> np.ndarray:
    """``values`` as a NumPy array of real numbers of shape ``shape`` (None for the batch axis;
    ``what`` says where the fixed sizes come from), not yet converted: :func:`finite_float32`.

    Raises ``TypeError`` for another type or a bool/complex/non-numeric dtype, ``ValueError``
    for another shape."""
    array = _array(owner, name, values)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{owner}: {name} must hold real numbers, got dtype {array.dtype}")
    _check_shape(owner, name, array, shape, what)
    return array


def finite_float32(
    owner: str, name: str, array: np.ndarray, axes: tuple[str, str], lengths: np.ndarray | None
) -> np.ndarray:
    """``array`` [N, A, B] as float32, every value finite and within float32's range: within
    each row's first ``lengths[i]`` entries of A when ``lengths`` is given (padding past a
    length may hold anything).

    Raises ``ValueError`` for a NaN, an infinite value or one float32 cannot hold, naming the
    first as ``rnnflow predict`` does (the row, then ``axes``, the names of A and B) and what to
    do: a NaN is a missing value to fill or drop, an infinite or huge one a value to scale."""
    valid = np.ones(array.shape, dtype=bool)
    if lengths is not None:
        valid &= np.arange(array.shape[1])[None, :, None] < lengths[:, None, None]
    with np.errstate(over="ignore"):
        single = np.ascontiguousarray(array, dtype=np.float32)
    for bad, kind, advice in (
        (np.isnan(array), "a non-finite value", "fill or drop missing values first"),
        (np.isinf(array), "a non-finite value", "the model takes finite values only"),
        (
            np.isinf(single) & np.isfinite(array),
            "a value beyond float32's range",
            f"the exported model computes in float32 (|value| <= "
            f"{np.finfo(np.float32).max:.4g}): scale the values",
        ),
    ):
        bad &= valid
        if bad.any():
            i, a, b = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(
                f"{owner}: {name} {i} holds {kind} ({array[i, a, b]}) at {axes[0]} {a}, "
                f"{axes[1]} {b}; {advice}"
            )
    return single


def unit_interval(owner: str, name: str, array: np.ndarray) -> np.ndarray:
    """``array`` (images, finite float32) unchanged when every value is in [0, 1], the range
    the models were trained on (``rnnflow.data.images.load_image`` and the datasets' loaders
    give it); else ``ValueError`` naming the first value outside, its position and, for
    values in [0, 255] reaching 2 or more, the usual cause: 8-bit pixels not divided by 255."""
    outside = (array < 0) | (array > 1)
    if outside.any():
        index = [int(i) for i in np.argwhere(outside)[0]]
        value = array[tuple(index)]
        hint = (
            "; 8-bit pixels (0..255)? divide them by 255"
            if float(array.min()) >= 0 and 2 <= float(array.max()) <= 255
            else ""
        )
        raise ValueError(
            f"{owner}: {name} must hold pixels in [0, 1] (as the model was trained on), got "
            f"{value:g} at {index}{hint}"
        )
    return array


def token_inputs(
    owner: str, name: str, values: object, shape: list, what: str, *, vocab: int | None
) -> np.ndarray:
    """``values`` (a tensor or NumPy array of integer ids in [0, vocab), shape ``shape``) as
    int64; ``vocab`` None: no upper bound known.

    Raises ``TypeError`` for a bool/float/complex dtype, ``ValueError`` for another shape or an
    id outside [0, vocab) (padding included: the graph looks every id up; a negative one ONNX's
    Gather would read from the end of the table, one past it makes onnxruntime fail)."""
    array = _array(owner, name, values)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{owner}: {name} must hold integer ids, got dtype {array.dtype}")
    _check_shape(owner, name, array, shape, what)
    outside = array < 0 if vocab is None else (array < 0) | (array >= vocab)
    if outside.any():
        index = [int(i) for i in np.argwhere(outside)[0]]
        bound = "ids >= 0" if vocab is None else f"ids in [0, {vocab}) (the model's vocabulary)"
        raise ValueError(f"{owner}: {name} must be {bound}, got {array[tuple(index)]} at {index}")
    return np.ascontiguousarray(array, dtype=np.int64)


def length_inputs(
    owner: str,
    sequence_length: object,
    *,
    batch: int,
    max_steps: int,
    axis: str = "max_steps",
    unit: str = "series",
) -> np.ndarray:
    """``sequence_length`` checked as ``dynamic_rnn`` checks its type and shape (an integer
    tensor, list or NumPy array [batch]; bool and float refused with ``TypeError``), every value
    in the graph's domain [1, max_steps] (``ValueError`` naming the range, ``axis`` the name of
    its time axis, and the first value outside it and its row, a ``unit``: "series", "text"; a
    negative value too): int64 [batch]."""
    if sequence_length is None:
        raise TypeError(f"{owner}: sequence_length must be given (one length per series), got None")
    try:
        checked = check_sequence_length(
            owner, sequence_length, batch=batch, max_time=max_steps, device=torch.device("cpu")
        )
    except ValueError:
        # dynamic_rnn's own range is [0, T], and its message says so: a shape error stands, a
        # value outside [0, max_steps] is reported below with this graph's range [1, max_steps]
        if not isinstance(sequence_length, (Tensor, list, tuple, np.ndarray)):
            raise
        raw = (
            sequence_length.cpu().numpy()
            if isinstance(sequence_length, Tensor)
            else np.asarray(sequence_length)
        )
        if raw.shape != (batch,):
            raise
        values = raw
    else:
        values = cast(Tensor, checked).numpy()  # not None: sequence_length was given
    bad = ((values < 1) | (values > max_steps)).nonzero()[0]
    if len(bad):
        raise ValueError(
            f"{owner}: sequence_length must be in [1, {max_steps}] (the exported {axis}), "
            f"got {int(values[bad[0]])} for {unit} {int(bad[0])}"
        )
    return np.ascontiguousarray(values, dtype=np.int64)


def run_in_batches(
    run: Callable[[dict[str, np.ndarray]], np.ndarray | Tensor],
    feeds: dict[str, np.ndarray],
    batch_size: int,
    num_classes: int,
) -> Tensor:
    """``run`` over ``feeds`` (arrays with one batch axis N), ``batch_size`` rows at a time,
    its results [rows, C] concatenated: float32 [N, C] (an empty [0, num_classes] for N = 0)."""
    n = len(next(iter(feeds.values())))
    parts = [
        torch.as_tensor(run({k: v[lo : lo + batch_size] for k, v in feeds.items()}))
        for lo in range(0, n, batch_size)
    ]
    if not parts:
        return torch.zeros(0, num_classes)
    return torch.cat(parts)  # [N, C]


def check_metadata(owner: str, metadata: object) -> dict[str, str]:
    """``metadata`` (None or a mapping of str to str, stored with an export) as a dict, or
    ``TypeError`` naming the first key or value of another type."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(
            f"{owner}: metadata must be a mapping of str to str, got {type(metadata).__name__}"
        )
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"{owner}: metadata must map str to str, got {key!r}: {value!r} "
                f"({type(key).__name__}: {type(value).__name__})"
            )
    return dict(metadata)
