"""The compiled step loops (csrc/loops.cpp) == the Python loops == the reference loop, and the
shrinking batch for sequence_length.

Every case runs with each kernel variant of the compiled loops (avx512, avx2, generic: forced
with ``RNNFLOW_ISA``; a variant the CPU cannot run is skipped naming the flags it lacks) and with
``RNNFLOW_NO_EXT=1`` (the Python fallback); float64 at 1e-10 against the reference loop, float32
against the float64 result.
"""

from __future__ import annotations

import copy
import shutil

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
    GRUCell,
    LSTMBlockCell,
    LSTMCell,
    MultiRNNCell,
    _nest,
    bidirectional_dynamic_rnn,
    dynamic_rnn,
)
from rnnflow.recurrence import _ext, fused
from rnnflow.recurrence import _fused_kernels as kernels

KINDS = CELL_KINDS
DEPTH = CELL_INPUT_DEPTH


def test_the_extension_builds_where_a_compiler_exists(monkeypatch):
    monkeypatch.delenv("RNNFLOW_NO_EXT", raising=False)
    if shutil.which("c++") is None:
        pytest.skip("no C++ compiler")
    assert _ext.status() == (True, "")
    assert kernels._loops(torch.zeros(1, dtype=torch.float64)) is _ext.loops()


def test_rnnflow_no_ext_selects_the_python_loops(monkeypatch):
    monkeypatch.setenv("RNNFLOW_NO_EXT", "1")
    assert _ext.loops() is None
    assert _ext.status() == (False, "RNNFLOW_NO_EXT is set")
    assert kernels._loops(torch.zeros(1)) is kernels._PY_LOOPS


def test_bfloat16_always_uses_the_python_loops():
    assert kernels._loops(torch.zeros(1, dtype=torch.bfloat16)) is kernels._PY_LOOPS


def run(kind, dtype, batch, steps, lengths, monkeypatch, generic_lstm=True):
    if generic_lstm:
        monkeypatch.setattr(fused, "_CPU_LSTM_PEER", False)
    torch.manual_seed(0)
    cell = make_cell(kind, dtype)
    x = torch.randn(batch, steps, DEPTH, dtype=dtype, requires_grad=True)
    zero = cell.zero_state(batch, dtype)
    init = _nest.map_structure(lambda z: torch.randn_like(z).requires_grad_(), zero)
    seq = None if lengths is None else torch.tensor(lengths)
    ref = outputs_and_grads(cell, x, seq, init, "reference")
    fast = outputs_and_grads(cell, x, seq, init, "fused")
    return fast, ref


# unsorted, repeated, zero and full lengths: the rows are sorted, computed in a shrinking batch
# and scattered back
LENGTHS = {"none": None, "mixed": [3, 7, 0, 7, 1, 5, 3], "sorted": [7, 5, 3, 3, 2, 1, 0]}


@pytest.mark.parametrize("lengths", list(LENGTHS))
@pytest.mark.parametrize("kind", KINDS)
def test_loops_match_reference_float64(kind, lengths, loops, monkeypatch):
    fast, ref = run(kind, torch.float64, 7, 7, LENGTHS[lengths], monkeypatch)
    assert_close_tree(fast, ref, atol=1e-10, rtol=1e-10)


BIG = {"rnn": BasicRNNCell, "lstm": BasicLSTMCell, "gru": GRUCell}


