"""Empty extents (B = 0, T = 0, every length 0) on every implementation and driver, forward and
backward, as TensorFlow: outputs of the right shape (zeros), the final state is the initial
state, every gradient exists, those of the inputs and parameters are zero and the initial
state's is the final state's."""

from __future__ import annotations

import pytest
import torch
from rnnflow_testing import CELL_INPUT_DEPTH, make_cell

import rnnflow
from rnnflow import (
    LSTMCell,
    _nest,
    bidirectional_dynamic_rnn,
    dynamic_rnn,
    raw_rnn,
    stack_bidirectional_dynamic_rnn,
    stack_bidirectional_rnn,
    static_bidirectional_rnn,
    static_rnn,
    static_state_saving_rnn,
)

DEPTH = CELL_INPUT_DEPTH
# (B, T, lengths): no rows, no steps, neither, every row of length 0
EXTENTS = {
    "B=0": (0, 4, None),
    "T=0": (3, 0, None),
    "B=0,T=0": (0, 0, None),
    "lengths=0": (3, 4, [0, 0, 0]),
    "B=0,lengths=[]": (0, 4, []),
    "T=0,lengths=0": (3, 0, [0, 0, 0]),
}
KINDS = ["rnn", "lstm", "lstm_concat", "gru", "multi", "multi_concat"]


def random_state(cell, batch):
    zero = cell.zero_state(batch, torch.float64)
    return _nest.map_structure(lambda z: torch.randn_like(z).requires_grad_(), zero)


def check_run(outputs, states, inits, wrt_zero, width_of):
    """Outputs zero of [B, T, width]; states equal to the initial states; d loss / d (inputs,
    parameters) zero and d loss / d init = each state leaf's weight in the loss."""
    leaves = [leaf for state in states for leaf in _nest.flatten(state)]
    init_leaves = [leaf for init in inits for leaf in _nest.flatten(init)]
    loss = sum((out * 2.0).sum() for out in outputs)
    loss = loss + sum((s * (k + 1.5)).sum() for k, s in enumerate(leaves))
    grads = torch.autograd.grad(loss, [*wrt_zero, *init_leaves])  # each must exist
    for out, width in zip(outputs, width_of):
        assert not out.any()
        assert out.shape[-1] == width
    for got, want in zip(leaves, init_leaves):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    for g, t in zip(grads, wrt_zero):
        assert g.shape == t.shape and not g.any()
    for k, (g, init) in enumerate(zip(grads[len(wrt_zero) :], init_leaves)):
        torch.testing.assert_close(g, torch.full_like(init, k + 1.5), rtol=0, atol=0)


@pytest.mark.parametrize("time_major", [False, True], ids=["batch_major", "time_major"])
@pytest.mark.parametrize("extent", list(EXTENTS))
@pytest.mark.parametrize("kind", KINDS)
def test_dynamic_rnn_on_empty_extents(kind, extent, time_major, impl):
    batch, steps, lengths = EXTENTS[extent]
    cell = make_cell(kind, torch.float64)
    shape = (steps, batch, DEPTH) if time_major else (batch, steps, DEPTH)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    init = random_state(cell, batch)
    out, state = dynamic_rnn(
        cell, x, sequence_length=lengths, initial_state=init, time_major=time_major, impl=impl
    )
    assert out.shape == shape[:2] + (cell.output_size,)
    check_run([out], [state], [init], [x, *cell.parameters()], [cell.output_size])


@pytest.mark.parametrize("extent", list(EXTENTS))
@pytest.mark.parametrize(
    "kinds", [("gru", "lstm"), ("multi", "rnn")], ids=["gru-lstm", "multi-rnn"]
)
def test_bidirectional_on_empty_extents(kinds, extent, impl):
    batch, steps, lengths = EXTENTS[extent]
    fw, bw = make_cell(kinds[0], torch.float64), make_cell(kinds[1], torch.float64)
    x = torch.randn(batch, steps, DEPTH, dtype=torch.float64, requires_grad=True)
    inits = random_state(fw, batch), random_state(bw, batch)
    (out_fw, out_bw), states = bidirectional_dynamic_rnn(
        fw,
        bw,
        x,
        sequence_length=lengths,
        initial_state_fw=inits[0],
        initial_state_bw=inits[1],
        impl=impl,
    )
    assert out_fw.shape == (batch, steps, fw.output_size)
    assert out_bw.shape == (batch, steps, bw.output_size)
    params = [*fw.parameters(), *bw.parameters()]
    check_run([out_fw, out_bw], states, inits, [x, *params], [fw.output_size, bw.output_size])


