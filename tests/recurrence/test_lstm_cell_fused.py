"""LSTMCell on the fused path: without options it runs BasicLSTMCell's kernels (the parity
grids in test_fused_parity.py include it); with peepholes, cell_clip or num_proj fusable()
names the option, impl="fused" raises and impl="auto" runs the reference loop."""

from __future__ import annotations

import re

import pytest
import torch

from rnnflow import BasicLSTMCell, LSTMCell, MultiRNNCell, dynamic_rnn
from rnnflow.recurrence import fused


@pytest.fixture
def calls(monkeypatch):
    seen = []
    real = fused.fused_dynamic_rnn

    def spy(*args):
        seen.append(type(args[0]).__name__)
        return real(*args)

    monkeypatch.setattr(fused, "fused_dynamic_rnn", spy)
    return seen


def test_plain_lstm_cell_is_basic_lstm_on_the_fused_path_bit_for_bit(calls):
    lstm_cell = LSTMCell(6, forget_bias=0.5, input_size=3)
    basic = BasicLSTMCell(6, forget_bias=0.5, input_size=3)
    basic.load_state_dict(lstm_cell.state_dict())
    x = torch.randn(4, 7, 3)
    lengths = torch.tensor([7, 3, 0, 5])
    got = dynamic_rnn(lstm_cell, x, sequence_length=lengths)
    want = dynamic_rnn(basic, x, sequence_length=lengths)
    assert calls == ["LSTMCell", "BasicLSTMCell"]
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"use_peepholes": True}, "use_peepholes=True"),
        ({"cell_clip": 0.5}, "cell_clip=0.5"),
        ({"num_proj": 2}, "num_proj=2"),
        ({"num_proj": 2, "proj_clip": 0.1}, "num_proj=2"),
    ],
)
def test_options_are_named_fused_raises_and_auto_falls_back(options, reason, calls):
    cell = LSTMCell(4, input_size=3, **options)
    x = torch.randn(2, 5, 3)
    ok, why = fused.fusable(cell, x.transpose(0, 1))
    assert not ok and why == f"no fused kernel for LSTMCell with {reason}"
    with pytest.raises(
        ValueError, match=rf"unavailable \(no fused kernel for LSTMCell with {re.escape(reason)}\)"
    ):
        dynamic_rnn(cell, x, impl="fused")
    stack = MultiRNNCell([LSTMCell(4, input_size=3), cell.__class__(4, input_size=4, **options)])
    with pytest.raises(ValueError, match=r"MultiRNNCell cell_1: no fused kernel for LSTMCell"):
        dynamic_rnn(stack, x, impl="fused")
    auto = dynamic_rnn(cell, x)
    assert calls == []
    torch.testing.assert_close(auto, dynamic_rnn(cell, x, impl="reference"), rtol=0, atol=0)
