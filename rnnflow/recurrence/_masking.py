"""Per-row sequence lengths: validation, the [T, B] validity mask, TF1's copy-through select and
in-length reversal."""

from __future__ import annotations

import reprlib
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnflow import _nest

_UNSIGNED = (torch.uint8, torch.uint16, torch.uint32, torch.uint64)


def check_sequence_length(
    owner: str, sequence_length: Any, *, batch: int, max_time: int, device: torch.device
) -> Tensor | None:
    """Return ``sequence_length`` as an int64 tensor [B] on ``device``, or refuse it.

    Accepted: a dense integer tensor of any integer dtype (signed or unsigned) on any device, or
    a list, tuple or NumPy array of ints (TF1 converts those too). Refused with ``TypeError``:
    bool, floating and complex values (TF1 casts them to int32), sparse, nested and meta tensors
    (a meta tensor holds no values), anything else; with ``ValueError``: a shape other than
    [B], values outside [0, T]. TF1 silently clamps out-of-range lengths; rnnflow refuses them,
    since they are always a bug.
    """
    if sequence_length is None:
        return None
    if isinstance(sequence_length, Tensor):
        lengths = sequence_length
        if lengths.layout != torch.strided or lengths.is_nested:
            kind = "nested" if lengths.is_nested else str(lengths.layout)
            raise TypeError(
                f"{owner}: sequence_length must be a dense integer tensor, got a {kind} tensor"
            )
        if lengths.is_meta:
            raise TypeError(
                f"{owner}: sequence_length must hold values, got a meta tensor (it has none)"
            )
    elif isinstance(sequence_length, (list, tuple, np.ndarray)):
        try:
            array = np.asarray(sequence_length)
            if array.size == 0 and array.dtype == np.float64:  # [] converts to float64
                array = array.astype(np.int64)
            lengths = torch.as_tensor(array)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{owner}: sequence_length must be an integer tensor, "
                f"got {reprlib.repr(sequence_length)}"
            ) from err
        if array.dtype != np.bool_ and isinstance(sequence_length, (list, tuple)):
            for i, value in enumerate(sequence_length):  # NumPy read a bool among ints as 0/1
                if isinstance(value, (bool, np.bool_)):
                    raise TypeError(
                        f"{owner}: sequence_length must hold integers, got {value!r} at index {i}"
                    )
    else:
        raise TypeError(
            f"{owner}: sequence_length must be an integer tensor of shape ({batch},), "
            f"got {type(sequence_length).__name__}"
        )
    if lengths.dtype == torch.bool or lengths.is_floating_point() or lengths.is_complex():
        raise TypeError(
            f"{owner}: sequence_length must be an integer tensor, got dtype {lengths.dtype}"
        )
    if tuple(lengths.shape) != (batch,):
        raise ValueError(
            f"{owner}: sequence_length must have shape ({batch},), got {tuple(lengths.shape)}"
        )
    if batch:
        if lengths.dtype in _UNSIGNED:  # few reductions exist for these: exact Python ints
            values = lengths.tolist()
            low, high = min(values), max(values)
        else:
            low, high = int(lengths.min()), int(lengths.max())
        if low < 0:
            raise ValueError(f"{owner}: sequence_length must be >= 0, got a minimum of {low}")
        if high > max_time:
            raise ValueError(
                f"{owner}: sequence_length must be <= the time axis length {max_time}, "
                f"got a maximum of {high}"
            )
    return lengths.to(device=device, dtype=torch.int64)


def valid_mask(lengths: Tensor, max_time: int) -> Tensor:
    """``mask[t, b]`` is True where step ``t`` is inside row ``b``'s length: [T, B] bool."""
    steps = torch.arange(max_time, device=lengths.device)
    return steps[:, None] < lengths[None, :]  # [T, B]


def reverse_sequence(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each row of time-major ``x`` [T, B, ...] within its length (``tf.reverse_sequence``).

    Steps at or past a row's length stay where they are; with no lengths the whole axis flips.
    """
    if lengths is None:
        return x.flip(0)
    max_time, lengths = x.shape[0], lengths.to(x.device)  # x may be a DeviceWrapper's output
    steps = torch.arange(max_time, device=x.device)[:, None]  # [T, 1]
    source = torch.where(steps < lengths[None, :], lengths[None, :] - 1 - steps, steps)  # [T, B]
    index = source[(..., *([None] * (x.dim() - 2)))].expand_as(x)  # [T, B, 1, ...]: no Reshape
    return x.gather(0, index)


def copy_through(keep_old: Tensor, old: Any, new: Any) -> Any:
    """TF1's ``_copy_some_through``: per row, ``old`` where ``keep_old`` [B] is True, else ``new``.

    ``old`` and ``new`` are nested structures of tensors [B, ...] (states, outputs); the result
    has ``new``'s structure.
    """

    def pick(n: Tensor, o: Tensor) -> Tensor:  # n may be on a DeviceWrapper's device
        keep = keep_old.to(n.device).view(-1, *([1] * (n.dim() - 1)))  # [B, 1, ...]
        return torch.where(keep, o.to(n.device), n)

    return _nest.map_structure(pick, new, old)
