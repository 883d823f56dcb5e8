"""LSTMCell on the fused path: without options it runs BasicLSTMCell's kernels (the parity
grids in test_fused_parity.py include it); with peepholes, cell_clip or a projection
_fused_lstm_cell's layer, equal to the reference loop (R9)."""

from __future__ import annotations

import pytest
import torch
from rnnflow_testing import assert_close_tree, outputs_and_grads

from rnnflow import BasicLSTMCell, LSTMCell, MultiRNNCell, _nest, dynamic_rnn
from rnnflow.recurrence import fused


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


OPTIONS = {
    "peep": {"use_peepholes": True},
    "clip": {"cell_clip": 0.4},
    "proj": {"num_proj": 3},
    "proj_clip": {"num_proj": 3, "proj_clip": 0.2},
    "all": {"use_peepholes": True, "cell_clip": 0.4, "num_proj": 3, "proj_clip": 0.2},
    "all_concat": {
        "use_peepholes": True,
        "cell_clip": 0.4,
        "num_proj": 2,
        "proj_clip": 0.3,
        "state_is_tuple": False,
        "forget_bias": 0.3,
    },
    "sigmoid_peep_proj": {"use_peepholes": True, "num_proj": 3, "activation": "sigmoid"},
}
LENGTHS = {"none": None, "partial": [6, 2, 0, 3], "full": [6, 6, 6, 6]}


def random_lstm_cell(options, dtype=torch.float64):
    cell = LSTMCell(5, input_size=3, dtype=dtype, **options)
    with torch.no_grad():
        for p in cell.parameters():
            p.normal_(0.0, 0.7)  # large enough that both clips clip (checked below)
    return cell


@pytest.mark.parametrize("given_state", [False, True], ids=["zero_state", "initial_state"])
@pytest.mark.parametrize("lengths", list(LENGTHS))
@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
@pytest.mark.parametrize("options", list(OPTIONS))
def test_every_lstm_cell_option_is_fused_and_equals_the_reference(
    options, time_major, lengths, given_state, calls
):
    """float64, 1e-10: outputs, final state and the gradients w.r.t. inputs, initial state
    and every parameter (peepholes and projection included)."""
    torch.manual_seed(3)
    cell = random_lstm_cell(OPTIONS[options])
    shape = (6, 4, 3) if time_major else (4, 6, 3)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    seq = torch.tensor(LENGTHS[lengths]) if LENGTHS[lengths] is not None else None
    init = None
    if given_state:
        zero = cell.zero_state(4, torch.float64)
        init = _nest.map_structure(lambda z: torch.randn_like(z).requires_grad_(), zero)
    assert fused.fusable(cell, x) == (True, "")
    ref = outputs_and_grads(cell, x, seq, init, "reference", time_major)
    assert calls == []
    got = outputs_and_grads(cell, x, seq, init, "fused", time_major)
    assert calls == ["LSTMCell"]
    assert_close_tree(got, ref, rtol=1e-10, atol=1e-10)
    if "proj_clip" in OPTIONS[options]:  # the projection clip really clips (cell clip: below)
        assert (ref[0].abs() == OPTIONS[options]["proj_clip"]).any()


def test_clipping_happens_in_the_grid():
    """The cell clip clips somewhere in the grid's runs (the state is the last step only, so
    look at every step through a hook)."""
    cell = random_lstm_cell(OPTIONS["all"])
    seen = []
    cell.register_forward_hook(lambda m, args, out: seen.append(out[1].c.detach()))
    torch.manual_seed(3)
    dynamic_rnn(cell, torch.randn(4, 6, 3, dtype=torch.float64), impl="reference")
    assert (torch.stack(seen).abs() == 0.4).any()


def test_lstm_cell_with_options_in_float32_and_in_a_stack():
    torch.manual_seed(4)
    stack = MultiRNNCell(
        [
            LSTMCell(5, use_peepholes=True, num_proj=3, proj_clip=0.5, input_size=3),
            LSTMCell(4, cell_clip=0.5, input_size=3),
        ]
    )
    x = torch.randn(4, 7, 3, requires_grad=True)
    lengths = torch.tensor([7, 3, 0, 5])
    ref = outputs_and_grads(stack, x, lengths, None, "reference")
    got = outputs_and_grads(stack, x, lengths, None, "fused")
    assert_close_tree(got, ref, rtol=1e-5, atol=1e-5)


def test_an_unsupported_activation_is_named():
    cell = LSTMCell(4, use_peepholes=True, activation="relu", input_size=3)
    ok, why = fused.fusable(cell, torch.zeros(5, 2, 3))
    assert not ok and why.startswith("LSTMCell activation <built-in method relu")
    with pytest.raises(ValueError, match=r"impl='fused' unavailable \(LSTMCell activation "):
        dynamic_rnn(cell, torch.zeros(2, 5, 3), impl="fused")
