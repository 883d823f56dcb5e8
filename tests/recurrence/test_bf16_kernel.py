"""The bfloat16 step GEMM of the compiled LSTM loop (csrc/bf16_gemm.h, AVX512-BF16).

Where the CPU has AVX512-BF16 and the avx512 kernel variant runs, a BasicLSTMCell (or a plain
LSTMCell) under ``torch.autocast("cpu", dtype=torch.bfloat16)`` may run the compiled loop with
its recurrent products and weight gradient in bfloat16, float32 accumulation. Checked here
against float64 code written in this file (independent of rnnflow's kernels):

- the GEMMs alone against float64 products of the same bfloat16-rounded operands, within the
  float32 accumulation bound |sum_k a_k w_k - fl32(...)| <= K u32 sum_k |a_k w_k| (u32 = 2^-24;
  Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., eq. 3.5), so a dropped or
  doubled pair of K fails;
- the weight gradient the backward loop computes itself (each step's rows paired while in
  cache) against the float64 product over every step's rows, within the same bound, also when
  a zero initial state lets step 0 leave out h_{-1}'s products (zero_h0, dynamic_rnn's flag);
- the whole layer and its gradients against a float64 LSTM that rounds the same operands to
  bfloat16 (inputs, kernel, and h_{t-1} before each recurrent product), and against the
  float32 model;
- RNNFLOW_ISA=avx2|generic never reaches the kernel (the ops refuse; autocast still runs).

On a CPU without AVX512-BF16 these tests skip, saying so; the last one's autocast half runs
everywhere in test_fused_parity.py.
"""

from __future__ import annotations

import pytest
import torch

from rnnflow import BasicLSTMCell, LSTMCell, MultiRNNCell, dynamic_rnn
from rnnflow.recurrence import _ext, _fused_kernels, fused

U32 = 2.0**-24  # float32 unit roundoff
U16 = 2.0**-9  # bfloat16 unit roundoff (8 significant bits)


@pytest.fixture
def ops(force_isa):
    loops = force_isa("avx512")  # skips, naming what is missing, where it cannot
    if not loops.bf16_supported():
        pytest.skip(f"no AVX512-BF16 here ({_ext.cpu_description()}): the kernel cannot run")
    return loops


def _bf16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).double()


@pytest.mark.parametrize(
    "n, k, m",
    [
        (128, 128, 512),
        (128, 512, 128),
        (13, 37, 45),
        (1, 1, 1),
        (12, 3, 33),
        (25, 64, 32),
        (14, 301, 40),
    ],
)
def test_step_gemm_is_the_float64_product_of_the_rounded_operands(ops, n, k, m):
    """Full and partial register blocks (12 rows), panels (32 columns), odd K (a padded pair),
    K over the kernel's chunk of 128 pairs (512: two whole chunks; 301: a partial one with the
    padded pair)."""
    gen = torch.Generator().manual_seed(n * 1000 + k)
    a, w = torch.randn(n, k, generator=gen), torch.randn(m, k, generator=gen)
    want = _bf16(a) @ _bf16(w).t()
    bound = k * U32 * (_bf16(a).abs() @ _bf16(w).abs().t())
    assert ((ops.linear_bf16(a, w).double() - want).abs() <= bound).all()
    # w read through strides, each of the packing's three ways: k contiguous (above: the
    # backward loop's W_h), n contiguous (the forward's W_h^T, a transposed view), neither
    for view in (w.t().contiguous().t(), torch.stack([w, w], dim=2)[:, :, 0]):
        got_t = ops.linear_bf16(a, view).double()
        assert ((got_t - want).abs() <= bound).all()


