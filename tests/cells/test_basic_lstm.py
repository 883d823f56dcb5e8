"""BasicLSTMCell: gate order i, j, f, o; forget_bias at run time; both state layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnflow import BasicLSTMCell, LSTMStateTuple


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_lstm(x, c, h, kernel, bias, forget_bias):
    i, j, f, o = np.split(np.concatenate([x, h], 1) @ kernel + bias, 4, axis=1)
    new_c = c * sigmoid(f + forget_bias) + sigmoid(i) * np.tanh(j)
    return np.tanh(new_c) * sigmoid(o), new_c


def make_cell(forget_bias=1.0, state_is_tuple=True):
    cell = BasicLSTMCell(3, forget_bias, state_is_tuple, input_size=2, dtype=torch.float64)
    rng = np.random.default_rng(2)
    kernel, bias = rng.normal(size=(5, 12)), rng.normal(size=12)
    with torch.no_grad():
        cell.kernel.copy_(torch.from_numpy(kernel))
        cell.bias.copy_(torch.from_numpy(bias))
    return cell, kernel, bias


@pytest.mark.parametrize("forget_bias", [1.0, 0.0, 0.5])
def test_step_matches_numpy_formula(forget_bias):
    cell, kernel, bias = make_cell(forget_bias)
    rng = np.random.default_rng(3)
    x, c, h = rng.normal(size=(4, 2)), rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    out, state = cell(torch.from_numpy(x), LSTMStateTuple(torch.from_numpy(c), torch.from_numpy(h)))
    want_h, want_c = numpy_lstm(x, c, h, kernel, bias, forget_bias)
    assert isinstance(state, LSTMStateTuple)
    np.testing.assert_allclose(out.detach().numpy(), want_h, rtol=1e-12)
    np.testing.assert_allclose(state.c.detach().numpy(), want_c, rtol=1e-12)
    torch.testing.assert_close(state.h, out)


def test_forget_bias_is_not_stored_in_the_bias():
    cell = BasicLSTMCell(4, forget_bias=1.0, input_size=3)
    assert torch.equal(cell.bias, torch.zeros(16))
    assert {n: tuple(p.shape) for n, p in cell.named_parameters()} == {
        "kernel": (7, 16),
        "bias": (16,),
    }


def test_concatenated_state_is_c_then_h():
    tuple_cell, kernel, bias = make_cell(state_is_tuple=True)
    concat_cell, _, _ = make_cell(state_is_tuple=False)
    assert concat_cell.state_size == 6 and tuple_cell.state_size == LSTMStateTuple(3, 3)
    x = torch.randn(4, 2, dtype=torch.float64)
    c, h = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    out_t, (new_c, new_h) = tuple_cell(x, LSTMStateTuple(c, h))
    out_c, new_state = concat_cell(x, torch.cat([c, h], 1))
    torch.testing.assert_close(out_c, out_t)
    torch.testing.assert_close(new_state, torch.cat([new_c, new_h], 1))


def test_zero_state_is_a_state_tuple():
    state = BasicLSTMCell(5, input_size=2).zero_state(3)
    assert isinstance(state, LSTMStateTuple)
    assert state.c.shape == state.h.shape == (3, 5)
    assert state.dtype == torch.float32
    assert not state.c.any() and not state.h.any()  # zeros


def test_gradcheck():
    cell, _, _ = make_cell(forget_bias=0.7)
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    c = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)

    def step(x, c, h, kernel, bias):
        out, state = cell(x, LSTMStateTuple(c, h))
        return out, state.c

    assert torch.autograd.gradcheck(step, (x, c, h, cell.kernel, cell.bias))


def test_errors():
    with pytest.raises(TypeError, match=r"BasicLSTMCell: forget_bias must be a number, got '1'"):
        BasicLSTMCell(3, forget_bias="1")
    for bad in (float("nan"), float("inf"), -float("inf")):  # every step's gates would be NaN
        with pytest.raises(
            ValueError, match=rf"BasicLSTMCell: forget_bias must be finite, got {bad}"
        ):
            BasicLSTMCell(3, forget_bias=bad)
    cell = BasicLSTMCell(3, input_size=2)
    with pytest.raises(
        ValueError,
        match=r"state must match the cell's state structure "
        r"LSTMStateTuple\(c=Tensor\(4, 3\), h=Tensor\(4, 3\)\), got Tensor\(4, 6\)",
    ):
        cell(torch.zeros(4, 2), torch.zeros(4, 6))
