"""Training layers read their input x [T, B, D] through its strides (issue 17, seventh round).

The compiled RNN and LSTM loops (float32 and float64, every kernel variant) read each step's
rows of x through their step and row strides, forward and in the weight gradient (the LSTM's
in-loop one and ``weight_grad``); the GRU's GEMMs over all steps (``linear``, ``weight_grad``)
do where the packed GEMM runs. So a batch-major input's transposed view, a slice of a wider D
or a step slice reaches them with no copy. Checked here for every stride family, with the
reference loop as the oracle (float64 at 1e-10; float32 against float64), bit for bit against
the same values laid out densely where the loops compute the same products, and at the ops.
"""

from __future__ import annotations

import copy

import pytest
import torch
from rnnflow_testing import assert_close_tree, outputs_and_grads

from rnnflow import BasicLSTMCell, BasicRNNCell, GRUCell, _nest, dynamic_rnn
from rnnflow.recurrence import _ext, fused
from rnnflow.recurrence import _fused_kernels as kernels

CELLS = {"rnn": BasicRNNCell, "lstm": BasicLSTMCell, "gru": GRUCell}
LAYERS = {"rnn": kernels._RNNLayer, "lstm": kernels._LSTMLayer, "gru": kernels._GRULayer}
DEPTH = 5


def strided_input(family: str, batch: int, steps: int, seed: int = 0):
    """(leaf, view, time_major): a float32 ``leaf`` and ``view(leaf)``, the tensor given to
    dynamic_rnn (``time_major`` or not). The [T, B, D] the layer sees has, per family:
    'time-major' dense; 'batch-major' a [B, T, D] tensor's transpose (row stride T D);
    'wider-d' rows of a wider D (row stride D + 4, steps B (D + 4) apart); 'batch-major-wider'
    both; 'step-slice' every other step of a longer sequence; 'expanded' one step broadcast
    over time (step stride 0); 'inner-stride' every other element of each row (no unit stride
    within a row: copied before the loops)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = {
        "time-major": ((steps, batch, DEPTH), lambda t: t, True),
        "batch-major": ((batch, steps, DEPTH), lambda t: t, False),
        "wider-d": ((steps, batch, DEPTH + 4), lambda t: t[..., 3 : 3 + DEPTH], True),
        "batch-major-wider": ((batch, steps, DEPTH + 3), lambda t: t[..., :DEPTH], False),
        "step-slice": ((2 * steps + 1, batch, DEPTH), lambda t: t[1::2], True),
        "expanded": ((1, batch, DEPTH), lambda t: t.expand(steps, batch, DEPTH), True),
        "inner-stride": ((steps, batch, 2 * DEPTH), lambda t: t[..., ::2], True),
    }
    shape, view, time_major = shapes[family]
    return torch.randn(*shape, generator=gen), view, time_major


FAMILIES = [
    "time-major",
    "batch-major",
    "wider-d",
    "batch-major-wider",
    "step-slice",
    "expanded",
    "inner-stride",
]
# sorted lengths reach the layer with x as it is (unsorted ones are gathered: a copy)
LENGTHS = {"none": None, "sorted": "sorted", "mixed": "mixed"}


def _lengths(kind: str | None, batch: int, steps: int) -> torch.Tensor | None:
    if kind is None:
        return None
    values = [(steps * (batch - b)) // batch for b in range(batch)]  # descending, to 0 at the end
    if kind == "mixed":
        values = values[1::2] + values[::2]
    return torch.tensor(values)


def _runs(kind, family, batch, steps, lengths, impls, units=6):
    """Outputs, final state and gradients (x, parameters, initial state) per (dtype, impl) in
    ``impls``, from one float32 cell and input (float64: the same values)."""
    torch.manual_seed(1)
    cell32 = CELLS[kind](units, input_size=DEPTH)
    leaf, view, time_major = strided_input(family, batch, steps)
    seq = _lengths(lengths, batch, steps)
    init32 = _nest.map_structure(torch.randn_like, cell32.zero_state(batch, torch.float32))
    results = []
    for dtype, impl in impls:
        cell = copy.deepcopy(cell32).to(dtype)
        x = view(leaf.to(dtype).requires_grad_())
        init = _nest.map_structure(lambda z, d=dtype: z.to(d).requires_grad_(), init32)
        results.append(outputs_and_grads(cell, x, seq, init, impl, time_major))
    return results


@pytest.mark.parametrize("lengths", list(LENGTHS))
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", list(CELLS))
def test_a_strided_input_trains_as_the_reference_float64(kind, family, lengths, loops, monkeypatch):
    """Outputs, final state and every gradient (x, parameters, initial state) at 1e-10, an odd
    batch of 7 (a partial register block), with each kernel variant and the Python loops."""
    monkeypatch.setattr(fused, "_CPU_LSTM_PEER", False)
    f64 = torch.float64
    fast, ref = _runs(kind, family, 7, 6, LENGTHS[lengths], [(f64, "fused"), (f64, "reference")])
    assert_close_tree(fast, ref, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("batch", [13, 53], ids=["B13", "B53"])
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", list(CELLS))
def test_a_strided_input_trains_float32_within_float32_error(
    kind, family, batch, loops, monkeypatch
):
    """float32 through the packed GEMMs against the float64 result: the fused path's error of
    the float32 reference loop's order (or within 1e-6 of the largest value). 13 rows: the
    weight gradient's pass over all steps (a run per step for a strided x); 53 rows: the LSTM's
    in-loop weight gradient (from 48 rows), reading x's rows in place."""
    monkeypatch.setattr(fused, "_CPU_LSTM_PEER", False)
    impls = [(torch.float64, "reference"), (torch.float32, "reference"), (torch.float32, "fused")]
    truth, ref, fast = _runs(kind, family, batch, 9, "sorted", impls, units=37)
    for t, r, f in zip(_nest.flatten(truth), _nest.flatten(ref), _nest.flatten(fast)):
        ref_err = float((r.double() - t).abs().max().detach())
        fast_err = float((f.double() - t).abs().max().detach())
        scale = float(t.abs().max().detach())
        assert fast_err <= 4 * ref_err + 1e-6 * max(1.0, scale), (fast_err, ref_err, scale)