@pytest.mark.parametrize("shape", [(0, 4, 2), (4, 0, 2), (0, 0, 2)])
@pytest.mark.parametrize("cell_cls", [rnnflow.BasicRNNCell, rnnflow.BasicLSTMCell, rnnflow.GRUCell])
def test_issue_example_backward_through_an_empty_run(cell_cls, shape, impl):
    """The report: ``dynamic_rnn(GRUCell(3), torch.zeros(0, 4, 2))``, then ``o.sum().backward()``
    (inputs without grad, a lazy cell): zero gradients in every parameter."""
    cell = cell_cls(3)
    out, _ = dynamic_rnn(cell, torch.zeros(shape), impl=impl)
    assert out.shape == shape[:2] + (3,)
    out.sum().backward()
    assert all(p.grad is not None and not p.grad.any() for p in cell.parameters())


def test_empty_run_without_grad_builds_no_graph(impl):
    cell = make_cell("gru", torch.float64)
    with torch.no_grad():
        out, _ = dynamic_rnn(cell, torch.zeros(0, 4, DEPTH, dtype=torch.float64), impl=impl)
    assert out.grad_fn is None and out.shape == (0, 4, 5)


# ----------------------------------------------------------------------------- the other drivers
# static_* take a list of T steps: T = 0 is an empty list, which TF refuses too (below).
STATIC_EXTENTS = [e for e, (_, steps, _) in EXTENTS.items() if steps > 0]


def lstm_cell_full(dtype=torch.float64):
    """LSTMCell with every option: the fused Python loop of _fused_lstm_cell."""
    return LSTMCell(5, use_peepholes=True, cell_clip=0.5, num_proj=3, input_size=DEPTH, dtype=dtype)


def steps_of(batch, steps):
    xs = [torch.randn(batch, DEPTH, dtype=torch.float64, requires_grad=True) for _ in range(steps)]
    return xs


@pytest.mark.parametrize("extent", STATIC_EXTENTS)
@pytest.mark.parametrize("kind", ["lstm_cell_full", "gru", "multi"])
def test_static_rnn_on_empty_extents(kind, extent, impl):
    batch, steps, lengths = EXTENTS[extent]
    cell = lstm_cell_full() if kind == "lstm_cell_full" else make_cell(kind, torch.float64)
    xs, init = steps_of(batch, steps), random_state(cell, batch)
    outputs, state = static_rnn(cell, xs, init, sequence_length=lengths, impl=impl)
    assert [tuple(o.shape) for o in outputs] == [(batch, cell.output_size)] * steps
    check_run(outputs, [state], [init], [*xs, *cell.parameters()], [cell.output_size] * steps)


@pytest.mark.parametrize("extent", STATIC_EXTENTS)
def test_static_bidirectional_rnn_on_empty_extents(extent, impl):
    batch, steps, lengths = EXTENTS[extent]
    fw, bw = lstm_cell_full(), make_cell("gru", torch.float64)
    xs = steps_of(batch, steps)
    inits = random_state(fw, batch), random_state(bw, batch)
    outputs, state_fw, state_bw = static_bidirectional_rnn(
        fw, bw, xs, *inits, sequence_length=lengths, impl=impl
    )
    params = [*fw.parameters(), *bw.parameters()]
    width = fw.output_size + bw.output_size
    check_run(outputs, [state_fw, state_bw], inits, [*xs, *params], [width] * steps)


