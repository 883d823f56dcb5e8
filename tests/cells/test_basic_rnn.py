"""BasicRNNCell: TF layout, golden values against a NumPy formula, lazy build, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnflow import BasicRNNCell


def test_parameters_have_tf_names_shapes_and_initialisers():
    cell = BasicRNNCell(6, input_size=4)
    shapes = {name: tuple(p.shape) for name, p in cell.named_parameters()}
    assert shapes == {"kernel": (10, 6), "bias": (6,)}
    limit = np.sqrt(6.0 / (10 + 6))  # Glorot-uniform
    assert cell.kernel.abs().max() <= limit
    assert cell.kernel.abs().max() > 0.5 * limit
    assert torch.equal(cell.bias, torch.zeros(6))


def test_step_matches_numpy_formula():
    cell = BasicRNNCell(3, input_size=2, dtype=torch.float64)
    rng = np.random.default_rng(1)
    kernel, bias = rng.normal(size=(5, 3)), rng.normal(size=3)
    x, h = rng.normal(size=(4, 2)), rng.normal(size=(4, 3))
    with torch.no_grad():
        cell.kernel.copy_(torch.from_numpy(kernel))
        cell.bias.copy_(torch.from_numpy(bias))
    out, state = cell(torch.from_numpy(x), torch.from_numpy(h))
    expected = np.tanh(np.concatenate([x, h], axis=1) @ kernel + bias)
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12)
    assert state is out


@pytest.mark.parametrize("activation", [torch.relu, "relu"])
def test_activation_callable_or_name(activation):
    cell = BasicRNNCell(3, activation=activation, input_size=2)
    with torch.no_grad():
        cell.kernel.fill_(-1.0)
    out, _ = cell(torch.ones(2, 2), cell.zero_state(2))
    assert torch.equal(out, torch.zeros(2, 3))


def test_lazy_build_takes_dtype_and_depth_from_first_inputs():
    cell = BasicRNNCell(5)
    assert not cell.built and cell.kernel is None
    out, _ = cell(torch.randn(2, 7, dtype=torch.float64), torch.zeros(2, 5, dtype=torch.float64))
    assert cell.built and cell.kernel.shape == (12, 5) and cell.kernel.dtype == torch.float64
    assert out.shape == (2, 5)


def test_zero_state_shape_dtype_device():
    cell = BasicRNNCell(4, input_size=3, dtype=torch.float64)
    state = cell.zero_state(5)
    assert state.shape == (5, 4) and state.dtype == torch.float64 and not state.any()
    assert cell.zero_state(2, torch.float32).dtype == torch.float32


def test_gradcheck():
    cell = BasicRNNCell(3, input_size=2, dtype=torch.float64)
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    h = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, h, k, b: cell(x, h)[0], (x, h, cell.kernel, cell.bias)
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"num_units": 0}, ValueError, r"BasicRNNCell: num_units must be a positive int, got 0"),
        ({"num_units": 2.5}, ValueError, r"num_units must be a positive int, got 2.5"),
        (
            {"num_units": 3, "activation": "swish"},
            ValueError,
            r"activation must be a callable or one of",
        ),
        ({"num_units": 3, "activation": 3}, TypeError, r"activation must be callable, got int"),
        (
            {"num_units": 3, "input_size": -1},
            ValueError,
            r"input_size must be a positive int or None, got -1",
        ),
        (
            {"num_units": 3, "dtype": torch.int64},
            ValueError,
            r"dtype must be a floating torch.dtype",
        ),
    ],
)
def test_constructor_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        BasicRNNCell(**kwargs)


def test_call_errors_name_the_expected_and_actual_shapes():
    cell = BasicRNNCell(3, input_size=2)
    with pytest.raises(ValueError, match=r"inputs must have depth 2 .* got shape \(4, 5\)"):
        cell(torch.zeros(4, 5), torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"inputs must have shape \[batch, depth\], got \(4,\)"):
        cell(torch.zeros(4), torch.zeros(4, 3))
    with pytest.raises(
        ValueError,
        match=r"BasicRNNCell: state must match the cell.s state structure Tensor\(4, 3\), "
        r"got Tensor\(4, 2\)",
    ):
        cell(torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(
        TypeError, match=r"inputs dtype must match the parameters' dtype torch.float32"
    ):
        cell(torch.zeros(4, 2, dtype=torch.float64), torch.zeros(4, 3, dtype=torch.float64))
