"""GRUCell: TF1's formulation (reset before the candidate matmul), names and initialisers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnflow import GRUCell


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def load(cell, rng):
    values = {}
    with torch.no_grad():
        for name, p in cell.named_parameters():
            values[name] = rng.normal(size=tuple(p.shape))
            p.copy_(torch.from_numpy(values[name]))
    return values


def test_parameters_have_tf_names_and_initialisers():
    cell = GRUCell(4, input_size=3)
    shapes = {n: tuple(p.shape) for n, p in cell.named_parameters()}
    assert shapes == {
        "gates.kernel": (7, 8),
        "gates.bias": (8,),
        "candidate.kernel": (7, 4),
        "candidate.bias": (4,),
    }
    assert torch.equal(cell.gates.bias, torch.ones(8))
    assert torch.equal(cell.candidate.bias, torch.zeros(4))


def test_step_matches_numpy_formula_with_reset_before_matmul():
    cell = GRUCell(3, input_size=2, dtype=torch.float64)
    w = load(cell, np.random.default_rng(4))
    rng = np.random.default_rng(5)
    x, h = rng.normal(size=(4, 2)), rng.normal(size=(4, 3))
    gates = sigmoid(np.concatenate([x, h], 1) @ w["gates.kernel"] + w["gates.bias"])
    r, u = gates[:, :3], gates[:, 3:]
    c = np.tanh(np.concatenate([x, r * h], 1) @ w["candidate.kernel"] + w["candidate.bias"])
    expected = u * h + (1 - u) * c
    out, state = cell(torch.from_numpy(x), torch.from_numpy(h))
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12)
    assert state is out


def test_differs_from_cudnn_reset_placement():
    """torch.nn.GRUCell applies r after the recurrent matmul: same weights, other numbers."""
    cell = GRUCell(3, input_size=2, dtype=torch.float64)
    load(cell, np.random.default_rng(6))
    torch_cell = torch.nn.GRUCell(2, 3, dtype=torch.float64)
    gk, gb = cell.gates.kernel.detach(), cell.gates.bias.detach()
    ck, cb = cell.candidate.kernel.detach(), cell.candidate.bias.detach()
    with torch.no_grad():  # torch order r, z, n; same maths except where r is applied
        torch_cell.weight_ih.copy_(torch.cat([gk[:2].T, ck[:2].T]))
        torch_cell.weight_hh.copy_(torch.cat([gk[2:].T, ck[2:].T]))
        torch_cell.bias_ih.copy_(torch.cat([gb, cb]))
        torch_cell.bias_hh.zero_()
    x, h = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    ours, _ = cell(x, h)
    theirs = torch_cell(x, h)
    assert not torch.allclose(ours, theirs, atol=1e-3)
    h_zero = torch.zeros(4, 3, dtype=torch.float64)  # with h = 0 the placement cannot matter
    torch.testing.assert_close(cell(x, h_zero)[0], torch_cell(x, h_zero))


def test_custom_initialisers_apply_to_both_kernels_and_biases():
    cell = GRUCell(
        2,
        kernel_initializer=torch.nn.init.ones_,
        bias_initializer=lambda b: torch.nn.init.constant_(b, 0.25),
        input_size=1,
    )
    assert torch.equal(cell.gates.kernel, torch.ones(3, 4))
    assert torch.equal(cell.candidate.kernel, torch.ones(3, 2))
    assert torch.equal(cell.gates.bias, torch.full((4,), 0.25))
    assert torch.equal(cell.candidate.bias, torch.full((2,), 0.25))


def test_gradcheck():
    cell = GRUCell(3, input_size=2, dtype=torch.float64)
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    h = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    params = tuple(cell.parameters())
    assert torch.autograd.gradcheck(lambda x, h, *p: cell(x, h)[0], (x, h, *params))


def test_initialiser_must_be_callable():
    with pytest.raises(TypeError, match=r"GRUCell: kernel_initializer must be a callable or None"):
        GRUCell(3, kernel_initializer="glorot")
