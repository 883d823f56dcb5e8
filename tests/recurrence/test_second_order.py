"""Second-order gradients (``create_graph=True``: gradient penalties, higher-order methods).

The fused path's backward runs compiled loops that autograd cannot differentiate: their results
would count as constants and a second derivative come back as zeros, silently. So the fused
layers refuse a backward under ``create_graph=True``, naming the remedy, and the reference loop
(the remedy) is checked against finite differences in float64 (``gradgradcheck``).
"""

from __future__ import annotations

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

CELLS = {
    "BasicRNNCell": lambda: BasicRNNCell(3),
    "BasicLSTMCell": lambda: BasicLSTMCell(3),
    "GRUCell": lambda: GRUCell(3),
    "LSTMCell": lambda: LSTMCell(3, use_peepholes=True, num_proj=2),
    "LSTMBlockCell": lambda: LSTMBlockCell(3),
    "MultiRNNCell": lambda: MultiRNNCell([GRUCell(3), BasicLSTMCell(2)]),
}


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_fused_path_refuses_create_graph_instead_of_returning_zeros(name, dtype):
    torch.manual_seed(0)
    cell = CELLS[name]()
    x = torch.randn(2, 5, 4, dtype=dtype, requires_grad=True)
    outputs, _ = dynamic_rnn(cell, x, dtype=dtype, impl="fused")
    loss = outputs.pow(2).sum()
    with pytest.raises(RuntimeError, match=r"create_graph=True.*impl='reference'"):
        torch.autograd.grad(loss, x, create_graph=True)
    # without create_graph the same graph's first-order gradient is still there
    outputs, _ = dynamic_rnn(cell, x, dtype=dtype, impl="fused")
    (dx,) = torch.autograd.grad(outputs.pow(2).sum(), x)
    assert dx.abs().sum() > 0


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