@pytest.mark.parametrize(
    "rows, widths, g", [(3584, (28, 128), 512), (517, (13, 20), 70), (7, (3, 5), 45), (1, (1,), 1)]
)
def test_weight_grad_is_the_float64_product_of_the_rounded_operands(ops, rows, widths, g):
    """d_kernel = [bf16(x_k)^T bf16(d)] stacked (pairs along the rows: an odd count pads one;
    517 rows: two chunks of 128 pairs and a partial third), d_bias = d summed in float32."""
    gen = torch.Generator().manual_seed(rows)
    xs = [torch.randn(rows, w, generator=gen) for w in widths]
    d = torch.randn(rows, g, generator=gen)
    d_kernel, d_bias = ops.weight_grad_bf16(xs, d)
    x = torch.cat([_bf16(t) for t in xs], dim=1)
    want = x.t() @ _bf16(d)
    bound = rows * U32 * (x.abs().t() @ _bf16(d).abs())
    assert ((d_kernel.double() - want).abs() <= bound).all()
    bias_bound = rows * U32 * float(d.abs().sum(0).max())
    torch.testing.assert_close(d_bias.double(), d.double().sum(0), rtol=0, atol=bias_bound)


def _backward_inputs(steps, batch, depth, units, lengths, seed, zero_h0=False):
    """An LSTM layer's forward buffers (the bf16 loop's) and a d_out, for lstm_backward;
    zero_h0: a zero initial state, and the forward told so."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(steps, batch, depth, generator=gen)
    kernel = 0.3 * torch.randn(depth + units, 4 * units, generator=gen)
    bias = torch.randn(4 * units, generator=gen)
    c0, h0 = torch.randn(batch, units, generator=gen), torch.randn(batch, units, generator=gen)
    if zero_h0:
        c0, h0 = torch.zeros_like(c0), torch.zeros_like(h0)
    lens = None if lengths is None else torch.tensor(lengths)
    bs = _fused_kernels.batch_sizes(lens, batch, steps)  # rows sorted longest first
    gates, cs, hs, tcs, *_ = _fused_kernels.lstm_forward(
        x, c0, h0, kernel, bias, lens, bs, "tanh", True, zero_h0=zero_h0
    )
    d_out = torch.randn(steps, batch, units, generator=gen)
    buffers = (d_out, c0, h0, gates, cs, tcs, kernel[depth:], bs, 0, False, True, True)
    return x, hs, kernel, buffers


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "steps, batch, lengths",
    [(9, 37, None), (6, 128, None), (7, 40, [7] * 9 + [5] * 14 + [2] * 16 + [0])],
)
def test_the_backward_loop_computes_the_weight_gradient(ops, steps, batch, lengths, threads):
    """lstm_backward's d_kernel and d_bias (bf16: the weight gradient inside the loop, each
    step's rows paired): the float64 product of the same rounded operands over every step's
    live rows, [bf16(x_t) | bf16(h_{t-1})]^T bf16(d_gates_t), within the float32 accumulation
    bound of its R = sum of live rows terms (a dropped or doubled pair fails), and d_gates
    summed. Odd row counts (a pair padded with a zero row), chunks of 128 pairs spanning steps
    (6 x 128 rows: three chunks), shrinking batches, and two threads (each summing its own rows,
    the partial sums added at the end)."""
    depth, units = 5, 16
    x, hs, kernel, buffers = _backward_inputs(steps, batch, depth, units, lengths, steps + batch)
    d_kernel, d_bias = torch.full_like(kernel, float("nan")), torch.full((4 * units,), 7.0)
    ring_k, ring_b = torch.empty_like(kernel), torch.empty(4 * units)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        d_gates, *_ = ops.lstm_backward(*buffers, x, hs, d_kernel, d_bias)
        # keep_d_gates=False (no input gradient): two steps of d_gates kept
        ring = ops.lstm_backward(*buffers, x, hs, ring_k, ring_b, False)[0]
    finally:
        torch.set_num_threads(before)
    a = torch.cat([_bf16(x), _bf16(hs[:steps])], dim=2).reshape(-1, depth + units)
    d = _bf16(d_gates).reshape(-1, 4 * units)  # zero rows past each length
    want = a.t() @ d
    rows = sum(buffers[7])
    bound = rows * U32 * (a.abs().t() @ d.abs())
    assert ((d_kernel.double() - want).abs() <= bound).all()
    sums = d_gates.double().reshape(-1, 4 * units)
    bias_bound = rows * U32 * float(sums.abs().sum(0).max())
    torch.testing.assert_close(d_bias.double(), sums.sum(0), rtol=0, atol=bias_bound)
    # the same d_gates as the loop without the weight gradient
    assert torch.equal(d_gates, ops.lstm_backward(*buffers)[0])
    # ... and with keep_d_gates=False the same gradients; the first two steps' live rows
    assert torch.equal(ring_k, d_kernel) and torch.equal(ring_b, d_bias)
    for t in (0, 1):
        live = buffers[7][t]
        assert torch.equal(ring[t, :live], d_gates[t, :live])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "steps, batch, lengths",
    [(1, 37, None), (2, 37, None), (3, 128, None), (7, 40, [7] * 9 + [5] * 14 + [2] * 16 + [0])],
)
def test_a_zero_state_skips_the_products_of_h0(ops, steps, batch, lengths, threads):
    """zero_h0 (dynamic_rnn made the state: initial_state=None): step 0 leaves out h_{-1} W_h in
    the forward and the h rows' products of step 0 in the weight gradient. The same buffers as
    without the flag (only zero products are left out), and the weight gradient within the
    float32 accumulation bound of the float64 product of the rounded operands; one step alone
    (the h rows then get no product at all: zeros, d_kernel starting as NaN), a chunk of 128
    pairs split at step 0, shrinking batches, two threads."""
    depth, units = 5, 16
    seed = steps + batch
    x, hs, kernel, buffers = _backward_inputs(steps, batch, depth, units, lengths, seed, True)
    d_kernel, d_bias = torch.full_like(kernel, float("nan")), torch.full((4 * units,), 7.0)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        d_gates, *_ = ops.lstm_backward(*buffers, x, hs, d_kernel, d_bias, True, True)
        full_k, full_b = torch.empty_like(kernel), torch.empty(4 * units)
        ops.lstm_backward(*buffers, x, hs, full_k, full_b)  # zero_h0=False: every product
    finally:
        torch.set_num_threads(before)
    assert torch.equal(d_kernel, full_k) and torch.equal(d_bias, full_b)
    a = torch.cat([_bf16(x), _bf16(hs[:steps])], dim=2).reshape(-1, depth + units)
    d = _bf16(d_gates).reshape(-1, 4 * units)
    want = a.t() @ d
    bound = sum(buffers[7]) * U32 * (a.abs().t() @ d.abs())
    assert ((d_kernel.double() - want).abs() <= bound).all()
    assert not d_kernel[depth:].isnan().any()


@pytest.mark.parametrize("lengths", [None, [6, 6, 4, 1, 0]])
def test_the_loops_read_x_through_its_row_stride(ops, lengths):
    """bf16 mode reads x's rows through their stride (a batch-major input's transposed view,
    no copy first): the same buffers, outputs and gradients, bit for bit, as from the dense copy
    (x is rounded by the kernel either way); an x without unit stride within a row is refused
    (float32 reads strided rows too: test_strided_input.py)."""
    gen = torch.Generator().manual_seed(9)
    steps, batch, depth, units = 6, 5, 7, 16
    x_bm = torch.randn(batch, steps + 2, depth, generator=gen)[:, 1:-1]  # [B, T, D], a slice
    x = x_bm.transpose(0, 1)  # [T, B, D], row stride (T + 2) D
    kernel = 0.3 * torch.randn(depth + units, 4 * units, generator=gen)
    bias = torch.randn(4 * units, generator=gen)
    c0, h0 = torch.randn(batch, units, generator=gen), torch.randn(batch, units, generator=gen)
    d_out = torch.randn(steps, batch, units, generator=gen)
    lens = None if lengths is None else torch.tensor(lengths)
    bs = _fused_kernels.batch_sizes(lens, batch, steps)
    assert _fused_kernels.bf16_rows_input(x) is x and x.stride(1) == (steps + 2) * depth
    runs = []
    for given in (x, x.contiguous()):
        out16 = torch.zeros(steps, batch, units, dtype=torch.bfloat16)
        fwd = _fused_kernels.lstm_forward(
            given, c0, h0, kernel, bias, lens, bs, "tanh", True, out16
        )
        gates, cs, hs, tcs = fwd[:4]
        dk, db = torch.empty_like(kernel), torch.empty(4 * units)
        back = ops.lstm_backward(
            d_out,
            c0,
            h0,
            gates,
            cs,
            tcs,
            kernel[depth:],
            bs,
            0,
            False,
            True,
            True,
            given,
            hs,
            dk,
            db,
        )
        runs.append([*fwd, out16, *back, dk, db])
    for strided, dense in zip(*runs):
        assert torch.equal(strided, dense)
    inner = x.transpose(1, 2).contiguous().transpose(1, 2)  # strides [*, 1, B]
    with pytest.raises(RuntimeError, match=r"lstm_forward: x must have unit stride within a row"):
        _fused_kernels.lstm_forward(inner, c0, h0, kernel, bias, lens, bs, "tanh", True, None)


def test_a_zero_state_forward_is_the_full_one(ops):
    """The forward with zero_h0 and a zero h0: the same gates, states and outputs as the loop
    that multiplies h_{-1} = 0 (a step-0 mutant that skipped h at later steps, or x, fails)."""
    gen = torch.Generator().manual_seed(11)
    steps, batch, depth, units = 4, 13, 5, 16
    x = torch.randn(steps, batch, depth, generator=gen)
    kernel = 0.3 * torch.randn(depth + units, 4 * units, generator=gen)
    bias = torch.randn(4 * units, generator=gen)
    zero = torch.zeros(batch, units)
    bs = _fused_kernels.batch_sizes(None, batch, steps)
    runs = [
        _fused_kernels.lstm_forward(x, zero, zero, kernel, bias, None, bs, "tanh", True, None, z)
        for z in (False, True)
    ]
    for full, skipped in zip(*runs):
        assert torch.equal(full, skipped)
    with pytest.raises(RuntimeError, match=r"lstm_backward: zero_h0=True needs the weight"):
        buffers = _backward_inputs(2, 3, 5, 16, None, 0, True)[3]
        ops.lstm_backward(*buffers, None, None, None, None, True, True)


@pytest.mark.parametrize("given", [False, True])
def test_dynamic_rnn_says_when_the_state_is_its_zero_state(ops, given, monkeypatch):
    """initial_state=None: every LSTM layer (a MultiRNNCell's too) is told its state is zeros;
    a given initial state, zeros or not, never."""
    monkeypatch.setattr(fused, "_BF16_OVER_ONEDNN", True)
    told = []
    real = _fused_kernels.lstm_layer

    def lstm_layer(*args, **kwargs):
        told.append(kwargs["zero_h0"])
        return real(*args, **kwargs)

    monkeypatch.setattr(_fused_kernels, "lstm_layer", lstm_layer)
    cell = MultiRNNCell([BasicLSTMCell(16), BasicLSTMCell(8)])
    x = torch.randn(3, 5, 4)
    state = cell.zero_state(3, torch.float32) if given else None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dynamic_rnn(cell, x, initial_state=state, impl="fused")
    assert told == [not given, not given]


def test_the_backward_loop_weight_gradient_is_checked(ops):
    x, hs, kernel, buffers = _backward_inputs(3, 4, 5, 16, None, 0)
    dk, db = torch.empty_like(kernel), torch.empty(64)
    with pytest.raises(
        RuntimeError,
        match=r"lstm_backward: the weight gradient in the loop needs x, hs, d_kernel and d_bias "
        r"together",
    ):
        ops.lstm_backward(*buffers, x, hs, dk)
    with pytest.raises(
        RuntimeError,
        match=r"lstm_backward: d_kernel must be a Float CPU tensor of sizes \[21, 64\]",
    ):
        ops.lstm_backward(*buffers, x, hs, dk[1:], db)
    with pytest.raises(
        RuntimeError, match=r"lstm_backward: hs must be a Float CPU tensor of sizes \[>= 4, 4, 16\]"
    ):
        ops.lstm_backward(*buffers, x, hs[:3], dk, db)
    with pytest.raises(
        RuntimeError,
        match=r"lstm_backward: x must have unit stride within a row \(strides \[\*, \*, 1\]\), "
        r"got strides \[20, 1, 4\]",
    ):
        ops.lstm_backward(*buffers, x.transpose(1, 2).contiguous().transpose(1, 2), hs, dk, db)
    with pytest.raises(
        RuntimeError,
        match=r"lstm_backward: keep_d_gates=False needs the weight gradient in the loop",
    ):
        ops.lstm_backward(*buffers, None, None, None, None, False)
    with pytest.raises(
        RuntimeError, match=r"lstm_backward: d_kernel and d_bias must be contiguous"
    ):
        ops.lstm_backward(*buffers, x, hs, dk.t().contiguous().t(), db)


def test_the_ops_refuse_what_they_cannot_run(ops, monkeypatch):
    x = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=r"linear_bf16: bf16=True needs float32 buffers, got "):
        ops.linear_bf16(x, x)
    with pytest.raises(RuntimeError, match=r"linear_bf16: expected a \[n, K\] and w \[N, K\]"):
        ops.linear_bf16(torch.zeros(2, 3), torch.zeros(4, 5))
    with pytest.raises(RuntimeError, match=r"weight_grad_bf16: inputs\[i\] must be a Float CPU"):
        ops.weight_grad_bf16([torch.zeros(3, 2)], torch.zeros(4, 5))
    monkeypatch.setenv("RNNFLOW_ISA", "avx2")
    assert _ext.loops() is ops and not ops.bf16_supported()
    with pytest.raises(
        RuntimeError,
        match=r"needs AVX512-BF16 and the avx512 kernel variant \(running: avx2, avx512_bf16 "
        r"present\)",
    ):
        ops.linear_bf16(torch.zeros(2, 3), torch.zeros(4, 3))


def _oracle(kernel, bias, x, lengths, round_h):
    """TF1's BasicLSTMCell (gates i, j, f, o; forget_bias already in ``bias``), float64,
    batch-major ``x`` [B, T, D]; ``round_h``: h_{t-1} rounded to bfloat16 before the recurrent
    product (forward only: the gradient passes through, as the kernel's)."""
    batch, steps, depth = x.shape
    units = kernel.shape[1] // 4
    c = h = x.new_zeros(batch, units)
    outs = []
    for t in range(steps):
        hr = h + (_bf16(h) - h).detach() if round_h else h
        z = x[:, t] @ kernel[:depth] + hr @ kernel[depth:] + bias
        i, j, f, o = z.chunk(4, dim=1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(j)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        live = (t < lengths).unsqueeze(1)
        c, h = torch.where(live, c_new, c), torch.where(live, h_new, h)
        outs.append(torch.where(live, h_new, torch.zeros_like(h_new)))
    return torch.stack(outs, dim=1), c, h


@pytest.mark.parametrize("lengths", [None, [20, 3, 17, 0, 20, 9, 1]])
@pytest.mark.parametrize("cell_type", [BasicLSTMCell, LSTMCell])
def test_the_layer_and_its_gradients_match_a_float64_loop(ops, cell_type, lengths, monkeypatch):
    """Tolerances. Forward, against the float64 loop rounding the same operands: the kernel's
    remaining differences are float32 accumulation and gate maths (~1e-6) and, rarely, an
    element of h within ~1e-6 of a bfloat16 rounding boundary that rounds the other way (one
    2^-9 relative step of one product term, |w h| < 0.2 here: < 4e-4 in a pre-activation, damped
    by the gates' slopes <= 1); the outputs come back rounded to bfloat16 (|h| < 1: < 2^-9 =
    2e-3): atol 3e-3. Gradients: the backward also rounds d_gates before its recurrent product,
    and both operands of the weight gradient (each a 2^-9 relative error per term, terms of
    either sign, so relative to the sum of |terms|, not to the gradient): compared to each
    tensor's largest gradient, 16 u = 3e-2."""
    monkeypatch.setattr(fused, "_BF16_OVER_ONEDNN", True)
    torch.manual_seed(0)
    batch, steps, depth, units = 7, 20, 6, 32
    cell = cell_type(units, input_size=depth)
    x = torch.randn(batch, steps, depth, requires_grad=True)
    seq = None if lengths is None else torch.tensor(lengths)
    weights = torch.randn(batch, steps, units)
    spy = []
    real = _fused_kernels.lstm_layer

    def lstm_layer(*args, **kwargs):
        spy.append(args[-1])
        return real(*args, **kwargs)

    monkeypatch.setattr(_fused_kernels, "lstm_layer", lstm_layer)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = dynamic_rnn(cell, x, sequence_length=seq, impl="fused")
    assert spy == [True]  # the bfloat16 kernel ran
    assert out.dtype == state.c.dtype == state.h.dtype == torch.bfloat16
    (out.float() * weights).sum().backward()
    got = [out.double(), state.c.double(), state.h.double()]
    grads = [x.grad.double(), cell.kernel.grad.double(), cell.bias.grad.double()]

    shift = torch.zeros(4 * units, dtype=torch.float64)
    shift[2 * units : 3 * units] = 1.0  # forget_bias
    kernel = _bf16(cell.kernel.detach()).requires_grad_()
    bias = cell.bias.detach().double().requires_grad_()
    x64 = _bf16(x.detach()).requires_grad_()
    live = torch.full((batch,), steps) if seq is None else seq
    want = _oracle(kernel, bias + shift, x64, live, round_h=True)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=3e-3, rtol=0)
    (want[0] * weights.double()).sum().backward()
    for g, w in zip(grads, [x64.grad, kernel.grad, bias.grad]):
        torch.testing.assert_close(g, w, atol=16 * U16 * float(w.abs().max()), rtol=0)

    # against the float32 model (nothing rounded): the bfloat16 mode's own error
    exact = _oracle(
        cell.kernel.detach().double(),
        cell.bias.detach().double() + shift,
        x.detach().double(),
        live,
        round_h=False,
    )
    for g, w in zip(got, exact):
        torch.testing.assert_close(g, w, atol=3e-2, rtol=0)


def test_the_kernel_is_the_default_without_lengths(ops, monkeypatch):
    """Without lengths the bf16 kernel, not oneDNN's bf16 LSTM, takes a plain LSTM layer under
    autocast (it measured 6-10% faster in every run of its fourth round, docs/PERFORMANCE.md)."""
    spy = []
    real = _fused_kernels.lstm_layer

    def lstm_layer(*args, **kwargs):
        spy.append(args[-1])
        return real(*args, **kwargs)

    monkeypatch.setattr(_fused_kernels, "lstm_layer", lstm_layer)
    cell = BasicLSTMCell(16, input_size=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = dynamic_rnn(cell, torch.randn(3, 5, 4), impl="fused")
    assert spy == [True] and out.dtype == torch.bfloat16


@pytest.mark.parametrize("lengths", [None, [5, 2, 4]])
def test_without_gradients_the_same_kernel_runs(ops, lengths, monkeypatch):
    """torch.no_grad (evaluation): the same loop, the same numbers as with gradients."""
    monkeypatch.setattr(fused, "_BF16_OVER_ONEDNN", True)
    cell = BasicLSTMCell(16, input_size=4)
    x = torch.randn(3, 5, 4)
    seq = None if lengths is None else torch.tensor(lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = dynamic_rnn(cell, x, sequence_length=seq, impl="fused")
        with torch.no_grad():
            out_ng, state_ng = dynamic_rnn(cell, x, sequence_length=seq, impl="fused")
    assert out_ng.dtype == state_ng.c.dtype == state_ng.h.dtype == torch.bfloat16
    assert torch.equal(out_ng, out.detach())
    assert torch.equal(state_ng.c, state.c.detach()) and torch.equal(state_ng.h, state.h.detach())


@pytest.mark.parametrize("isa", ["avx2", "generic"])
def test_narrower_variants_never_reach_the_kernel(ops, isa, monkeypatch):
    """Forced narrower variants: the bfloat16 LSTM still runs under autocast (oneDNN's LSTM or
    the Python loops), in bfloat16, with gradients; the op itself refuses bf16=True."""
    monkeypatch.setattr(fused, "_BF16_OVER_ONEDNN", True)
    monkeypatch.setenv("RNNFLOW_ISA", isa)
    cell = BasicLSTMCell(16)
    x = torch.randn(3, 5, 4)
    assert not _fused_kernels.bf16_loops(x)
    for seq in (None, torch.tensor([5, 2, 4])):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, state = dynamic_rnn(cell, x, sequence_length=seq, impl="fused")
        assert out.dtype == state.h.dtype == torch.bfloat16
        out.float().sum().backward()
    z = torch.zeros(2, 1, 4)
    with pytest.raises(
        RuntimeError,
        match=rf"lstm_forward: bf16=True needs AVX512-BF16 and the avx512 kernel variant "
        rf"\(running: {isa}",
    ):
        ops.lstm_forward(z, z[0].t(), z[0, 0], z, z, z, z, z[0].t(), [1], 0, False, True)


def test_the_python_loops_round_the_same_operands(ops, monkeypatch):
    """The Python loops' bf16 mode (``_py_lstm_forward/backward``, plain torch ops) is the
    same function as the compiled loop's: equal up to float32 rounding and the rare element of h
    or d_gates that lands on the other side of a bfloat16 rounding boundary (one 2^-9 step of
    one product term: < 1e-3 here)."""
    gen = torch.Generator().manual_seed(3)
    steps, batch, depth, units = 9, 5, 3, 16
    # float32 x and kernel, not rounded here: both loops round every GEMM operand themselves
    x = torch.randn(steps, batch, depth, generator=gen)
    kernel = 0.3 * torch.randn(depth + units, 4 * units, generator=gen)
    bias = torch.randn(4 * units, generator=gen)
    c0, h0 = torch.randn(batch, units, generator=gen), torch.randn(batch, units, generator=gen)
    bs = _fused_kernels.batch_sizes(None, batch, steps)
    d_out = torch.randn(steps, batch, units, generator=gen)
    runs = []
    for no_ext in ("0", "1"):
        monkeypatch.setenv("RNNFLOW_NO_EXT", no_ext)
        gates, cs, hs, tcs, *_ = _fused_kernels.lstm_forward(
            x, c0, h0, kernel, bias, None, bs, "tanh", True
        )
        back = _fused_kernels._loops(x).lstm_backward(
            d_out, c0, h0, gates, cs, tcs, kernel[depth:], bs, 0, False, True, True
        )
        runs.append([hs, cs, *back])
    assert _fused_kernels._loops(x) is _fused_kernels._PY_LOOPS  # the second run's loops
    for compiled, python in zip(*runs):
        scale = float(python.abs().max())
        torch.testing.assert_close(compiled, python, atol=1e-3 * max(scale, 1.0), rtol=0)


@pytest.mark.parametrize("no_ext", ["0", "1"])
@pytest.mark.parametrize("lengths", [None, [9, 9, 7, 2, 0]])
def test_the_loop_writes_the_bfloat16_outputs(ops, monkeypatch, no_ext, lengths):
    """``out16`` (the layer's bfloat16 outputs, written by the loop from each row of h while it
    is in cache) is ``hs[1:]`` rounded by torch's own conversion (nearest even), bit for bit,
    NaN included; rows past each length keep the buffer's zeros; the final c and h, likewise
    in bfloat16, each row's at its last step. Both the compiled loop and the Python loops
    (``RNNFLOW_NO_EXT=1``)."""
    monkeypatch.setenv("RNNFLOW_NO_EXT", no_ext)
    gen = torch.Generator().manual_seed(5)
    steps, batch, depth, units = 9, 5, 3, 40
    x = torch.randn(steps, batch, depth, generator=gen).bfloat16().float()
    x[4, 1, 1] = float("nan")  # row 1's h is NaN from step 4 on
    kernel = torch.randn(depth + units, 4 * units, generator=gen).bfloat16().float()
    bias = torch.randn(4 * units, generator=gen)
    c0, h0 = torch.randn(batch, units, generator=gen), torch.randn(batch, units, generator=gen)
    lens = None if lengths is None else torch.tensor(lengths)
    bs = _fused_kernels.batch_sizes(lens, batch, steps)  # rows sorted longest first
    out16 = torch.zeros(steps, batch, units, dtype=torch.bfloat16)
    _, cs, hs, _, final_c, final_h = _fused_kernels.lstm_forward(
        x, c0.bfloat16(), h0.bfloat16(), kernel, bias, lens, bs, "tanh", True, out16
    )
    # a bfloat16 state goes into the float32 buffers as it is; the final state comes back
    # rounded to bfloat16 (each row's at its last step)
    assert torch.equal(cs[0], c0.bfloat16().float()) and torch.equal(hs[0], h0.bfloat16().float())
    last = torch.tensor([len(bs)] * batch if lens is None else lengths)
    rows = torch.arange(batch)
    for final, seq in ((final_c, cs), (final_h, hs)):
        expected = seq[last, rows].bfloat16()
        assert final.dtype == torch.bfloat16
        assert bool(
            ((final.view(torch.int16) == expected.view(torch.int16)) | expected.isnan()).all()
        )
    want = hs[1:].bfloat16()
    assert bool(want.isnan().any()) and not bool(hs[1:].isnan().all())
    same = want.view(torch.int16) == out16.view(torch.int16)
    assert bool((same | (want.isnan() & out16.isnan())).all())
    for t, n in enumerate(bs):
        assert not out16[t, n:].any()


def test_the_bfloat16_outputs_are_checked(ops):
    z = torch.zeros
    call = (z(1, 1, 4), z(16, 4), z(16), z(1, 1, 16), z(2, 1, 4), z(2, 1, 4), z(1, 1, 4))
    call += (z(16, 4), [1], 0, False)
    ops.lstm_forward(*call, True, z(1, 1, 4, dtype=torch.bfloat16))  # valid
    with pytest.raises(RuntimeError, match=r"lstm_forward: out16 needs bf16=True"):
        ops.lstm_forward(*call, False, torch.zeros(1, 1, 1, dtype=torch.bfloat16))
    with pytest.raises(
        RuntimeError, match=r"lstm_forward: out16 must be a BFloat16 CPU tensor of sizes"
    ):
        ops.lstm_forward(*call, True, z(1, 1, 4))
    with pytest.raises(
        RuntimeError, match=r"lstm_forward: out16 must be a BFloat16 CPU tensor of sizes"
    ):
        ops.lstm_forward(*call, True, z(1, 1, 3, dtype=torch.bfloat16))


# ----------------------------------------------------------------------------- per-call cost
# What the bf16 layer's call does around the loops (shared with the float32 LSTM): checked
# against hand-computed values, with or without AVX512-BF16.
@pytest.mark.parametrize("forget_bias", [1.0, 0.5, -2.0])
def test_the_forget_bias_is_folded_into_the_forget_columns(forget_bias):
    """``_lstm_params``: the bias plus forget_bias in TF's forget columns [2H, 3H) only (the
    shift made once per shape and reused: the same cached tensor, never written), also when
    it was first made under ``torch.inference_mode`` (then still an ordinary tensor)."""
    fused._forget_shift.cache_clear()
    cell = BasicLSTMCell(5, input_size=3, forget_bias=forget_bias)
    with torch.inference_mode():
        fused._lstm_params(cell, torch.float32)
    for _ in range(2):
        kernel, bias = fused._lstm_params(cell, torch.float32)
        want = cell.bias.detach().clone()
        want[10:15] += forget_bias
        assert kernel is cell.kernel and torch.equal(bias.detach(), want)
    shift = fused._forget_shift(5, forget_bias, torch.float32, torch.device("cpu"))
    assert not shift.is_inference() and fused._forget_shift.cache_info().misses == 1
    assert shift.tolist() == [0.0] * 10 + [forget_bias] * 5 + [0.0] * 5
