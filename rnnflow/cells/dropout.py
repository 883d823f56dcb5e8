"""DropoutWrapper: dropout on a cell's inputs, outputs and state, as TF1's wrapper."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from rnnflow import _nest
from rnnflow.cells.base import RNNCell, StateSize, build_cell
from rnnflow.cells.basic_lstm import LSTMStateTuple

StateFilter = Callable[[Any], Any]


def default_state_filter(substate: Any) -> Any:
    """TF1's default: drop every state part except an LSTM's memory cell ``c``."""
    if isinstance(substate, LSTMStateTuple):
        return LSTMStateTuple(c=False, h=True)
    return True


def _check_keep_prob(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(f"DropoutWrapper: {name} must be a float in (0, 1], got {value!r}")
    return float(value)


class DropoutWrapper(RNNCell):
    """Dropout on a cell's inputs, outputs and/or new state, as ``tf.nn.rnn_cell.DropoutWrapper``.

        x  = dropout(x, input_keep_prob);  y, s' = cell(x, s)
        y  = dropout(y, output_keep_prob); s' = dropout(s', state_keep_prob)   # filtered parts only

    Kept units are scaled by ``1 / keep_prob`` (inverted dropout), as in TF1. With
    ``variational_recurrent=True`` the same mask is used at every time step of a sequence
    (Gal & Ghahramani); a new mask is drawn at the start of each ``dynamic_rnn`` call
    (``begin_sequence``) or when the batch shape changes.

    Differs from TF1: dropout is active only in training mode (``module.train()``); ``eval()``
    turns it off, which TF1 users did by feeding ``keep_prob=1.0``. ``input_size`` and ``dtype``,
    which TF1 needed to pre-build variational masks, are accepted and not needed.
    ``dropout_state_filter_visitor(substate)`` returns ``True``/``False`` or a structure of them
    (default: every state part but ``LSTMStateTuple.c``).
    """

    def __init__(
        self,
        cell: RNNCell,
        input_keep_prob: float = 1.0,
        output_keep_prob: float = 1.0,
        state_keep_prob: float = 1.0,
        variational_recurrent: bool = False,
        input_size: Any = None,
        dtype: torch.dtype | None = None,
        seed: int | None = None,
        dropout_state_filter_visitor: StateFilter | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(cell, torch.nn.Module) or not hasattr(cell, "state_size"):
            raise TypeError(f"DropoutWrapper: cell must be an RNNCell, got {type(cell).__name__}")
        self.input_keep_prob = _check_keep_prob("input_keep_prob", input_keep_prob)
        self.output_keep_prob = _check_keep_prob("output_keep_prob", output_keep_prob)
        self.state_keep_prob = _check_keep_prob("state_keep_prob", state_keep_prob)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"DropoutWrapper: seed must be an int or None, got {seed!r}")
        if dropout_state_filter_visitor is not None and not callable(dropout_state_filter_visitor):
            raise TypeError(
                "DropoutWrapper: dropout_state_filter_visitor must be callable, "
                f"got {dropout_state_filter_visitor!r}"
            )
        self.cell = cell
        self.variational_recurrent = bool(variational_recurrent)
        self.seed = seed
        self._state_filter = dropout_state_filter_visitor or default_state_filter
        self._generators: dict[torch.device, torch.Generator] = {}
        self._masks: dict[str, Tensor] = {}
        del input_size, dtype

    @property
    def built(self) -> bool:
        return getattr(self.cell, "built", True)

    def build(
        self, input_size: int, *, dtype: torch.dtype, device: torch.device | str | None
    ) -> None:
        build_cell(self.cell, input_size, dtype=dtype, device=device)

    @property
    def state_size(self) -> StateSize:
        return self.cell.state_size

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    def begin_sequence(self) -> None:
        self._masks.clear()
        super().begin_sequence()

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def _mask(self, key: str, like: Tensor, keep_prob: float) -> Tensor:
        mask = self._masks.get(key) if self.variational_recurrent else None
        if mask is None or mask.shape != like.shape or mask.device != like.device:
            keep = torch.empty_like(like).bernoulli_(
                keep_prob, generator=self._generator(like.device)
            )
            mask = keep.div_(keep_prob)
            if self.variational_recurrent:
                self._masks[key] = mask
        return mask.to(like.dtype)

    def _dropout(self, key: str, x: Tensor, keep_prob: float) -> Tensor:
        if keep_prob >= 1.0 or not self.training:
            return x
        return x * self._mask(key, x, keep_prob)

    def _state_dropout(self, state: Any) -> Any:
        flags = _expand_filter(self._state_filter, state)
        leaves = _nest.flatten(state)
        dropped = [
            self._dropout(f"state/{k}", leaf, self.state_keep_prob) if keep else leaf
            for k, (leaf, keep) in enumerate(zip(leaves, flags))
        ]
        return _nest.pack_sequence_as(state, dropped)

    def forward(self, inputs: Tensor, state: Any) -> tuple[Tensor, Any]:
        inputs = self._dropout("input", inputs, self.input_keep_prob)
        output, new_state = self.cell(inputs, state)
        if self.state_keep_prob < 1.0 and self.training:
            new_state = self._state_dropout(new_state)
        output = self._dropout("output", output, self.output_keep_prob)
        return output, new_state

    def extra_repr(self) -> str:
        return (
            f"input_keep_prob={self.input_keep_prob}, output_keep_prob={self.output_keep_prob}, "
            f"state_keep_prob={self.state_keep_prob}, "
            f"variational_recurrent={self.variational_recurrent}"
        )


def _expand_filter(visitor: StateFilter, state: Any) -> list[bool]:
    """One flag per state leaf, by TF1's traversal: ``False`` skips a whole sub-structure,
    ``True`` descends into it (asking the visitor again), a structure of bools decides per part."""
    verdict = visitor(state)
    n_leaves = len(_nest.flatten(state))
    if verdict is False:
        return [False] * n_leaves
    if not _nest.is_sequence(state):
        if verdict is True:
            return [True]
    elif verdict is True:
        return [flag for sub in _nest.children(state) for flag in _expand_filter(visitor, sub)]
    elif _nest.is_sequence(verdict) and len(verdict) == len(state):
        flags: list[bool] = []
        for sub_verdict, sub in zip(_nest.children(verdict), _nest.children(state)):
            if sub_verdict is False:
                flags.extend([False] * len(_nest.flatten(sub)))
            elif sub_verdict is True:
                flags.extend(_expand_filter(visitor, sub))
            else:
                break
        else:
            return flags
    raise ValueError(
        "DropoutWrapper: dropout_state_filter_visitor must return a bool or a structure of bools "
        f"matching the state {_nest.describe(state)}, got {verdict!r}"
    )
