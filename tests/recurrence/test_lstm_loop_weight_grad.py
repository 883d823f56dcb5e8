"""The float32 LSTM backward loop's weight gradient (csrc/loops_isa.h ``WeightGrad32``): d_kernel
and d_bias summed step by step inside ``lstm_backward`` from each step's d_gates rows, instead
of ``weight_grad``'s pass over all of them afterwards, for every kernel variant; against an
independent truth: the same layer's backward in float64 (ATen's GEMMs, no in-loop gradient)
and torch's matmul over its d_gates. Gate widths of whole panels (d_gates read in place) and
not (packed), 1 row, an odd batch, a shrinking batch, a zero initial state (h_{-1}'s rows left
out), d_gates kept or not, 1 and 2 threads (the threads' partial sums)."""

from __future__ import annotations

import copy

import pytest
import torch
from rnnflow_testing import CELL_INPUT_DEPTH

from rnnflow import BasicLSTMCell, dynamic_rnn
from rnnflow.recurrence import _fused_kernels as kernels
from rnnflow.recurrence import fused

SHAPES = {
    "1row-H5": (3, 1, 1, 5, None),  # 4H = 20: one partial panel
    "odd-shrinking-H37": (4, 13, 28, 37, [4] * 5 + [3] * 4 + [1] * 3 + [0]),
    "whole-panels-H32": (5, 12, 3, 32, None),
    "tutorial-H128": (6, 128, 28, 128, None),
}


def layer(dtype, steps, batch, depth, units, lengths, zero_h0):
    """The forward buffers of an LSTM layer in ``dtype`` (the compiled loops), and d_out."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(steps, batch, depth, generator=gen)
    kernel = 0.3 * torch.randn(depth + units, 4 * units, generator=gen)
    bias = torch.randn(4 * units, generator=gen)
    c0, h0 = torch.randn(batch, units, generator=gen), torch.randn(batch, units, generator=gen)
    if zero_h0:
        c0, h0 = torch.zeros_like(c0), torch.zeros_like(h0)
    d_out = torch.randn(steps, batch, units, generator=gen)
    x, kernel, bias, c0, h0, d_out = (t.to(dtype) for t in (x, kernel, bias, c0, h0, d_out))
    lens = None if lengths is None else torch.tensor(lengths)
    bs = kernels.batch_sizes(lens, batch, steps)
    gates, cs, hs, tcs, *_ = kernels.lstm_forward(
        x, c0, h0, kernel, bias, lens, bs, "tanh", zero_h0=zero_h0
    )
    buffers = (d_out, c0, h0, gates, cs, tcs, kernel[depth:], bs, 0, False, True, False)
    return x, hs, kernel, buffers


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("keep", [True, False], ids=["d_gates-kept", "two-steps"])
@pytest.mark.parametrize("zero_h0", [False, True], ids=["h0", "zero-h0"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_float32_backward_loop_computes_the_weight_gradient(
    shape, zero_h0, keep, threads, packed
):
    steps, batch, depth, units, lengths = SHAPES[shape]
    x, hs, kernel, buffers = layer(torch.float32, steps, batch, depth, units, lengths, zero_h0)
    dk, db = torch.empty_like(kernel), torch.empty(4 * units)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        flat, _, _ = packed.lstm_backward(*buffers, x, hs, dk, db, keep, zero_h0)
    finally:
        torch.set_num_threads(before)
    # the truth: float64's backward (no in-loop gradient), then torch's matmul over its d_gates
    x64, hs64, _, buffers64 = layer(torch.float64, steps, batch, depth, units, lengths, zero_h0)
    d_gates = packed.lstm_backward(*buffers64)[0]
    rows = torch.cat([x64, hs64[:steps]], dim=2).reshape(steps * batch, -1)
    want_k = rows.t() @ d_gates.reshape(steps * batch, -1)
    want_b = d_gates.sum((0, 1))
    scale = float(want_k.abs().max())
    tol = 1e-5 * max(1.0, scale)
    torch.testing.assert_close(dk.double(), want_k, rtol=1e-4, atol=tol)
    torch.testing.assert_close(db.double(), want_b, rtol=1e-4, atol=tol)
    if keep:  # the input gradient's d_gates, all steps
        torch.testing.assert_close(flat.double(), d_gates, rtol=1e-4, atol=tol)


def test_float64_refuses_the_weight_gradient_in_the_loop(packed):
    x, hs, kernel, buffers = layer(torch.float64, 3, 4, 5, 16, None, False)
    dk, db = torch.empty_like(kernel), torch.empty(64, dtype=torch.float64)
    with pytest.raises(
        RuntimeError,
        match=r"lstm_backward: the weight gradient in the loop needs float32, got Double",
    ):
        packed.lstm_backward(*buffers, x, hs, dk, db)


@pytest.mark.parametrize("min_rows", [1, 10**9], ids=["in-the-loop", "after-the-loop"])
@pytest.mark.parametrize("lengths", [None, [5, 0, 3, 5, 1, 2, 4]], ids=["full", "mixed"])
@pytest.mark.parametrize("x_grad", [False, True], ids=["no-input-grad", "input-grad"])
def test_fused_training_gradients_match_float64(x_grad, lengths, min_rows, packed, monkeypatch):
    """Through dynamic_rnn (a zero state, so h_{-1}'s rows are left out too): the kernel's and
    the bias's gradients of the fused float32 LSTM, its weight gradient from the backward loop
    (batches of at least ``_LOOP_WG_MIN_ROWS`` rows) or from one pass after it (smaller ones),
    against the reference loop in float64."""
    monkeypatch.setattr(fused, "_CPU_LSTM_PEER", False)
    monkeypatch.setattr(kernels, "_LOOP_WG_MIN_ROWS", min_rows)
    torch.manual_seed(0)
    cell = BasicLSTMCell(37, input_size=CELL_INPUT_DEPTH)
    x = torch.randn(7, 5, CELL_INPUT_DEPTH)
    seq = None if lengths is None else torch.tensor(lengths)

    def grads(cell, x, impl):
        x = x.clone().requires_grad_(x_grad)
        out, state = dynamic_rnn(cell, x, sequence_length=seq, impl=impl)
        loss = (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)).sum()
        loss = loss + (state.h * 1.5).sum()
        wrt = [*cell.parameters(), *([x] if x_grad else [])]
        return torch.autograd.grad(loss, wrt)

    truth = grads(copy.deepcopy(cell).double(), x.double(), "reference")
    fast = grads(cell, x, "fused")
    for f, t in zip(fast, truth):
        tol = 1e-5 * max(1.0, float(t.abs().max()))
        torch.testing.assert_close(f.double(), t, rtol=1e-4, atol=tol)
