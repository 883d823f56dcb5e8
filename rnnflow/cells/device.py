"""DeviceWrapper: run a cell's step on one device, as TF1's wrapper."""

from __future__ import annotations

import re
from typing import Any, SupportsIndex

import torch
from torch import Tensor

from rnnflow import _nest
from rnnflow.cells._wrapper import CellWrapper
from rnnflow.cells.base import RNNCell, State

# TF1 device strings: "/cpu:0", "/gpu:1", "/device:GPU:1", with an optional local
# "/job:localhost/replica:0/task:0" prefix (what TF prints for this process's devices).
_TF_DEVICE = re.compile(
    r"^(?:/job:localhost)?(?:/replica:0)?(?:/task:0)?/(?:device:)?(?P<kind>cpu|gpu):(?P<index>\d+)$",
    re.IGNORECASE,
)


def resolve_device(owner: str, device: Any) -> torch.device:
    """A ``torch.device`` from a ``torch.device``, a PyTorch device string (``"cuda:1"``) or a
    TF1 device string (``"/gpu:1"``, ``"/device:GPU:1"``, ``"/cpu:0"`` -> ``cuda:1``, ``cpu``).

    Raises ``TypeError`` for TF's device functions and other types, ``ValueError`` for strings
    neither parses, other jobs or tasks, and CUDA devices this machine does not have.
    """
    if callable(device) and not isinstance(device, (str, torch.device)):
        raise TypeError(
            f"{owner}: device must be a torch.device or a device string; TF1's device functions "
            f"have no PyTorch equivalent, got {device!r}"
        )
    if isinstance(device, str):
        match = _TF_DEVICE.match(device.strip())
        if match:
            kind = "cpu" if match["kind"].lower() == "cpu" else "cuda"
            device = f"{kind}:{match['index']}" if kind == "cuda" else "cpu"
        elif device.startswith("/"):
            raise ValueError(
                f"{owner}: device {device!r} is not a local TF1 device (/cpu:0, /gpu:N, "
                "/device:GPU:N); rnnflow runs in one process, without jobs or tasks"
            )
        try:
            device = torch.device(device)
        except RuntimeError as error:
            raise ValueError(f"{owner}: device {device!r} is not a device string") from error
    if not isinstance(device, torch.device):
        raise TypeError(
            f"{owner}: device must be a torch.device or a device string, got {device!r}"
        )
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise ValueError(
                f"{owner}: device {str(device)!r} is not available here "
                f"(torch.cuda.device_count() = {count})"
            )
    return device


class DeviceWrapper(CellWrapper):
    """Runs a cell's step on one device, as ``tf.nn.rnn_cell.DeviceWrapper``.

        x, s = x.to(device), s.to(device);  y, s' = cell(x, s)      # y, s' on device

    TF1 (r1.15 ``rnn_cell_impl.py``) runs the wrapped cell's ``__call__`` and ``zero_state``
    under ``tf.device(device)``: the cell's variables, created on its first call, live there,
    its ops run there, and its outputs and new state are produced there; consumers on other
    devices get copies. rnnflow does the same explicitly: the wrapped cell's parameters are
    moved to ``device`` now (a lazy cell builds there), each step moves the inputs and the state
    to ``device`` (differentiably, ``Tensor.to``), and the output and new state are returned ON
    ``device``. ``zero_state`` places the state there unless told otherwise. Stack per-device
    layers as ``MultiRNNCell([DeviceWrapper(cell_0, "cuda:0"), DeviceWrapper(cell_1,
    "cuda:1")])``.

    ``device``: a ``torch.device``, a PyTorch string (``"cuda:1"``) or a TF1 string (``"/gpu:1"``,
    ``"/device:GPU:1"``, ``"/cpu:0"``). Differs from TF1: TF's device functions are refused, and
    a CUDA device the machine lacks is an error at once (TF1 failed at run time, or, with
    ``allow_soft_placement``, fell back to the CPU). Moving the wrapped cell elsewhere later
    (``model.to(...)``) makes the next step raise ``RuntimeError`` naming both devices.

    Raises:
        TypeError: ``cell`` is not an ``RNNCell``; ``device`` is a function or another type.
        ValueError: ``device`` is not a device string, or not present on this machine.
    """

    def __init__(self, cell: RNNCell, device: torch.device | str) -> None:
        super().__init__(cell)
        self.device = resolve_device("DeviceWrapper", device)
        self.cell.to(self.device)

    def build(
        self, input_size: int, *, dtype: torch.dtype, device: torch.device | str | None
    ) -> None:
        super().build(input_size, dtype=dtype, device=self.device)

    def zero_state(
        self,
        batch_size: SupportsIndex,
        dtype: torch.dtype | None = None,
        *,
        device: torch.device | str | None = None,
    ) -> State:
        """The wrapped cell's ``zero_state``, on the wrapper's device unless told another."""
        return super().zero_state(batch_size, dtype, device=device or self.device)

    def forward(self, inputs: Tensor, state: Any) -> tuple[Tensor, Any]:
        for name, tensor in [*self.cell.named_parameters(), *self.cell.named_buffers()]:
            if tensor.device != self.device:
                raise RuntimeError(
                    f"DeviceWrapper: the wrapped cell's {name} is on {tensor.device}, but this "
                    f"wrapper runs it on {self.device}; move the cell back with "
                    f"wrapper.cell.to({str(self.device)!r}) or make a new DeviceWrapper"
                )
        inputs = inputs.to(self.device) if isinstance(inputs, Tensor) else inputs
        state = _nest.map_structure(
            lambda s: s.to(self.device) if isinstance(s, Tensor) else s, state
        )
        return self.cell(inputs, state)

    def extra_repr(self) -> str:
        return f"device={str(self.device)!r}"
