"""The fused path == the reference loop: outputs, final state and every gradient (R9).

float64 grid (1e-10): cells x layouts x lengths (none, partial with a zero, full) x initial state
given or not. Then float32 through the fast GEMMs and oneDNN's LSTM (1e-5), the cuDNN weight
conversion (run on CPU), the bfloat16 mode, and edge cases.
"""

from __future__ import annotations

import pytest
import torch
from rnnflow_testing import (
    CELL_INPUT_DEPTH,
    CELL_KINDS,
    assert_close_tree,
    make_cell,
    outputs_and_grads,
)

from rnnflow import (
    BasicLSTMCell,
    BasicRNNCell,
    DropoutWrapper,
    GRUCell,
    LSTMStateTuple,
    _nest,
    dynamic_rnn,
)
from rnnflow.recurrence import fused

DEPTH, BATCH, STEPS = CELL_INPUT_DEPTH, 4, 6


KINDS = CELL_KINDS
LENGTHS = {"none": None, "partial": [6, 2, 0, 3], "full": [6, 6, 6, 6]}


def inputs(time_major: bool, dtype: torch.dtype) -> torch.Tensor:
    shape = (STEPS, BATCH, DEPTH) if time_major else (BATCH, STEPS, DEPTH)
    return torch.randn(shape, dtype=dtype, requires_grad=True)


def random_state(cell, dtype):
    zero = cell.zero_state(BATCH, dtype)
    return _nest.map_structure(lambda z: torch.randn_like(z).requires_grad_(), zero)


@pytest.mark.parametrize("given_state", [False, True], ids=["zero_state", "initial_state"])
@pytest.mark.parametrize("lengths", list(LENGTHS), ids=list(LENGTHS))
@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
@pytest.mark.parametrize("kind", KINDS)
def test_fused_matches_reference_float64(kind, time_major, lengths, given_state):
    cell = make_cell(kind, torch.float64)
    x = inputs(time_major, torch.float64)
    seq = None if LENGTHS[lengths] is None else torch.tensor(LENGTHS[lengths])
    init = random_state(cell, torch.float64) if given_state else None
    assert fused.fusable(cell, x) == (True, "")
    ref = outputs_and_grads(cell, x, seq, init, "reference", time_major)
    fast = outputs_and_grads(cell, x, seq, init, "fused", time_major)
    assert_close_tree(fast, ref, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("lengths", ["none", "partial"])
@pytest.mark.parametrize("kind", KINDS)
def test_fused_matches_reference_float32(kind, lengths):
    """float32 runs oneDNN GEMMs, the sigmoid-based tanh and (LSTM) oneDNN's fused LSTM."""
    cell = make_cell(kind, torch.float32)
    x = inputs(False, torch.float32)
    seq = None if LENGTHS[lengths] is None else torch.tensor(LENGTHS[lengths])
    init = random_state(cell, torch.float32)
    ref = outputs_and_grads(cell, x, seq, init, "reference")
    fast = outputs_and_grads(cell, x, seq, init, "fused")
    assert_close_tree(fast, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "lstm_concat", "lstm_cell"])
def test_generic_lstm_kernel_matches_reference_float32(kind, monkeypatch):
    """The LSTM kernel that oneDNN's LSTM replaces on CPU (lengths-free float32) stays exact."""
    monkeypatch.setattr(fused, "_CPU_LSTM_PEER", False)
    cell = make_cell(kind, torch.float32)
    x = inputs(True, torch.float32)
    init = random_state(cell, torch.float32)
    ref = outputs_and_grads(cell, x, None, init, "reference", True)
    fast = outputs_and_grads(cell, x, None, init, "fused", True)
    assert_close_tree(fast, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["rnn", "rnn_relu", "lstm", "lstm_concat", "lstm_cell"])
def test_cudnn_weight_conversion_matches_reference(kind, monkeypatch):
    """The CUDA branch's TF -> PyTorch weight conversion, run through PyTorch's CPU kernels."""
    monkeypatch.setattr(fused, "_use_peer_kernel", lambda *args: True)
    cell = make_cell(kind, torch.float64)
    x = inputs(True, torch.float64)
    init = random_state(cell, torch.float64)
    ref = outputs_and_grads(cell, x, None, init, "reference", True)
    fast = outputs_and_grads(cell, x, None, init, "fused", True)
    assert_close_tree(fast, ref, atol=1e-10, rtol=1e-10)


