"""The BasicRNNCell forward loop's step product, [x_t | h_{t-1}] [W_x; W_h] + b: each step's input
projection computed in the loop with its recurrent product (float32: the rows side by side, one
product with the two weights packed as one; csrc/loops_isa.h ``rnn_forward_impl``), and
``zero_h0``, which skips h_{-1} W_h at step 0 (float32: the joint weight's W_x rows alone,
``StepWeight::leading``), for every kernel variant and float64, against the same RNN computed
in float64 with torch's matmul: input depths and units that are multiples of nothing, H not a
multiple of the panel width, 1 row, an odd batch (a partial register block) and a batch that
shrinks mid-sequence. (The LSTM's ``zero_h0``: test_lstm_step_products.py.)"""

from __future__ import annotations

import pytest
import torch
from rnnflow_testing import STEP_PRODUCT_SHAPES

from rnnflow.recurrence import _fused_kernels as kernels

SHAPES = list(STEP_PRODUCT_SHAPES.values())
IDS = list(STEP_PRODUCT_SHAPES)


def rnn_float64(x, w_x, w_h, bias, h0, bs):
    """h of every step: tanh(x_t W_x + h_{t-1} W_h + b) in float64 from h_{-1} = h0, rows past
    bs[t] left at zero."""
    steps, batch, _ = x.shape
    x, w_x, w_h, bias = (t.double() for t in (x, w_x, w_h, bias))
    h = h0.double().clone()
    hs = torch.zeros(steps, batch, h0.shape[1], dtype=torch.float64)
    for t in range(steps):
        n = bs[t]
        h = h.clone()
        h[:n] = torch.tanh(x[t, :n] @ w_x.t() + h[:n] @ w_h.t() + bias)
        hs[t, :n] = h[:n]
    return hs


def run_rnn(ops, dtype, batch, depth, units, bs, h0, zero_h0):
    torch.manual_seed(0)
    steps = len(bs)
    x = torch.randn(steps, batch, depth, dtype=dtype)
    kernel = torch.randn(depth + units, units, dtype=dtype) / (depth + units) ** 0.5
    w_x, w_h = kernel[:depth].t(), kernel[depth:].t()  # as the loop gets them: views
    bias = torch.randn(units, dtype=dtype)
    hs = torch.zeros(steps + 1, batch, units, dtype=dtype)
    hs[0] = h0
    ops.rnn_forward(x, w_x, bias, hs, w_h, bs, kernels._ACT_CODES["tanh"], False, zero_h0)
    return hs, (x, w_x, w_h, bias)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("batch,depth,units,bs", SHAPES, ids=IDS)
def test_rnn_step_products_match_float64(batch, depth, units, bs, dtype, packed):
    """Any initial state (zero_h0 False): h0 enters step 0's product."""
    h0 = torch.randn(batch, units, dtype=dtype, generator=torch.Generator().manual_seed(1))
    hs, args = run_rnn(packed, dtype, batch, depth, units, bs, h0, False)
    want = rnn_float64(*args, h0, bs)
    tol = 2e-6 * (depth + units) ** 0.5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(hs[1:].double(), want, rtol=tol, atol=tol)
    torch.testing.assert_close(hs[0], h0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("batch,depth,units,bs", SHAPES, ids=IDS)
def test_rnn_zero_h0_skips_step_0s_recurrent_product(batch, depth, units, bs, dtype, packed):
    """zero_h0 (the caller's word that h0 is zeros; not checked): step 0 is x_0 W_x + b alone.
    hs[0] holds non-zero values here, so the result equals the float64 RNN from h0 = 0 only if
    exactly step 0's product with it is skipped, and every later step reads h_{t-1}."""
    h0 = torch.full((batch, units), 3.0, dtype=dtype)
    hs, args = run_rnn(packed, dtype, batch, depth, units, bs, h0, True)
    want = rnn_float64(*args, torch.zeros(batch, units), bs)
    tol = 2e-6 * (depth + units) ** 0.5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(hs[1:].double(), want, rtol=tol, atol=tol)