@pytest.mark.parametrize("state", ["given", "zero"])
@pytest.mark.parametrize("batch", [13, 53], ids=["B13", "B53"])
@pytest.mark.parametrize("family", ["batch-major", "wider-d", "step-slice", "expanded"])
@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("isa", _ext.ISAS)
def test_a_strided_input_gives_the_dense_inputs_bits(
    kind, family, batch, state, isa, force_isa, monkeypatch
):
    """The layout of x must not change a number: outputs, final state and every gradient
    equal, bit for bit, those from the same values laid out densely. The loops copy each step's
    rows side by side before the product; the GEMMs over all steps (the GRU's projections,
    ``weight_grad``) sum each row's terms in order whatever the runs; the LSTM's in-loop weight
    gradient (53 rows) reads the x rows in place. A zero state (none given): h_{-1}'s products
    and weight-gradient rows left out."""
    force_isa(isa)
    monkeypatch.setattr(fused, "_CPU_LSTM_PEER", False)
    torch.manual_seed(2)
    steps = 7
    cell = CELLS[kind](37, input_size=DEPTH)
    leaf, view, time_major = strided_input(family, batch, steps)
    x = view(leaf)
    x = x if time_major else x.transpose(0, 1)  # [T, B, D], as the layer sees it
    assert not x.is_contiguous()
    init0 = _nest.map_structure(torch.randn_like, cell.zero_state(batch, torch.float32))
    runs = []
    for given in (x, x.contiguous()):
        cell.zero_grad()
        given = given.detach().requires_grad_()
        init = _nest.map_structure(lambda z: z.clone().requires_grad_(), init0)
        init = init if state == "given" else None
        out, final = dynamic_rnn(cell, given, initial_state=init, time_major=True, impl="fused")
        leaves = _nest.flatten(final)
        loss = (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum()
        loss = loss + sum((s * (k + 1.5)).sum() for k, s in enumerate(leaves))
        loss.backward()
        grads = [given.grad, *(p.grad for p in cell.parameters())]
        runs.append(
            [out, *leaves, *grads, *(z.grad for z in _nest.flatten(() if init is None else init))]
        )
    for strided, dense in zip(*runs):
        torch.testing.assert_close(strided, dense, rtol=0, atol=0)


@pytest.mark.parametrize("kind", list(CELLS))
def test_a_batch_major_input_reaches_the_layer_uncopied(kind, monkeypatch):
    """The layer's autograd Function gets the input's own memory (a transposed view) where the
    compiled loops read it through its strides (the GRU: where the packed GEMM runs), and a
    dense copy for the Python loops."""
    monkeypatch.setattr(fused, "_CPU_LSTM_PEER", False)
    seen = []
    layer = LAYERS[kind]
    real = layer.apply

    def spy(x, *args):
        seen.append((x.data_ptr(), x.stride()))
        return real(x, *args)

    monkeypatch.setattr(layer, "apply", spy)
    cell = CELLS[kind](16, input_size=DEPTH)
    x = torch.randn(12, 4, DEPTH)  # [B, T, D]
    monkeypatch.setenv("RNNFLOW_NO_EXT", "1")
    dynamic_rnn(cell, x, impl="fused")[0].sum().backward()
    assert seen == [(seen[0][0], (12 * DEPTH, DEPTH, 1))] and seen[0][0] != x.data_ptr()
    monkeypatch.delenv("RNNFLOW_NO_EXT")
    if not _ext.status()[0]:
        pytest.skip(f"compiled loops unavailable: {_ext.status()[1]}")
    if kind == "gru" and kernels._packed_gemm(x) is None:
        pytest.skip(f"the GRU copies x where the packed GEMM does not run ({_ext.isa()})")
    seen.clear()
    dynamic_rnn(cell, x, impl="fused")[0].sum().backward()
    assert seen == [(x.data_ptr(), (DEPTH, 4 * DEPTH, 1))]


# ----------------------------------------------------------------------------- the ops
def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, t.shape[-1])


