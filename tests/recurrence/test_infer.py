"""Inference without autograd: one compiled call per layer (``rnn_infer``, ``lstm_infer``,
``gru_infer`` in csrc/loops.cpp), chosen by ``dynamic_rnn`` whenever no gradient is needed.

Oracle: the reference loop (float64 at 1e-10), for every kernel variant the CPU runs (forced with
``RNNFLOW_ISA``) and the Python loops, in both layouts (batch-major inputs are read and outputs
written through their strides), with batch 1 and 3 (all steps' input projections first, the
weights read in place) and 7 (a step at a time), with and without lengths; float32 against the
float64 result at the tutorial's sizes.
"""

from __future__ import annotations

import copy

import pytest
import torch
from rnnflow_testing import CELL_INPUT_DEPTH, CELL_KINDS, assert_close_tree, make_cell

from rnnflow import BasicLSTMCell, BasicRNNCell, GRUCell, MultiRNNCell, _nest, dynamic_rnn
from rnnflow.recurrence import _ext, fused
from rnnflow.recurrence import _fused_kernels as kernels

MIXED = [3, 7, 0, 7, 1, 5, 3]


def _case(kind, dtype, batch, lengths, seed=0):
    torch.manual_seed(seed)
    cell = make_cell(kind, dtype)
    x = torch.randn(batch, 7, CELL_INPUT_DEPTH, dtype=dtype)
    init = _nest.map_structure(torch.randn_like, cell.zero_state(batch, dtype))
    seq = None if lengths == "none" else torch.tensor(MIXED[:batch])
    return cell, x, init, seq


@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
@pytest.mark.parametrize("batch", [1, 3, 7])
@pytest.mark.parametrize("lengths", ["none", "mixed"])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_no_grad_matches_reference_float64(kind, lengths, batch, time_major, loops, monkeypatch):
    monkeypatch.setattr(fused, "_CPU_LSTM_PEER", False)  # the compiled LSTM on every variant
    cell, x, init, seq = _case(kind, torch.float64, batch, lengths)
    if time_major:
        x = x.transpose(0, 1).contiguous()
    with torch.no_grad():
        ref = dynamic_rnn(
            cell,
            x,
            sequence_length=seq,
            initial_state=init,
            time_major=time_major,
            impl="reference",
        )
        fast = dynamic_rnn(
            cell, x, sequence_length=seq, initial_state=init, time_major=time_major, impl="fused"
        )
    assert_close_tree(fast, ref, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "multi"])
def test_inference_mode_matches_the_training_path(kind, monkeypatch):
    """``torch.inference_mode`` takes the inference ops, and they give what the autograd path
    gives (the same GEMMs and gate maths, so float64 agrees to rounding)."""
    monkeypatch.setattr(fused, "_CPU_LSTM_PEER", False)
    cell, x, init, seq = _case(kind, torch.float64, 7, "mixed")
    x_grad = x.clone().requires_grad_()
    train = dynamic_rnn(cell, x_grad, sequence_length=seq, initial_state=init, impl="fused")
    with torch.inference_mode():
        infer = dynamic_rnn(cell, x, sequence_length=seq, initial_state=init, impl="fused")
    assert _nest.flatten(train)[0].grad_fn is not None
    assert all(t.is_inference() for t in _nest.flatten(infer))
    assert_close_tree(infer, _nest.map_structure(torch.Tensor.detach, train), atol=1e-12, rtol=0)


class _Spy:
    """The compiled loops, recording which ops are called."""

    def __init__(self, ops):
        self.ops, self.calls = ops, []

    def __getattr__(self, name):
        self.calls.append(name)
        return getattr(self.ops, name)


