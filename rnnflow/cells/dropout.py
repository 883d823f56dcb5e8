"""DropoutWrapper: dropout on a cell's inputs, outputs and state, as TF1's wrapper."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from rnnflow import _nest
from rnnflow.cells._wrapper import CellWrapper
from rnnflow.cells.base import RNNCell, check_optional_int
from rnnflow.cells.basic_lstm import LSTMStateTuple

StateFilter = Callable[[Any], Any]


def default_state_filter(substate: Any) -> Any:
    """TF1's default: drop every state part except an LSTM's memory cell ``c``."""
    if isinstance(substate, LSTMStateTuple):
        return LSTMStateTuple(c=False, h=True)
    return True


def _check_keep_prob(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value <= 1.0:
        raise ValueError(f"DropoutWrapper: {name} must be a float in (0, 1], got {value!r}")
    return float(value)


class DropoutWrapper(CellWrapper):
    """Dropout on a cell's inputs, outputs and/or new state, as ``tf.nn.rnn_cell.DropoutWrapper``.

        x  = dropout(x, input_keep_prob);  y, s' = cell(x, s)
        y  = dropout(y, output_keep_prob); s' = dropout(s', state_keep_prob)   # filtered parts only

    Kept values are scaled by ``1 / keep_prob`` (inverted dropout), with TF1's arithmetic:
    ``x * (1 / keep_prob) * mask`` per step, ``x / keep_prob * mask`` when variational.

    Masks have TF1's structure (r1.15 ``rnn_cell_impl.py`` / ``rnn_cell_wrapper_impl.py``):

    - ``variational_recurrent=False``: a fresh mask of the value's full shape [B, size] for every
      value at every step, each element drawn independently.

    Nested inputs and outputs (a custom cell's namedtuple ``output_size``, say) are dropped leaf
    by leaf, as TF1's ``nest.map_structure``, each leaf with its own masks.
    - ``variational_recurrent=True`` (Gal & Ghahramani, https://arxiv.org/abs/1512.05287): ONE
      mask of shape [1, size] per value (each leaf of the inputs, state and output), shared by
      every batch row ("we use the same dropout mask for all batch elements") and by every time
      step of a run. ``dynamic_rnn`` and ``bidirectional_dynamic_rnn`` draw new masks at the
      start of each call (``begin_sequence()``), as each TF1 ``session.run`` did; a cell
      stepped by hand keeps its masks until ``begin_sequence()`` is called.

    ``dropout_state_filter_visitor(substate)`` returns ``True``/``False`` or a depth-1 structure
    of them (TF1's ``get_traverse_shallow_structure`` rules); by default every state part but
    ``LSTMStateTuple.c`` is dropped. ``seed`` makes the masks reproducible (one
    ``torch.Generator`` per device; the numbers differ from TF's, the distribution does not).

    Differs from TF1: dropout acts only in training mode (``module.train()``); ``eval()`` turns
    it off, which TF1 users did by feeding ``keep_prob=1.0``. TF1 required ``dtype`` when
    ``variational_recurrent``, and ``input_size`` when also ``input_keep_prob < 1``, to build
    the masks in the graph; rnnflow draws each variational mask at its first use in a run, with
    the value's dtype, device and depth, so both are optional. ``input_size``, when given, must
    be the inputs' depth (``ValueError`` otherwise); ``dtype`` is accepted and unused.
    Keep probabilities are Python numbers in (0, 1] (TF also took tensors).

    Raises:
        TypeError: ``cell`` is not a cell; ``dropout_state_filter_visitor`` is not callable.
        ValueError: a keep probability outside (0, 1]; ``input_size``/``seed`` not integers;
            inputs whose depth differs from ``input_size``.
    """

    def __init__(
        self,
        cell: RNNCell,
        input_keep_prob: float = 1.0,
        output_keep_prob: float = 1.0,
        state_keep_prob: float = 1.0,
        variational_recurrent: bool = False,
        input_size: int | None = None,
        dtype: torch.dtype | None = None,
        seed: int | None = None,
        dropout_state_filter_visitor: StateFilter | None = None,
    ) -> None:
        super().__init__(cell)
        self.input_keep_prob = _check_keep_prob("input_keep_prob", input_keep_prob)
        self.output_keep_prob = _check_keep_prob("output_keep_prob", output_keep_prob)
        self.state_keep_prob = _check_keep_prob("state_keep_prob", state_keep_prob)
        self.seed = check_optional_int("DropoutWrapper", "seed", seed, minimum=None)
        self.input_size = check_optional_int("DropoutWrapper", "input_size", input_size)
        if dtype is not None and (
            not isinstance(dtype, torch.dtype) or not dtype.is_floating_point
        ):
            raise ValueError(
                f"DropoutWrapper: dtype must be a floating torch.dtype or None, got {dtype!r}"
            )
        if dropout_state_filter_visitor is not None and not callable(dropout_state_filter_visitor):
            raise TypeError(
                "DropoutWrapper: dropout_state_filter_visitor must be callable, "
                f"got {dropout_state_filter_visitor!r}"
            )
        self.variational_recurrent = bool(variational_recurrent)
        self._state_filter = dropout_state_filter_visitor or default_state_filter
        self._generators: dict[torch.device, torch.Generator] = {}
        self._masks: dict[str, Tensor] = {}  # variational masks [1, size] of the current run

    def begin_sequence(self) -> None:
        """Forget the variational masks: the next step draws new ones (a new TF1 run)."""
        self._masks.clear()
        super().begin_sequence()

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def _keep_mask(self, shape: tuple[int, ...], like: Tensor, keep_prob: float) -> Tensor:
        """0/1 values, each 1 with probability ``keep_prob``, in ``like``'s dtype and device."""
        keep = torch.empty(shape, dtype=like.dtype, device=like.device)
        return keep.bernoulli_(keep_prob, generator=self._generator(like.device))

    def _dropout(self, key: str, x: Tensor, keep_prob: float) -> Tensor:
        if keep_prob >= 1.0 or not self.training:
            return x
        if not self.variational_recurrent:
            # TF1's nn_ops.dropout(x, keep_prob): rate = 1 - keep_prob; x * (1 / (1 - rate)) * mask
            scale = 1.0 / (1.0 - (1.0 - keep_prob))
            return x * scale * self._keep_mask(tuple(x.shape), x, keep_prob)
        mask = self._masks.get(key)
        if mask is None:
            mask = self._masks[key] = self._keep_mask((1, x.shape[-1]), x, keep_prob)  # [1, D]
        elif mask.shape[-1] != x.shape[-1]:
            raise ValueError(
                f"DropoutWrapper: {key} has depth {x.shape[-1]} but this run's variational mask "
                f"has depth {mask.shape[-1]}; call begin_sequence() before a new run"
            )
        return x / keep_prob * mask.to(x.device, x.dtype)  # [B, D] * [1, D]: one mask, all rows

    def _dropout_structure(self, key: str, value: Any, keep_prob: float) -> Any:
        """``_dropout`` on every leaf of a nested value (TF1's ``nest.map_structure``): each leaf
        has its own masks (variational: one [1, size] mask per leaf)."""
        if isinstance(value, Tensor) or keep_prob >= 1.0 or not self.training:
            return self._dropout(key, value, keep_prob)
        leaves = _nest.flatten(value)
        dropped = [self._dropout(f"{key} {k}", leaf, keep_prob) for k, leaf in enumerate(leaves)]
        return _nest.pack_sequence_as(value, dropped)

    def _state_dropout(self, state: Any) -> Any:
        flags = _expand_filter(self._state_filter, state)
        leaves = _nest.flatten(state)
        dropped = [
            self._dropout(f"state {k}", leaf, self.state_keep_prob) if keep else leaf
            for k, (leaf, keep) in enumerate(zip(leaves, flags))
        ]
        return _nest.pack_sequence_as(state, dropped)

    def forward(self, inputs: Tensor, state: Any) -> tuple[Tensor, Any]:
        if (
            self.input_size is not None
            and isinstance(inputs, Tensor)
            and inputs.shape[-1] != self.input_size
        ):
            raise ValueError(
                f"DropoutWrapper: inputs must have depth input_size={self.input_size}, "
                f"got shape {tuple(inputs.shape)}"
            )
        inputs = self._dropout_structure("input", inputs, self.input_keep_prob)
        output, new_state = self.cell(inputs, state)
        if self.state_keep_prob < 1.0 and self.training:
            new_state = self._state_dropout(new_state)
        output = self._dropout_structure("output", output, self.output_keep_prob)
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
