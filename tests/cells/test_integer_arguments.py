"""Integer-like arguments wherever TF1 takes an int: what ``operator.index`` accepts, one helper;
and zero_state's other argument, the dtype."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import rnnflow
from rnnflow import BasicLSTMCell, BasicRNNCell, DropoutWrapper, GRUCell, LSTMCell, MultiRNNCell
from rnnflow.cells.base import check_int, check_optional_int

CELLS = [BasicRNNCell, BasicLSTMCell, GRUCell, LSTMCell]
INT_LIKE = [
    5,
    np.int64(5),
    np.int32(5),
    np.uint8(5),
    torch.tensor(5),
    torch.tensor(5, dtype=torch.int32),
]
NOT_INTS = [
    (5.0, r"5\.0"),
    (True, r"True"),
    (np.True_, r"np\.True_"),
    (torch.tensor(True), r"tensor\(True\)"),
    (torch.tensor(5.0), r"tensor\(5\.\)"),
    (np.float64(5.0), r"np\.float64\(5\.0\)"),
    ("5", r"'5'"),
    (torch.tensor([5]), r"tensor\(\[5\]\)"),  # not 0-d: TF refuses shape [1] too
    (None, r"None"),
]


@pytest.mark.parametrize("cell_cls", CELLS)
@pytest.mark.parametrize("value", INT_LIKE, ids=repr)
def test_cells_take_integer_like_num_units_and_input_size(cell_cls, value):
    cell = cell_cls(value, input_size=value)
    assert type(cell.num_units) is int and cell.num_units == 5
    assert type(cell.input_size) is int and cell.input_size == 5
    out, _ = cell(torch.ones(5, 5), cell.zero_state(value))  # batch 5 too
    assert out.shape == (5, 5)


@pytest.mark.parametrize("cell_cls", CELLS)
@pytest.mark.parametrize(("value", "shown"), NOT_INTS, ids=lambda v: repr(v)[:20])
def test_cells_refuse_non_integers_for_num_units(cell_cls, value, shown):
    name = cell_cls.__name__
    with pytest.raises(
        ValueError, match=rf"{name}: num_units must be a positive int, got {shown}$"
    ):
        cell_cls(value)


@pytest.mark.parametrize(("value", "shown"), [*NOT_INTS[:-1], (0, "0"), (-2, "-2")])
def test_input_size_refusals_name_the_cell_and_allow_none(value, shown):
    with pytest.raises(
        ValueError, match=rf"GRUCell: input_size must be a positive int or None, got {shown}$"
    ):
        GRUCell(3, input_size=value)
    assert GRUCell(3, input_size=None).input_size is None


@pytest.mark.parametrize("value", [3, np.int64(3), torch.tensor(3)], ids=repr)
def test_zero_state_takes_integer_like_batch_sizes(value):
    lstm = MultiRNNCell([BasicLSTMCell(4), GRUCell(2)])
    state = lstm.zero_state(value)
    assert [tuple(s.shape) for s in rnnflow._nest.flatten(state)] == [(3, 4), (3, 4), (3, 2)]
    assert DropoutWrapper(BasicRNNCell(6)).zero_state(value).shape == (3, 6)
    assert BasicRNNCell(2).zero_state(np.int64(0)).shape == (0, 2)


@pytest.mark.parametrize(
    ("value", "shown"), [*NOT_INTS[:-1], (-1, "-1"), (np.int64(-1), r"np\.int64\(-1\)")]
)
def test_zero_state_refuses_other_batch_sizes(value, shown):
    with pytest.raises(
        ValueError,
        match=rf"BasicLSTMCell\.zero_state: batch_size must be a non-negative int, got {shown}$",
    ):
        BasicLSTMCell(3).zero_state(value)


@pytest.mark.parametrize(
    "make_cell",
    [lambda: GRUCell(3), lambda: MultiRNNCell([GRUCell(3)]), lambda: DropoutWrapper(GRUCell(3))],
)
@pytest.mark.parametrize(
    ("dtype", "shown"),
    [
        ("float32", r"'float32' \(str\)"),
        (np.float32, r"numpy\.float32'> \(type\)"),
        (torch.int64, r"torch\.int64$"),
    ],
)
def test_zero_state_refuses_dtypes_that_are_not_floating_torch_dtypes(make_cell, dtype, shown):
    """TF1 code passes tf.float32 there: its port may pass a string or a NumPy type."""
    cell = make_cell()
    owner = type(cell).__name__
    with pytest.raises(
        TypeError,
        match=rf"^{owner}\.zero_state: dtype must be None or a floating torch\.dtype .*{shown}",
    ):
        cell.zero_state(2, dtype)
    assert _nest_dtypes(cell.zero_state(2, torch.float64)) == {torch.float64}


def _nest_dtypes(state) -> set:
    return {leaf.dtype for leaf in rnnflow._nest.flatten(state)}


def test_dropout_wrapper_integer_arguments():
    wrapped = DropoutWrapper(BasicRNNCell(2), seed=np.int64(-7), input_size=torch.tensor(4))
    assert (wrapped.seed, wrapped.input_size) == (-7, 4)
    with pytest.raises(ValueError, match=r"DropoutWrapper: seed must be an int or None, got 1\.5"):
        DropoutWrapper(BasicRNNCell(2), seed=1.5)
    with pytest.raises(
        ValueError, match=r"DropoutWrapper: input_size must be a positive int or None, got 0"
    ):
        DropoutWrapper(BasicRNNCell(2), input_size=0)


@pytest.mark.parametrize("value", INT_LIKE, ids=repr)
def test_lstm_cell_takes_integer_like_num_proj_and_shards(value):
    cell = LSTMCell(7, num_proj=value, num_unit_shards=value, num_proj_shards=value, input_size=2)
    assert (cell.num_proj, cell.num_unit_shards, cell.num_proj_shards) == (5, 5, 5)
    assert all(type(v) is int for v in (cell.num_proj, cell.num_unit_shards, cell.num_proj_shards))
    assert cell.projection.kernel.shape == (7, 5)
    out, state = cell(torch.ones(3, 2), cell.zero_state(3))
    assert out.shape == (3, 5) and state.h.shape == (3, 5)


@pytest.mark.parametrize("argument", ["num_proj", "num_unit_shards", "num_proj_shards"])
@pytest.mark.parametrize(("value", "shown"), [*NOT_INTS[:-1], (0, "0")], ids=lambda v: repr(v)[:20])
def test_lstm_cell_refuses_non_integers_for_its_optional_ints(argument, value, shown):
    with pytest.raises(
        ValueError, match=rf"LSTMCell: {argument} must be a positive int or None, got {shown}$"
    ):
        LSTMCell(3, **{argument: value})


def test_helper_wording_and_bounds():
    assert check_int("f", "n", np.int16(0), minimum=0) == 0
    assert check_int("f", "n", -3, minimum=None) == -3
    with pytest.raises(ValueError, match=r"^f: n must be an int >= 2, got 1$"):
        check_int("f", "n", 1, minimum=2)
    assert check_optional_int("f", "n", None) is None


class Tutorial(nn.Module):
    """The README's tutorial model, its globals made parameters (a traced function cannot
    capture tensors that require grad)."""

    def __init__(self) -> None:
        super().__init__()
        n_inputs, n_hidden_units, n_classes = 28, 128, 10
        self.weights_in = nn.Parameter(torch.randn(n_inputs, n_hidden_units))
        self.weights_out = nn.Parameter(torch.randn(n_hidden_units, n_classes))
        self.biases_in = nn.Parameter(torch.full((n_hidden_units,), 0.1))
        self.biases_out = nn.Parameter(torch.full((n_classes,), 0.1))
        self.cell = rnnflow.BasicRNNCell(
            n_hidden_units, activation=torch.tanh, input_size=n_hidden_units
        )

    def forward(self, X: torch.Tensor) -> torch.Tensor:  # noqa: N803 (the README's name)
        n_inputs, n_steps, n_hidden_units = 28, 28, 128
        X_in = (X.reshape(-1, n_inputs) @ self.weights_in + self.biases_in).reshape(  # noqa: N806
            -1, n_steps, n_hidden_units
        )
        init_state = self.cell.zero_state(X.shape[0], torch.float32)
        outputs, final_state = rnnflow.dynamic_rnn(
            self.cell, X_in, initial_state=init_state, time_major=False
        )
        return final_state @ self.weights_out + self.biases_out


def test_jit_trace_of_the_readme_tutorial_keeps_the_batch_dynamic():
    model = Tutorial()
    with warnings.catch_warnings():
        # torch 2.13 deprecates jit.trace; the TracerWarnings come from shape checks, which
        # the traced graph does not need (it is checked below at another batch size).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, torch.rand(4, 28, 28))
    for batch in (7, 1):
        images = torch.rand(batch, 28, 28)
        with torch.no_grad():
            torch.testing.assert_close(traced(images), model(images))
