"""Empty extents (B = 0, T = 0, every length 0) on every implementation and driver, forward and
backward, as TensorFlow: outputs of the right shape (zeros), the final state is the initial
state, every gradient exists, those of the inputs and parameters are zero and the initial
state's is the final state's."""

from __future__ import annotations

import pytest
import torch
from rnnflow_testing import CELL_INPUT_DEPTH, make_cell

import rnnflow
from rnnflow import _nest, bidirectional_dynamic_rnn, dynamic_rnn

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