@pytest.mark.parametrize("extent", STATIC_EXTENTS)
def test_static_state_saving_rnn_on_empty_extents(extent, impl):
    batch, steps, lengths = EXTENTS[extent]
    cell = lstm_cell_full()
    init = random_state(cell, batch)
    saved = {}

    class Saver:
        def state(self, name):
            return {"c": init.c, "m": init.h}[name]

        def save_state(self, name, value):
            saved[name] = value

    xs = steps_of(batch, steps)
    outputs, state = static_state_saving_rnn(
        cell, xs, Saver(), ("c", "m"), sequence_length=lengths, impl=impl
    )
    assert saved["c"] is state.c and saved["m"] is state.h
    check_run(outputs, [state], [init], [*xs, *cell.parameters()], [3] * steps)


@pytest.mark.parametrize("driver", [static_rnn, static_bidirectional_rnn, stack_bidirectional_rnn])
def test_static_drivers_refuse_an_empty_list_of_steps_as_tf(driver):
    cells = {
        static_rnn: (lstm_cell_full(),),
        static_bidirectional_rnn: (lstm_cell_full(), lstm_cell_full()),
        stack_bidirectional_rnn: ([lstm_cell_full()], [lstm_cell_full()]),
    }[driver]
    with pytest.raises(ValueError, match=rf"^{driver.__name__}: inputs must not be empty$"):
        driver(*cells, [])


@pytest.mark.parametrize(
    ("extent", "static"),
    [(e, False) for e in EXTENTS] + [(e, True) for e in STATIC_EXTENTS],
    ids=lambda v: {False: "dynamic", True: "static"}.get(v, v) if isinstance(v, bool) else v,
)
def test_stack_bidirectional_on_empty_extents(extent, static, impl):
    batch, steps, lengths = EXTENTS[extent]
    # layer 1 reads layer 0's concatenated outputs: 3 (projected LSTMCell) + 5
    fw = [lstm_cell_full(), rnnflow.GRUCell(5, input_size=8, dtype=torch.float64)]
    bw = [
        make_cell("rnn", torch.float64),
        rnnflow.BasicLSTMCell(4, input_size=8, dtype=torch.float64),
    ]
    inits_fw = [random_state(c, batch) for c in fw]
    inits_bw = [random_state(c, batch) for c in bw]
    params = [p for c in fw + bw for p in c.parameters()]
    kwargs = dict(
        initial_states_fw=inits_fw, initial_states_bw=inits_bw, sequence_length=lengths, impl=impl
    )
    if static:
        xs = steps_of(batch, steps)
        outputs, states_fw, states_bw = stack_bidirectional_rnn(fw, bw, xs, **kwargs)
        wrt = [*xs, *params]
    else:
        x = torch.randn(batch, steps, DEPTH, dtype=torch.float64, requires_grad=True)
        out, states_fw, states_bw = stack_bidirectional_dynamic_rnn(fw, bw, x, **kwargs)
        assert out.shape == (batch, steps, 5 + 4)
        outputs, wrt = [out], [x, *params]
    states, inits = [*states_fw, *states_bw], [*inits_fw, *inits_bw]
    check_run(outputs, states, inits, wrt, [5 + 4] * len(outputs))


@pytest.mark.parametrize("batch", [0, 3], ids=["B=0", "finished at time 0"])
@pytest.mark.parametrize("emit", ["cell", "custom"])
def test_raw_rnn_without_steps(batch, emit):
    """Every row finished at time 0 (or no rows): no step runs, the emits are [0, B, ...] zeros
    connected to the first input and the parameters (zero gradients), the state is the initial
    one and its gradient the final state's weight."""
    cell = lstm_cell_full()
    x = torch.randn(batch, DEPTH, dtype=torch.float64, requires_grad=True)
    init = random_state(cell, batch)
    emit_structure = None if emit == "cell" else (torch.zeros(batch, 2, dtype=torch.float64),)

    def loop_fn(time, cell_output, cell_state, loop_state):
        finished = torch.ones(batch, dtype=torch.bool)
        return finished, x, init if cell_state is None else cell_state, emit_structure, None

    emits, state, _ = raw_rnn(cell, loop_fn)
    flat = _nest.flatten(emits)
    widths = [cell.output_size] if emit == "cell" else [2]
    assert [tuple(e.shape) for e in flat] == [(0, batch, w) for w in widths]
    check_run(flat, [state], [init], [x, *cell.parameters()], widths)
