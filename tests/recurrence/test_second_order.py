"""Second-order gradients (``create_graph=True``: gradient penalties, higher-order methods).

The fused path's backward runs compiled loops that autograd cannot differentiate: their results
would count as constants and a second derivative come back as zeros, silently. So the fused
layers refuse a backward under ``create_graph=True``, naming the remedy, and the reference loop
(the remedy) is checked against finite differences in float64 (``gradgradcheck``).
"""

from __future__ import annotations

import re

import pytest
import torch

from rnnflow import (
    BasicLSTMCell,
    BasicRNNCell,
    GRUCell,
    LSTMBlockCell,
    LSTMCell,
    MultiRNNCell,
    dynamic_rnn,
)
from rnnflow.recurrence import fused

CELLS = {
    "BasicRNNCell": lambda: BasicRNNCell(3),
    "BasicLSTMCell": lambda: BasicLSTMCell(3),
    "GRUCell": lambda: GRUCell(3),
    "LSTMCell": lambda: LSTMCell(3, use_peepholes=True, num_proj=2),
    "LSTMBlockCell": lambda: LSTMBlockCell(3),
    "MultiRNNCell": lambda: MultiRNNCell([GRUCell(3), BasicLSTMCell(2)]),
}


def _penalty_grads(cell, x, impl):
    """d/d(parameters) of a gradient penalty |d(sum outputs^2)/dx|^2: second derivatives."""
    outputs, _ = dynamic_rnn(cell, x, dtype=x.dtype, impl=impl)
    (dx,) = torch.autograd.grad(outputs.pow(2).sum(), x, create_graph=True)
    return torch.autograd.grad(dx.pow(2).sum(), list(cell.parameters()))


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_compiled_loops_refuse_create_graph_instead_of_returning_zeros(
    name, dtype, monkeypatch
):
    """Every layer through rnnflow's own loops (compiled or Python; oneDNN's LSTM switched off,
    as where the packed kernel serves the LSTM) refuses, and first-order gradients still work."""
    monkeypatch.setattr(fused, "_CPU_LSTM_PEER", False)
    torch.manual_seed(0)
    cell = CELLS[name]()
    x = torch.randn(2, 5, 4, dtype=dtype, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"create_graph=True.*impl='reference'"):
        _penalty_grads(cell, x, "fused")
    outputs, _ = dynamic_rnn(cell, x, dtype=dtype, impl="fused")
    (dx,) = torch.autograd.grad(outputs.pow(2).sum(), x)
    assert dx.abs().sum() > 0


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_fused_path_is_refused_or_right_never_zeros(name, dtype):
    """As dispatched (a float32 LSTM may run oneDNN's LSTM, which autograd differentiates twice:
    on builds without the packed kernel, aarch64 or RNNFLOW_ISA=generic): either the refusal,
    or the reference loop's second derivatives."""
    torch.manual_seed(0)
    cell = CELLS[name]()
    x = torch.randn(2, 5, 4, dtype=dtype, requires_grad=True)
    want = _penalty_grads(cell, x, "reference")
    try:
        got = _penalty_grads(cell, x, "fused")
    except RuntimeError as err:
        assert re.search(r"create_graph=True.*impl='reference'", str(err)), err
        return
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=tol * max(1.0, float(w.abs().max())), rtol=tol)


@pytest.mark.parametrize("name", CELLS)
def test_the_reference_loop_gives_second_order_gradients(name):
    """The remedy the message names: second derivatives of the reference loop against float64
    finite differences, through the inputs and every parameter."""
    torch.manual_seed(0)
    cell = CELLS[name]().double()
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)  # [B, T, D]
    dynamic_rnn(cell, x, dtype=torch.float64)  # build the cell
    names = [name for name, _ in cell.named_parameters()]
    lengths = torch.tensor([3, 2])

    class Run(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = cell

        def forward(self, x):
            outputs, _ = dynamic_rnn(self.cell, x, sequence_length=lengths, impl="reference")
            return outputs.tanh().sum(dim=(0, 2))

    run = Run()

    def f(x, *weights):
        return torch.func.functional_call(
            run, {f"cell.{n}": w for n, w in zip(names, weights)}, (x,)
        )

    weights = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    assert torch.autograd.gradgradcheck(f, (x, *weights), eps=1e-6, atol=1e-5)