def test_gradients_land_in_the_cells_own_parameters():
    cell = BasicLSTMCell(5, input_size=DEPTH, dtype=torch.float64)
    out, state = dynamic_rnn(cell, inputs(False, torch.float64), impl="fused")
    (out.sum() + state.c.sum()).backward()
    assert cell.kernel.grad is not None and cell.bias.grad is not None
    assert cell.kernel.grad.shape == cell.kernel.shape


def test_identity_dropout_wrapper_is_fused_and_unchanged():
    inner = BasicRNNCell(5, input_size=DEPTH, dtype=torch.float64)
    cell = DropoutWrapper(inner, input_keep_prob=0.5, output_keep_prob=0.5).eval()
    x = inputs(False, torch.float64)
    assert fused.fusable(cell, x) == (True, "")
    ref = outputs_and_grads(cell, x, torch.tensor([6, 1, 0, 4]), None, "reference")
    fast = outputs_and_grads(cell, x, torch.tensor([6, 1, 0, 4]), None, "fused")
    assert_close_tree(fast, ref, atol=1e-10, rtol=1e-10)


def test_zero_steps_and_all_zero_lengths():
    cell = GRUCell(5, input_size=DEPTH, dtype=torch.float64)
    init = torch.randn(BATCH, 5, dtype=torch.float64)
    out, state = dynamic_rnn(
        cell, torch.zeros(BATCH, 0, DEPTH, dtype=torch.float64), initial_state=init, impl="fused"
    )
    assert out.shape == (BATCH, 0, 5) and state is init
    x = inputs(False, torch.float64)
    ref = outputs_and_grads(cell, x, torch.zeros(BATCH, dtype=torch.long), None, "reference")
    fast = outputs_and_grads(cell, x, torch.zeros(BATCH, dtype=torch.long), None, "fused")
    assert_close_tree(fast, ref, atol=1e-10, rtol=1e-10)


def test_inference_without_grad_matches():
    cell = make_cell("multi", torch.float64)
    x = torch.randn(BATCH, STEPS, DEPTH, dtype=torch.float64)
    seq = torch.tensor([6, 2, 0, 3])
    with torch.no_grad():
        ref = dynamic_rnn(cell, x, sequence_length=seq, impl="reference")
        fast = dynamic_rnn(cell, x, sequence_length=seq, impl="fused")
    assert_close_tree(fast, ref, atol=1e-10, rtol=1e-10)


def test_padding_past_lengths_never_reaches_the_gradients():
    """A relu RNN whose padding explodes: the reference freezes the state there, the fused path
    lets the recurrence run on; both must give the same finite gradients."""
    cell = BasicRNNCell(5, activation="relu", input_size=DEPTH, dtype=torch.float64)
    with torch.no_grad():
        cell.kernel.mul_(50.0)
    x = torch.full((BATCH, 40, DEPTH), 1e3, dtype=torch.float64, requires_grad=True)
    seq = torch.tensor([2, 1, 0, 3])
    ref = outputs_and_grads(cell, x, seq, None, "reference")
    fast = outputs_and_grads(cell, x, seq, None, "fused")
    assert all(torch.isfinite(g).all() for g in fast[2])
    assert_close_tree(fast, ref, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_bfloat16_mode_under_autocast(kind):
    """Opt-in mixed precision: bfloat16 outputs/state close to float32, float32 gradients."""
    cell = make_cell(kind, torch.float32)
    x = torch.randn(BATCH, STEPS, DEPTH)
    ref_out, ref_state = dynamic_rnn(cell, x, impl="fused")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = dynamic_rnn(cell, x, impl="fused")
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref_out, atol=3e-2, rtol=3e-2)
    h = state.h if isinstance(state, LSTMStateTuple) else state
    ref_h = ref_state.h if isinstance(ref_state, LSTMStateTuple) else ref_state
    torch.testing.assert_close(h.float(), ref_h, atol=3e-2, rtol=3e-2)
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in cell.parameters())
