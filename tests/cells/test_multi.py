"""MultiRNNCell: equals chaining its cells by hand; TF scope names; both state layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rnnflow_testing import assert_close_tree

from rnnflow import (
    BasicLSTMCell,
    BasicRNNCell,
    DropoutWrapper,
    GRUCell,
    LSTMStateTuple,
    MultiRNNCell,
)


def test_step_equals_cells_chained_by_hand():
    cells = [
        BasicLSTMCell(4, input_size=3),
        GRUCell(5, input_size=4),
        BasicRNNCell(2, input_size=5),
    ]
    multi = MultiRNNCell(cells)
    x = torch.randn(6, 3)
    state = multi.zero_state(6)
    state = tuple(
        torch.randn_like(s)
        if torch.is_tensor(s)
        else LSTMStateTuple(torch.randn_like(s.c), torch.randn_like(s.h))
        for s in state
    )
    out, new_state = multi(x, state)
    h = x
    expected_states = []
    for cell, sub in zip(cells, state):
        h, sub_new = cell(h, sub)
        expected_states.append(sub_new)
    torch.testing.assert_close(out, h)
    assert_close_tree(new_state, tuple(expected_states))
    assert multi.output_size == 2
    assert multi.state_size == (LSTMStateTuple(4, 4), 5, 2)


def test_parameters_are_named_like_tf_scopes():
    multi = MultiRNNCell([BasicRNNCell(2, input_size=1), GRUCell(3, input_size=2)])
    assert [n for n, _ in multi.named_parameters()] == [
        "cell_0.kernel",
        "cell_0.bias",
        "cell_1.gates.kernel",
        "cell_1.gates.bias",
        "cell_1.candidate.kernel",
        "cell_1.candidate.bias",
    ]


def test_concatenated_state():
    cells = [BasicRNNCell(2, input_size=3), GRUCell(4, input_size=2)]
    tuple_multi = MultiRNNCell(cells)
    concat_multi = MultiRNNCell(cells, state_is_tuple=False)
    assert concat_multi.state_size == 6
    x, s0, s1 = torch.randn(3, 3), torch.randn(3, 2), torch.randn(3, 4)
    out_t, (n0, n1) = tuple_multi(x, (s0, s1))
    out_c, state = concat_multi(x, torch.cat([s0, s1], 1))
    torch.testing.assert_close(out_c, out_t)
    torch.testing.assert_close(state, torch.cat([n0, n1], 1))


def test_lazy_sub_cells_build_on_first_call():
    multi = MultiRNNCell([BasicLSTMCell(4), BasicRNNCell(3)])
    assert not multi.built
    out, _ = multi(torch.randn(2, 7), multi.zero_state(2))
    assert multi.built and out.shape == (2, 3)
    assert multi.cell_1.kernel.shape == (4 + 3, 3)


def test_errors():
    with pytest.raises(ValueError, match=r"MultiRNNCell: cells must be a non-empty list of cells"):
        MultiRNNCell([])
    with pytest.raises(TypeError, match=r"MultiRNNCell: cells\[1\] must be an RNNCell, got int"):
        MultiRNNCell([BasicRNNCell(2), 3])
    with pytest.raises(ValueError, match=r"state_is_tuple=False needs cells with plain states"):
        MultiRNNCell([BasicLSTMCell(2)], state_is_tuple=False)
    multi = MultiRNNCell([BasicRNNCell(2, input_size=1), BasicRNNCell(2, input_size=2)])
    with pytest.raises(
        ValueError,
        match=r"state must match the cell's state structure "
        r"\(Tensor\(3, 2\), Tensor\(3, 2\)\), got Tensor\(3, 4\)",
    ):
        multi(torch.zeros(3, 1), torch.zeros(3, 4))


@pytest.mark.parametrize("cell_cls", [BasicRNNCell, BasicLSTMCell, GRUCell])
def test_one_cell_repeated_as_layers_is_refused(cell_cls):
    # TF1: [cell] * n shares one kernel silently when the sizes allow it, else a shape error.
    cell = cell_cls(4)
    name = cell_cls.__name__
    message = (
        rf"MultiRNNCell: cells\[0\] and cells\[1\] are \(or wrap\) the same {name} object; "
        r"a list like \[cell\] \* n would share one kernel between layers \(TF1 shares it "
        r"silently or fails with a shape error\)\. "
        rf"Create one cell per layer: \[{name}\(\.\.\.\) for _ in range\(n\)\]$"
    )
    with pytest.raises(ValueError, match=message):
        MultiRNNCell([cell] * 3)
    with pytest.raises(ValueError, match=r"cells\[1\] and cells\[2\] are \(or wrap\) the same"):
        MultiRNNCell([cell_cls(4), cell, DropoutWrapper(cell, output_keep_prob=0.5)])
    MultiRNNCell([cell_cls(4) for _ in range(3)])  # one cell per layer is fine


def test_unbuilt_cells_load_a_state_dict_and_compute_the_same():
    built = MultiRNNCell([BasicLSTMCell(4, input_size=3), GRUCell(2, input_size=4)])
    lazy = MultiRNNCell([BasicLSTMCell(4), GRUCell(2)])
    lazy.load_state_dict(built.state_dict())
    assert lazy.built
    x = torch.randn(5, 3)
    assert_close_tree(lazy(x, lazy.zero_state(5)), built(x, built.zero_state(5)))


class OnesState(BasicRNNCell):
    """A cell with its own zero_state (TF1 cells may override it): the state starts at one."""

    def zero_state(self, batch_size, dtype=None, *, device=None):
        return super().zero_state(batch_size, dtype, device=device) + 1


def test_zero_state_asks_every_cell_as_tf1_does():
    multi = MultiRNNCell([OnesState(2), DropoutWrapper(OnesState(3)), BasicRNNCell(1)])
    first, second, third = multi.zero_state(np.int64(4), torch.float64)
    assert torch.equal(first, torch.ones(4, 2, dtype=torch.float64))
    assert torch.equal(second, torch.ones(4, 3, dtype=torch.float64))
    assert torch.equal(third, torch.zeros(4, 1, dtype=torch.float64))
    with pytest.raises(
        ValueError, match=r"MultiRNNCell\.zero_state: batch_size must be a non-negative int, got -1"
    ):
        multi.zero_state(-1)


class TF1Style(torch.nn.Module):
    """A custom cell written for TF1: zero_state(batch_size, dtype), no device argument."""

    state_size = output_size = 2

    def zero_state(self, batch_size, dtype):
        return torch.full((batch_size, 2), 0.5, dtype=dtype)

    def forward(self, inputs, state):
        return inputs[:, :2] + state, inputs[:, :2] + state


def test_zero_state_of_a_tf1_style_cell_inside_a_stack_or_wrapper():
    for cell in (MultiRNNCell([TF1Style(), BasicRNNCell(3)]), DropoutWrapper(TF1Style())):
        state = cell.zero_state(2, torch.float64, device="cpu")
        first = state[0] if isinstance(state, tuple) else state
        assert torch.equal(first, torch.full((2, 2), 0.5, dtype=torch.float64))
