"""impl="auto" | "fused" | "reference": which path runs, and the messages when fusing is refused."""

from __future__ import annotations

import pytest
import torch

from rnnflow import (
    BasicLSTMCell,
    BasicRNNCell,
    DropoutWrapper,
    GRUCell,
    LSTMCell,
    MultiRNNCell,
    bidirectional_dynamic_rnn,
    dynamic_rnn,
)
from rnnflow.recurrence import fused


@pytest.mark.parametrize(
    "options",
    [{"use_peepholes": True}, {"cell_clip": 1.0}, {"num_proj": 2}],
    ids=["peepholes", "cell_clip", "num_proj"],
)
def test_auto_runs_the_reference_loop_for_lstm_cell_options_fused_runs_its_layer(options, calls):
    """LSTMCell with options: its fused layer measured no faster than the reference loop on
    the CPU, so "auto" loops (alone and in a stack); "fused" still runs it; a plain LSTMCell
    is fused by "auto"."""
    x = torch.randn(2, 5, 3)
    dynamic_rnn(LSTMCell(4, input_size=3, **options), x)
    dynamic_rnn(MultiRNNCell([GRUCell(3, input_size=3), LSTMCell(4, input_size=3, **options)]), x)
    assert calls == []
    dynamic_rnn(LSTMCell(4, input_size=3, **options), x, impl="fused")
    dynamic_rnn(LSTMCell(4, input_size=3), x)
    assert calls == ["LSTMCell", "LSTMCell"]


class CustomCell(BasicRNNCell):
    """A subclass may change ``forward``: never fused."""


@pytest.mark.parametrize(
    "cell",
    [
        BasicRNNCell(4, input_size=3),
        BasicLSTMCell(4, input_size=3),
        GRUCell(4, input_size=3),
        MultiRNNCell([GRUCell(4, input_size=3), BasicLSTMCell(2, input_size=4)]),
        DropoutWrapper(BasicRNNCell(4, input_size=3), output_keep_prob=0.5).eval(),
    ],
    ids=["rnn", "lstm", "gru", "multi", "dropout_eval"],
)
def test_auto_uses_the_fused_path_for_built_in_cells(cell, calls):
    dynamic_rnn(cell, torch.randn(2, 5, 3))
    assert calls == [type(cell).__name__]


def test_reference_never_uses_the_fused_path(calls):
    dynamic_rnn(BasicRNNCell(4, input_size=3), torch.randn(2, 5, 3), impl="reference")
    assert calls == []


def test_bidirectional_fuses_both_directions(calls):
    cell_fw, cell_bw = GRUCell(4, input_size=3), BasicLSTMCell(4, input_size=3)
    bidirectional_dynamic_rnn(cell_fw, cell_bw, torch.randn(2, 5, 3), sequence_length=[5, 2])
    assert calls == ["GRUCell", "BasicLSTMCell"]


def test_unbuilt_cell_is_built_by_dynamic_rnn_then_fused(calls):
    cell = BasicLSTMCell(4)
    dynamic_rnn(cell, torch.randn(2, 5, 3))
    assert cell.built and calls == ["BasicLSTMCell"]


REFUSED = [
    (
        lambda: DropoutWrapper(BasicRNNCell(4, input_size=3), input_keep_prob=0.5),
        r"DropoutWrapper with keep_prob < 1 in training mode",
    ),
    (lambda: CustomCell(4, input_size=3), r"no fused kernel for CustomCell"),
    (
        lambda: BasicRNNCell(4, activation=torch.nn.functional.elu, input_size=3),
        r"BasicRNNCell activation <function elu at .*> is not one of tanh, sigmoid, relu, linear",
    ),
    (
        lambda: GRUCell(4, activation="relu", input_size=3),
        r"GRUCell activation .* is not one of tanh, sigmoid",
    ),
    (
        lambda: MultiRNNCell([BasicRNNCell(4, input_size=3), CustomCell(2, input_size=4)]),
        r"MultiRNNCell cell_1: no fused kernel for CustomCell",
    ),
]


@pytest.mark.parametrize(
    "make, reason", REFUSED, ids=["dropout", "subclass", "elu", "gru", "multi"]
)
def test_fused_raises_with_the_reason_and_auto_falls_back(make, reason, calls):
    x = torch.randn(2, 5, 3)
    with pytest.raises(
        ValueError,
        match=rf"dynamic_rnn: impl='fused' unavailable \({reason}\); "
        r"use impl='auto' to fall back",
    ):
        dynamic_rnn(make(), x, impl="fused")
    out, _ = dynamic_rnn(make(), x)  # auto: the reference loop, silently
    assert out.shape[:2] == (2, 5) and calls == []


def test_parameters_of_another_dtype_are_not_fused():
    cell = BasicRNNCell(4, input_size=3, dtype=torch.float64)
    ok, reason = fused.fusable(cell, torch.randn(5, 2, 3))
    assert not ok
    assert reason == "BasicRNNCell.kernel is torch.float64 on cpu, inputs are torch.float32 on cpu"


def test_unbuilt_cell_is_not_fusable():
    assert fused.fusable(GRUCell(4), torch.randn(5, 2, 3)) == (False, "GRUCell is not built")


def test_fused_dynamic_rnn_refuses_what_it_cannot_fuse():
    with pytest.raises(ValueError, match=r"fused_dynamic_rnn: cannot fuse CustomCell: no fused "):
        fused.fused_dynamic_rnn(
            CustomCell(4, input_size=3), torch.randn(5, 2, 3), None, torch.zeros(2, 4)
        )