@pytest.mark.parametrize("isa", _ext.ISAS)
def test_chosen_automatically_when_no_gradient_is_needed(isa, force_isa, monkeypatch):
    """No grad (``no_grad``, or nothing requiring grad): one inference op per layer and no
    autograd node; a gradient needed: the training ops."""
    force_isa(isa)
    monkeypatch.setattr(fused, "_CPU_LSTM_PEER", False)
    spy = _Spy(_ext.loops())
    monkeypatch.setattr(kernels, "_loops", lambda x: spy)
    cell = MultiRNNCell(
        [
            BasicRNNCell(4, input_size=3),
            BasicLSTMCell(5, input_size=4),
            GRUCell(6, input_size=5),
        ]
    )
    x = torch.randn(2, 9, 3)
    with torch.no_grad():
        out, _ = dynamic_rnn(cell, x)
    assert spy.calls == ["rnn_infer", "lstm_infer", "gru_infer"]
    assert out.grad_fn is None
    spy.calls.clear()
    cell.requires_grad_(False)
    dynamic_rnn(cell, x)  # grad mode on, but nothing to differentiate
    assert spy.calls == ["rnn_infer", "lstm_infer", "gru_infer"]
    spy.calls.clear()
    cell.requires_grad_(True)
    out, _ = dynamic_rnn(cell, x)
    assert out.grad_fn is not None
    assert not any(name.endswith("_infer") for name in spy.calls)


def test_batch_major_outputs_are_written_batch_major(monkeypatch):
    """Batch-major inputs give batch-major outputs with no transposed copy: the outputs come
    back contiguous [B, T, H]."""
    monkeypatch.setattr(fused, "_CPU_LSTM_PEER", False)
    if kernels._infer_ops(torch.zeros(1)) is None:
        pytest.skip("compiled loops unavailable")
    for kind in ("rnn", "lstm", "gru", "multi"):
        cell, x, init, _ = _case(kind, torch.float32, 5, "none")
        with torch.no_grad():
            out, _ = dynamic_rnn(cell, x, initial_state=init)
        assert out.shape[:2] == (5, 7) and out.is_contiguous(), kind


BIG = {"rnn": BasicRNNCell, "lstm": BasicLSTMCell, "gru": GRUCell}


@pytest.mark.parametrize("units", [128, 37], ids=["128_units", "37_units"])
@pytest.mark.parametrize("batch", [1, 4, 13, 96])
@pytest.mark.parametrize("lengths", ["none", "mixed"])
@pytest.mark.parametrize("kind", list(BIG))
def test_float32_matches_float64(kind, lengths, batch, units, packed, monkeypatch):
    """float32 through the packed GEMM of each kernel variant (the Python loops' float32 is
    test_fused_ext's): 128 units read the weights in place at batch <= the
    register block (whole panels), 37 units pack them (a partial panel); batch 1 and 4 project
    all steps first, 13 and 96 a step at a time (a partial and full register blocks). The
    error against float64 must be of the float32 reference loop's order, or within 1e-6 of the
    largest value (the rule of test_fused_ext's float32 parity)."""
    monkeypatch.setattr(fused, "_CPU_LSTM_PEER", False)
    torch.manual_seed(0)
    steps = 28
    cell = BIG[kind](units, input_size=units)
    x = torch.randn(batch, steps, units)
    seq = None
    if lengths == "mixed":
        seq = torch.tensor([(5 * b + 3) % (steps + 1) for b in range(batch)])
    with torch.no_grad():
        truth = dynamic_rnn(
            copy.deepcopy(cell).double(), x.double(), sequence_length=seq, impl="reference"
        )
        ref = dynamic_rnn(cell, x, sequence_length=seq, impl="reference")
        fast = dynamic_rnn(cell, x, sequence_length=seq, impl="fused")
    for t, r, f in zip(_nest.flatten(truth), _nest.flatten(ref), _nest.flatten(fast)):
        ref_err = float((r.double() - t).abs().max())
        fast_err = float((f.double() - t).abs().max())
        scale = float(t.abs().max())
        assert fast_err <= 4 * ref_err + 1e-6 * max(1.0, scale), (fast_err, ref_err, scale)


# ----------------------------------------------------------------------------- fused.infer_fast
FAST_KINDS = ["rnn", "rnn_relu", "lstm", "lstm_concat", "gru"]