@pytest.mark.parametrize("size", [(96, 6, 128), (13, 25, 37)], ids=["96x6x128", "13x25x37"])
@pytest.mark.parametrize("lengths", ["none", "mixed"])
@pytest.mark.parametrize("kind", list(BIG))
def test_loops_match_reference_float32(kind, lengths, size, loops, monkeypatch):
    """float32 through the fast GEMMs. 96 rows x 128 units: the recurrent GEMMs (96 x 128 x 128
    and up) run the packed kernel (AVX-512) or oneDNN; the weight gradients sum 576 rows, over
    more than one 256-row packing chunk. 13 rows x 37 units: a partial register block, partial
    (masked) column panels, 325 rows in the weight gradients.

    float32 sums over hundreds of rows differ by rounding alone (~1e-6 of the largest gradient),
    so each path is compared with the float64 result: the fused path's error must be of the
    float32 reference loop's order, or within 1e-6 of the largest value."""
    monkeypatch.setattr(fused, "_CPU_LSTM_PEER", False)
    batch, steps, units = size
    torch.manual_seed(0)
    cell = BIG[kind](units, input_size=DEPTH)
    x = torch.randn(batch, steps, DEPTH)
    seq = None if lengths == "none" else torch.tensor([(5 * b) % (steps + 1) for b in range(batch)])

    def run_impl(cell, x, impl):
        x = x.clone().requires_grad_()
        init = _nest.map_structure(lambda z: z.requires_grad_(), cell.zero_state(batch, x.dtype))
        return outputs_and_grads(cell, x, seq, init, impl)

    truth = run_impl(copy.deepcopy(cell).double(), x.double(), "reference")
    ref = run_impl(cell, x, "reference")
    fast = run_impl(cell, x, "fused")
    for t, r, f in zip(_nest.flatten(truth), _nest.flatten(ref), _nest.flatten(fast)):
        ref_err = float((r.double() - t).abs().max().detach())
        fast_err = float((f.double() - t).abs().max().detach())
        scale = float(t.abs().max().detach())
        assert fast_err <= 4 * ref_err + 1e-6 * max(1.0, scale), (fast_err, ref_err, scale)


@pytest.mark.parametrize(
    "n,k,cols", [(1, 1, 1), (13, 300, 37), (12, 256, 32), (25, 513, 70), (100, 28, 512)]
)
@pytest.mark.parametrize("layout", ["row-major", "transposed"])
@pytest.mark.parametrize("add", ["none", "bias", "matrix"])
def test_packed_linear_matches_float64(n, k, cols, layout, add, packed):
    """The one-off GEMM (csrc/loops.cpp ``linear``): row remainders, partial panels, several
    256-row packing chunks, transposed operands (the weight gradients pass views)."""
    ops = packed
    torch.manual_seed(0)
    if layout == "row-major":
        a, w = torch.randn(n, k), torch.randn(cols, k)
    else:
        a, w = torch.randn(k, n).t(), torch.randn(k, cols).t()
    extra = {"none": None, "bias": torch.randn(cols), "matrix": torch.randn(n, cols)}[add]
    got = ops.linear(a, w, extra)
    expected = a.double() @ w.double().t()
    if extra is not None:
        expected = expected + extra.double()
    assert got.shape == (n, cols) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5 * k**0.5)


