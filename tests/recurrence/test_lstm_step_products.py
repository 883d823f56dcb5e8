"""The float32 LSTM forward loop's step product, [x_t | h_{t-1}] [W_x; W_h] + b: each step's rows
copied side by side and multiplied by the two weights packed as one (csrc/loops_isa.h
``lstm_forward_impl``, ``StepWeight``'s joint constructor), for every kernel variant, against
the same LSTM computed in float64 with torch's matmul: input depths and units that are
multiples of nothing, 4H not a multiple of the panel width, 1 row (the kernel's independent
chains, K not a multiple of their number), an odd batch (a partial register block) and a batch
that shrinks mid-sequence; and ``zero_h0`` (step 0: the joint weight's W_x rows alone)."""

from __future__ import annotations

import pytest
import torch
from rnnflow_testing import STEP_PRODUCT_SHAPES

from rnnflow.recurrence import _fused_kernels as kernels

SHAPES = list(STEP_PRODUCT_SHAPES.values())
IDS = list(STEP_PRODUCT_SHAPES)


def lstm_float64(x, w_x, w_h, bias, bs):
    """gates (activated), c, h of every step: the TF1 LSTM (i, j, f, o) in float64, rows past
    bs[t] left at zero."""
    steps, batch, _ = x.shape
    units = w_h.shape[1]
    x, w_x, w_h, bias = (t.double() for t in (x, w_x, w_h, bias))
    c = torch.zeros(batch, units, dtype=torch.float64)
    h = torch.zeros(batch, units, dtype=torch.float64)
    gates = torch.zeros(steps, batch, 4 * units, dtype=torch.float64)
    hs = torch.zeros(steps, batch, units, dtype=torch.float64)
    for t in range(steps):
        n = bs[t]
        pre = x[t, :n] @ w_x.t() + h[:n] @ w_h.t() + bias
        i, j, f, o = pre.split(units, dim=1)
        i, j, f, o = i.sigmoid(), j.tanh(), f.sigmoid(), o.sigmoid()
        gates[t, :n] = torch.cat([i, j, f, o], dim=1)
        c = c.clone()
        c[:n] = f * c[:n] + i * j
        h = h.clone()
        h[:n] = o * c[:n].tanh()
        hs[t, :n] = h[:n]
    return gates, hs


@pytest.mark.parametrize("batch,depth,units,bs", SHAPES, ids=IDS)
def test_step_products_match_float64(batch, depth, units, bs, packed):
    ops = packed
    torch.manual_seed(0)
    steps = len(bs)
    x = torch.randn(steps, batch, depth)
    w_x = torch.randn(4 * units, depth) / depth**0.5
    w_h = torch.randn(4 * units, units) / units**0.5
    bias = torch.randn(4 * units)
    gates = torch.zeros(steps, batch, 4 * units)
    cs = torch.zeros(steps + 1, batch, units)
    hs = torch.zeros(steps + 1, batch, units)
    tcs = torch.zeros(steps, batch, units)
    code = kernels._ACT_CODES["tanh"]
    ops.lstm_forward(x, w_x, bias, gates, cs, hs, tcs, w_h, bs, code, False)
    want_gates, want_hs = lstm_float64(x, w_x, w_h, bias, bs)
    tol = 2e-6 * (depth + units) ** 0.5
    torch.testing.assert_close(gates.double(), want_gates, rtol=tol, atol=tol)
    torch.testing.assert_close(hs[1:].double(), want_hs, rtol=tol, atol=tol)


@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_step_products_read_weights_of_any_layout(layout, packed):
    """w_x and w_h as the loop receives them (views of the TF kernel's rows, transposed) or
    dense: the packing reads both through their strides."""
    ops = packed
    torch.manual_seed(1)
    depth, units, batch = 7, 9, 5
    kernel = torch.randn(depth + units, 4 * units) / 4
    w_x, w_h = kernel[:depth].t(), kernel[depth:].t()
    if layout == "rows":
        w_x, w_h = w_x.contiguous(), w_h.contiguous()
    x = torch.randn(2, batch, depth)
    bias = torch.randn(4 * units)
    gates = torch.zeros(2, batch, 4 * units)
    cs, hs = torch.zeros(3, batch, units), torch.zeros(3, batch, units)
    tcs = torch.zeros(2, batch, units)
    ops.lstm_forward(x, w_x, bias, gates, cs, hs, tcs, w_h, [batch] * 2, 0, False)
    want_gates, want_hs = lstm_float64(x, w_x, w_h, bias, [batch] * 2)
    torch.testing.assert_close(gates.double(), want_gates, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hs[1:].double(), want_hs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch,depth,units,bs", SHAPES, ids=IDS)
def test_lstm_zero_h0_skips_step_0s_recurrent_product(batch, depth, units, bs, packed):
    """zero_h0 (the caller's word that h0 is zeros; not checked): step 0 multiplies x_0 by the
    joint weight's W_x rows alone (``StepWeight::leading``). hs[0] holds non-zero values here,
    so the result equals the float64 LSTM from h0 = 0 only if exactly step 0's product with it
    is skipped, and every later step reads h_{t-1}."""
    torch.manual_seed(0)
    steps = len(bs)
    x = torch.randn(steps, batch, depth)
    kernel = torch.randn(depth + units, 4 * units) / (depth + units) ** 0.5
    w_x, w_h = kernel[:depth].t(), kernel[depth:].t()
    bias = torch.randn(4 * units)
    gates = torch.zeros(steps, batch, 4 * units)
    cs = torch.zeros(steps + 1, batch, units)
    hs = torch.full((steps + 1, batch, units), 3.0)
    tcs = torch.zeros(steps, batch, units)
    code = kernels._ACT_CODES["tanh"]
    packed.lstm_forward(x, w_x, bias, gates, cs, hs, tcs, w_h, bs, code, False, False, None, True)
    want_gates, want_hs = lstm_float64(x, w_x, w_h, bias, bs)
    tol = 2e-6 * (depth + units) ** 0.5
    torch.testing.assert_close(gates.double(), want_gates, rtol=tol, atol=tol)
    for t in range(steps):  # rows past bs[t] keep the buffer's 3.0: compare the running ones
        n = bs[t]
        torch.testing.assert_close(hs[t + 1, :n].double(), want_hs[t, :n], rtol=tol, atol=tol)