VIEWS = {  # [S, B, K] = [6, 11, k] (one-row: [5, 1, k])
    "transposed": lambda g, k: torch.randn(11, 6, k, generator=g).transpose(0, 1),
    "wider": lambda g, k: torch.randn(6, 11, k + 3, generator=g)[..., 2 : 2 + k],
    "step-slice": lambda g, k: torch.randn(13, 11, k, generator=g)[::2],
    "one-row": lambda g, k: torch.randn(5, 6, k, generator=g)[:, 2:3],  # B = 1: steps are rows
    "dense": lambda g, k: torch.randn(6, 11, k, generator=g),
}


@pytest.mark.parametrize("view", list(VIEWS))
def test_weight_grad_reads_3d_inputs_step_by_step(view, packed):
    """``weight_grad`` with [S, B, K] inputs (a layer's x through its strides; h's rows after
    a zero h_{-1}, fewer of them) against float64 torch on dense copies, each input paired with
    d's last rows across a 256-row packing chunk's edge; float64 through ATen."""
    gen = torch.Generator().manual_seed(3)
    x = VIEWS[view](gen, 7)
    steps, batch = x.shape[:2]
    d = torch.randn(steps * batch + 250, 40, generator=gen)  # x pairs with d's last rows
    h = torch.randn(steps - 1, batch, 9, generator=gen)
    ours = [_rows(x).double(), _rows(h).double()]
    expected = torch.cat([a.t() @ d[d.shape[0] - a.shape[0] :].double() for a in ours])
    d_kernel, d_bias = packed.weight_grad([x, h], d)
    torch.testing.assert_close(d_kernel.double(), expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(d_bias.double(), d.double().sum(0), rtol=1e-5, atol=1e-4)
    d_kernel, d_bias = packed.weight_grad([x.double(), h.double()], d.double())
    torch.testing.assert_close(d_kernel, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("add", ["none", "bias", "matrix"])
@pytest.mark.parametrize("view", list(VIEWS))
@pytest.mark.parametrize("k,cols", [(7, 24), (300, 240)], ids=["small-w", "large-w"])
def test_linear_reads_a_3d_a_step_by_step(view, k, cols, add, packed):
    """``linear`` with a [S, B, K] (a layer's x through its strides) against float64 torch: a
    small weight (packed once, row chunks within each step) and one over 256 KiB (K in two
    chunks, each run of rows swept over each)."""
    gen = torch.Generator().manual_seed(4)
    a = VIEWS[view](gen, k)
    rows = a.shape[0] * a.shape[1]
    w = torch.randn(cols, k, generator=gen)
    extra = {"none": None, "bias": torch.randn(cols), "matrix": torch.randn(rows, cols)}[add]
    got = packed.linear(a, w, extra)
    expected = _rows(a).double() @ w.double().t() + (0 if extra is None else extra.double())
    assert got.shape == (rows, cols)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-4)


@pytest.fixture
def ops(monkeypatch):
    monkeypatch.delenv("RNNFLOW_NO_EXT", raising=False)
    monkeypatch.delenv("RNNFLOW_ISA", raising=False)
    if not _ext.status()[0]:
        pytest.skip(f"compiled loops unavailable: {_ext.status()[1]}")
    return _ext.loops()


def test_the_loops_refuse_an_x_without_unit_stride_within_a_row(ops):
    """What the loops cannot address (they copy rows with memcpy) is refused, naming the op,
    the argument, the strides wanted and the strides given, for the RNN and the LSTM."""
    x = torch.zeros(2, 3, 10)[..., ::2]  # [2, 3, 5], strides [30, 10, 2]
    hs, w_x, w = torch.zeros(3, 3, 4), torch.zeros(4, 5), torch.zeros(4, 4)
    with pytest.raises(
        RuntimeError,
        match=r"rnn_forward: x must have unit stride within a row \(strides \[\*, \*, 1\]\), "
        r"got strides \[30, 10, 2\]",
    ):
        ops.rnn_forward(x, w_x, torch.zeros(4), hs, w, [3, 3], 0, False)
    gates, tcs = torch.zeros(2, 3, 16), torch.zeros(2, 3, 4)
    with pytest.raises(
        RuntimeError,
        match=r"lstm_forward: x must have unit stride within a row \(strides \[\*, \*, 1\]\), "
        r"got strides \[30, 10, 2\]",
    ):
        ops.lstm_forward(
            x,
            torch.zeros(16, 5),
            torch.zeros(16),
            gates,
            hs,
            hs,
            tcs,
            torch.zeros(16, 4),
            [3, 3],
            0,
            False,
        )


def test_weight_grad_refuses_a_3d_input_with_more_rows_than_d(ops):
    with pytest.raises(
        RuntimeError,
        match=r"weight_grad: inputs\[i\] \[S, B, K\] must have at most 7 rows \(S \* B; d's "
        r"rows\), got \[4, 2, 3\]",
    ):
        ops.weight_grad([torch.zeros(4, 2, 3)], torch.zeros(7, 5))
    with pytest.raises(
        RuntimeError, match=r"linear: a must be a Float CPU tensor of sizes \[\*, \*\], got"
    ):
        ops.linear(torch.zeros(2, 3, 4, 5), torch.zeros(6, 5), None)