@pytest.mark.parametrize(
    "rows,skips",
    [(1, (1, 0)), (600, (0, 599)), (600, (256, 300)), (512, (255, 257)), (3584, (128, 3583))],
    ids=["1-row-none", "1-left", "mid-chunk", "chunk-edges", "tutorial"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_weight_grad_inputs_with_fewer_rows_pair_with_ds_last(rows, skips, dtype, packed):
    """An input of R_i < R rows pairs with d's last R_i rows (a zero initial state's h_{-1} rows
    left out: ``_param_grads``): none left, all but one, a start inside a 256-row packing chunk,
    on both sides of a chunk's edge, the tutorial's one step of 128 rows; against float64 torch
    with the rows before each input's taken as zeros."""
    torch.manual_seed(0)
    d = torch.randn(rows, 70, dtype=dtype)
    inputs = [torch.randn(rows - skips[0], 3, dtype=dtype), torch.randn(40, rows - skips[1]).t()]
    inputs[1] = inputs[1].to(dtype)
    d_kernel, d_bias = packed.weight_grad(inputs, d)
    full = [torch.cat([x.new_zeros(s, x.shape[1]), x]).double() for x, s in zip(inputs, skips)]
    expected = torch.cat([x.t() @ d.double() for x in full])
    tol = 1e-5 * rows**0.5 if dtype == torch.float32 else 1e-12 * rows
    torch.testing.assert_close(d_kernel.double(), expected, rtol=1e-5, atol=tol)
    torch.testing.assert_close(d_bias.double(), d.double().sum(0), rtol=1e-5, atol=tol)


@pytest.mark.parametrize("rows,cols", [(1, 1), (600, 70), (256, 32), (3584, 512)])
def test_weight_grad_matches_float64(rows, cols, packed):
    """Kernel and bias gradients in one pass over d (csrc/loops.cpp ``weight_grad``): several
    inputs stacked on rows, transposed views, partial panels, several 256-row chunks."""
    ops = packed
    torch.manual_seed(0)
    d = torch.randn(rows, cols)
    inputs = [torch.randn(rows, 3), torch.randn(5, rows).t(), torch.randn(rows, 40)]
    d_kernel, d_bias = ops.weight_grad(inputs, d)
    expected = torch.cat([x.double().t() @ d.double() for x in inputs])
    tol = 1e-5 * rows**0.5
    torch.testing.assert_close(d_kernel.double(), expected, rtol=1e-5, atol=tol)
    torch.testing.assert_close(d_bias.double(), d.double().sum(0), rtol=1e-5, atol=tol)


@pytest.mark.parametrize("kind", KINDS)
def test_loops_split_over_threads_match_reference(kind, loops, monkeypatch):
    """Two threads, each running the time loop for its own range of rows (csrc/loops.cpp
    parallel_rows), with lengths that end inside both ranges; float64 at 1e-10."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seq = [(7 * b) % 10 for b in range(37)]
        fast, ref = run(kind, torch.float64, 37, 9, seq, monkeypatch)
    finally:
        torch.set_num_threads(threads)
    assert_close_tree(fast, ref, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("isa", _ext.ISAS)
def test_compiled_and_python_loops_agree(isa, force_isa, monkeypatch):
    """The two implementations of the same loops, side by side (float64, 1e-12)."""
    force_isa(isa)
    seq = [5, 0, 9, 2, 9, 4]
    compiled, _ = run("multi", torch.float64, 6, 9, seq, monkeypatch)
    monkeypatch.setenv("RNNFLOW_NO_EXT", "1")
    python, _ = run("multi", torch.float64, 6, 9, seq, monkeypatch)
    assert_close_tree(compiled, python, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lstm_inference_reuses_one_gates_block(dtype, loops, monkeypatch):
    """No-grad LSTM: every step's gates in one reused [B, 4H] block, c updated in place."""
    monkeypatch.setattr(fused, "_CPU_LSTM_PEER", False)
    cell = MultiRNNCell(
        [BasicLSTMCell(5, input_size=DEPTH, dtype=dtype), GRUCell(4, input_size=5, dtype=dtype)]
    )
    x = torch.randn(6, 8, DEPTH, dtype=dtype)
    seq = torch.tensor([8, 3, 0, 8, 5, 1])
    init = _nest.map_structure(torch.randn_like, cell.zero_state(6, dtype))
    with torch.no_grad():
        for lengths in (None, seq):
            ref = dynamic_rnn(
                cell, x, sequence_length=lengths, initial_state=init, impl="reference"
            )
            fast = dynamic_rnn(cell, x, sequence_length=lengths, initial_state=init, impl="fused")
            tol = 1e-10 if dtype == torch.float64 else 1e-5
            assert_close_tree(fast, ref, atol=tol, rtol=tol)


def test_batch_sizes():
    assert kernels.batch_sizes(None, 3, 4) == [3, 3, 3, 3]
    assert kernels.batch_sizes(torch.tensor([4, 2, 2, 0]), 4, 6) == [3, 3, 1, 1]
    assert kernels.batch_sizes(torch.tensor([0, 0]), 2, 6) == []


def test_no_compiler_falls_back_to_the_python_loops_with_a_reason(monkeypatch, caplog):
    monkeypatch.delenv("RNNFLOW_NO_EXT", raising=False)
    monkeypatch.setattr(_ext, "_state", {})  # forget the loaded extension for this test
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    with caplog.at_level("INFO", logger="rnnflow.recurrence._ext"):
        assert _ext.loops() is None
    ok, reason = _ext.status()
    assert not ok and "no C++ compiler ('/nonexistent/c++' not found)" in reason
    assert "using the Python loops" in caplog.text
    assert kernels._loops(torch.zeros(1)) is kernels._PY_LOOPS
    cell = make_cell("lstm", torch.float64)
    x = torch.randn(2, 4, DEPTH, dtype=torch.float64, requires_grad=True)
    zero = cell.zero_state(2, torch.float64)
    init = _nest.map_structure(lambda z: torch.randn_like(z).requires_grad_(), zero)
    seq = torch.tensor([4, 1])
    fast = outputs_and_grads(cell, x, seq, init, "fused")
    ref = outputs_and_grads(cell, x, seq, init, "reference")
    assert_close_tree(fast, ref, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("given_state", [False, True], ids=["zero_state", "initial_state"])
@pytest.mark.parametrize("lengths", ["none", "mixed"])
@pytest.mark.parametrize("kind", KINDS)
def test_final_state_only_loss(kind, lengths, given_state, loops, monkeypatch):
    """A loss of the final state alone (the classifier's): the outputs' gradient is None (no
    [T, B, H] of zeros is made) and, without a differentiable initial state, its GEMM is skipped."""
    monkeypatch.setattr(fused, "_CPU_LSTM_PEER", False)
    torch.manual_seed(0)
    cell = make_cell(kind, torch.float64)
    x = torch.randn(7, 7, DEPTH, dtype=torch.float64, requires_grad=True)
    seq = None if LENGTHS[lengths] is None else torch.tensor(LENGTHS[lengths])
    init = None
    if given_state:
        zero = cell.zero_state(7, torch.float64)
        init = _nest.map_structure(lambda z: torch.randn_like(z).requires_grad_(), zero)

    def grads(impl):
        _, state = dynamic_rnn(cell, x, sequence_length=seq, initial_state=init, impl=impl)
        loss = sum((s * (k + 1.5)).sum() for k, s in enumerate(_nest.flatten(state)))
        wrt = [x, *cell.parameters(), *(_nest.flatten(init) if init is not None else [])]
        return state, torch.autograd.grad(loss, wrt)

    assert_close_tree(grads("fused"), grads("reference"), atol=1e-10, rtol=1e-10)


class _LearnedInitialState(LSTMBlockCell):
    """A cell whose zero_state is not zeros (as a learned initial state would be)."""

    def zero_state(self, batch_size, dtype=None, *, device=None):
        c, h = super().zero_state(batch_size, dtype, device=device)
        return c + 0.5, h - 0.25


def _instance_override(cell):
    zero_state = cell.zero_state
    cell.zero_state = lambda b, d=None, *, device=None: tuple(
        t + 0.25 for t in zero_state(b, d, device=device)
    )
    return cell


def _rnn_instance_override(cell):
    zero_state = cell.zero_state
    cell.zero_state = lambda b, d=None, *, device=None: zero_state(b, d, device=device) - 0.25
    return cell


@pytest.mark.parametrize(
    "make",
    [
        lambda: _rnn_instance_override(BasicRNNCell(6)),
        lambda: MultiRNNCell([BasicRNNCell(5), _rnn_instance_override(BasicRNNCell(6))]),
        lambda: _LearnedInitialState(6),
        lambda: MultiRNNCell([_LearnedInitialState(6), BasicLSTMCell(5)]),
        lambda: MultiRNNCell([_instance_override(BasicLSTMCell(6))]),
        lambda: MultiRNNCell([BasicLSTMCell(5), _instance_override(LSTMCell(6))]),
    ],
    ids=[
        "rnn-instance",
        "rnn-instance-second-layer",
        "subclass",
        "subclass-in-multi",
        "instance-in-multi",
        "instance-second-layer",
    ],
)
@pytest.mark.parametrize("lengths", [None, [5, 0, 3]])
@pytest.mark.parametrize("driver", ["dynamic_rnn", "bidirectional_dynamic_rnn"])
def test_a_zero_state_that_is_not_zeros_is_not_skipped(loops, make, lengths, driver):
    """initial_state=None with a zero_state that a subclass or an instance overrides: the loop
    must not skip h_{-1} W_h (the values decide, not the flag): float64 outputs, final state and
    every gradient against the reference loop at 1e-10, through both drivers that tell the
    fused path the state is the cell's zero_state (the backward direction runs the same cell)."""
    torch.manual_seed(0)
    cell = make()
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    seq = None if lengths is None else torch.tensor(lengths)
    dynamic_rnn(cell, x[:, :1], impl="reference")  # build the parameters
    cell = cell.double()
    results = []
    for impl in ("fused", "reference"):
        xi = x.clone().requires_grad_(True)
        if driver == "dynamic_rnn":
            out, state = dynamic_rnn(cell, xi, sequence_length=seq, impl=impl)
        else:
            out, state = bidirectional_dynamic_rnn(cell, cell, xi, sequence_length=seq, impl=impl)
        leaves = torch.utils._pytree.tree_leaves((out, state))
        loss = sum(
            (t * torch.linspace(-1, 1, t.numel(), dtype=t.dtype).view(t.shape)).sum()
            for t in leaves
        )
        grads = torch.autograd.grad(loss, [xi, *cell.parameters()])
        results.append([*leaves, *grads])
    for fast, ref in zip(*results):
        torch.testing.assert_close(fast, ref, atol=1e-10, rtol=1e-10)
