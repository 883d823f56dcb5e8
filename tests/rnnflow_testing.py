"""Test helpers shared across the suite (importable because pytest's pythonpath has tests/)."""

from __future__ import annotations

from typing import Any

import torch

from rnnflow import _nest


def assert_close_tree(actual: Any, expected: Any, **tolerances: Any) -> None:
    """``torch.testing.assert_close`` leaf by leaf over equally nested structures."""
    assert _nest.same_structure(actual, expected), (
        f"structures differ: {_nest.describe(actual)} vs {_nest.describe(expected)}"
    )
    for k, (a, e) in enumerate(zip(_nest.flatten(actual), _nest.flatten(expected))):
        torch.testing.assert_close(a, e, msg=lambda m, k=k: f"leaf {k}: {m}", **tolerances)


# Cell configurations the fused-path tests run over: every built-in cell, both state layouts,
# and mixed MultiRNNCell stacks. Inputs have depth CELL_INPUT_DEPTH.
CELL_KINDS = ["rnn", "rnn_relu", "lstm", "lstm_concat", "gru", "multi", "multi_concat"]
CELL_KINDS += ["lstm_cell", "lstm_cell_concat"]  # LSTMCell without options: fused as BasicLSTM
CELL_INPUT_DEPTH = 3


def make_cell(kind: str, dtype: torch.dtype) -> torch.nn.Module:
    """A built cell of one of ``CELL_KINDS`` for inputs of depth ``CELL_INPUT_DEPTH``."""
    from rnnflow import BasicLSTMCell, BasicRNNCell, GRUCell, LSTMCell, MultiRNNCell

    common = dict(input_size=CELL_INPUT_DEPTH, dtype=dtype)
    if kind == "rnn":
        return BasicRNNCell(5, **common)
    if kind == "rnn_relu":
        return BasicRNNCell(5, activation="relu", **common)
    if kind == "lstm":
        return BasicLSTMCell(5, forget_bias=0.7, **common)
    if kind == "lstm_concat":
        return BasicLSTMCell(5, state_is_tuple=False, **common)
    if kind == "gru":
        return GRUCell(5, **common)
    if kind == "lstm_cell":
        return LSTMCell(5, forget_bias=0.3, **common)
    if kind == "lstm_cell_concat":
        return LSTMCell(5, state_is_tuple=False, **common)
    if kind == "multi":
        return MultiRNNCell(
            [
                GRUCell(5, **common),
                BasicLSTMCell(4, input_size=5, dtype=dtype),
                BasicRNNCell(6, input_size=4, dtype=dtype),
            ]
        )
    if kind == "multi_concat":
        return MultiRNNCell(
            [BasicRNNCell(5, **common), GRUCell(3, input_size=5, dtype=dtype)],
            state_is_tuple=False,
        )
    raise ValueError(kind)


def outputs_and_grads(cell, x, lengths, init, impl, time_major=False):
    """Outputs, final state and d(loss)/d(inputs, every parameter, initial state), where the
    loss weighs every output and state element differently (so no gradient can hide)."""
    from rnnflow import dynamic_rnn

    out, state = dynamic_rnn(
        cell, x, sequence_length=lengths, initial_state=init, time_major=time_major, impl=impl
    )
    leaves = _nest.flatten(state)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    loss = (out * weights).sum() + sum((s * (k + 1.5)).sum() for k, s in enumerate(leaves))
    wrt = [x, *cell.parameters(), *(_nest.flatten(init) if init is not None else [])]
    return out, state, torch.autograd.grad(loss, wrt)


# The compiled loops' step products (tests/recurrence/test_*_step_products.py): (batch, depth,
# units, batch_sizes) with depths and units that are multiples of nothing, units not a multiple
# of the panel width, 1 row (the kernel's independent chains, K not a multiple of their
# number), an odd batch (a partial register block), one whole block, a batch that shrinks.
STEP_PRODUCT_SHAPES = {
    "1row-D1-H5": (1, 1, 5, [1, 1, 1]),
    "1row-D33-H8": (1, 33, 8, [1, 1]),
    "odd-shrinking-H37": (13, 28, 37, [13, 13, 6, 1]),
    "one-block-H16": (12, 3, 16, [12, 12]),
    "25rows-H128": (25, 28, 128, [25, 24, 12]),
}