@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
@pytest.mark.parametrize("steps", [7, 1])
@pytest.mark.parametrize("given_state", [False, True], ids=["zero_state", "initial_state"])
@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "frozen"])
@pytest.mark.parametrize("kind", FAST_KINDS)
def test_plain_call_takes_the_fast_path_and_matches_reference(
    kind, mode, given_state, steps, time_major, monkeypatch
):
    """``dynamic_rnn(cell, x[, initial_state=...])``, no gradient needed (no_grad,
    inference_mode, or grad mode on with frozen parameters), one step (a language model's
    sampling step) or several: ``infer_fast`` answers, equal to the reference loop (float64,
    1e-10)."""
    monkeypatch.setattr(fused, "_CPU_LSTM_PEER", False)
    if kernels._infer_ops(torch.zeros(1, dtype=torch.float64)) is None:
        pytest.skip("compiled loops unavailable")
    taken = []
    real = fused.infer_fast
    monkeypatch.setattr(fused, "infer_fast", lambda *a: taken.append(real(*a)) or taken[-1])
    cell, x, init, _ = _case(kind, torch.float64, 4, "none")
    x = x[:, :steps]
    init = init if given_state else None
    if time_major:
        x = x.transpose(0, 1).contiguous()
    context = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}.get(mode)
    if context is None:
        cell.requires_grad_(False)
    with context() if context else torch.enable_grad():
        fast = dynamic_rnn(cell, x, initial_state=init, time_major=time_major)
        ref = dynamic_rnn(cell, x, initial_state=init, time_major=time_major, impl="reference")
    assert taken and taken[0] is not None
    assert type(fast[1]) is type(ref[1])
    assert_close_tree(fast, ref, atol=1e-10, rtol=1e-10)


def test_fast_path_declines_what_it_does_not_cover(monkeypatch):
    """Anything beyond the plain call goes to the general path: a gradient needed (of the
    parameters or of the initial state), a stack, autocast, a state of another structure;
    lengths or another impl are not offered to it."""
    answers = []
    real = fused.infer_fast
    monkeypatch.setattr(fused, "infer_fast", lambda *a: answers.append(real(*a)) or answers[-1])
    cell = BasicRNNCell(4, input_size=3)
    x = torch.randn(2, 5, 3)
    out, _ = dynamic_rnn(cell, x)  # parameters require grad: the training path
    assert out.grad_fn is not None and answers == [None]
    cell.requires_grad_(False)
    state = torch.zeros(2, 4, requires_grad=True)
    out, _ = dynamic_rnn(cell, x, initial_state=state)
    assert out.grad_fn is not None and answers == [None, None]
    lstm = BasicLSTMCell(4, input_size=3)
    with torch.no_grad():
        answers.clear()
        dynamic_rnn(MultiRNNCell([cell]), x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            dynamic_rnn(cell, x)
        dynamic_rnn(lstm, x, initial_state=[torch.zeros(2, 4), torch.zeros(2, 4)])  # a list
        assert answers == [None, None, None]
        dynamic_rnn(cell, x, sequence_length=[5, 2])
        dynamic_rnn(cell, x, impl="fused")
        assert answers == [None, None, None]


def test_fast_path_leaves_errors_to_the_general_checks():
    """A cell built for another depth, or a state of the wrong size, is declined and refused
    by dynamic_rnn's own checks."""
    cell = BasicLSTMCell(4, input_size=3)
    message = r"dynamic_rnn: cell \(BasicLSTMCell\) was built for input depth 3, got depth 5"
    with torch.no_grad(), pytest.raises(ValueError, match=message):
        dynamic_rnn(cell, torch.randn(2, 6, 5))
    state = (torch.zeros(2, 4), torch.zeros(2, 5))
    message = (
        r"dynamic_rnn: initial_state must match the cell's state structure LSTMStateTuple\(c="
        r"Tensor\(2, 4\), h=Tensor\(2, 4\)\), got \(Tensor\(2, 4\), Tensor\(2, 5\)\)"
    )
    with torch.no_grad(), pytest.raises(ValueError, match=message):
        dynamic_rnn(cell, torch.randn(2, 6, 3), initial_state=state)
