"""DropoutWrapper: TF1's keep-prob semantics, variational masks, state filter, train/eval."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rnnflow import BasicLSTMCell, BasicRNNCell, DropoutWrapper, LSTMStateTuple, MultiRNNCell
from rnnflow.cells.base import RNNCell


class Identity(RNNCell):
    """A cell whose output is its input and whose state is the input too: shows the masks."""

    def __init__(self, size: int, lstm: bool = False):
        super().__init__()
        self.size, self.lstm = size, lstm

    @property
    def state_size(self):
        return LSTMStateTuple(self.size, self.size) if self.lstm else self.size

    @property
    def output_size(self):
        return self.size

    def forward(self, inputs, state):
        new = LSTMStateTuple(inputs, inputs) if self.lstm else inputs
        return inputs, new


def test_eval_mode_is_the_identity_wrapper():
    cell = BasicRNNCell(4, input_size=3)
    wrapped = DropoutWrapper(cell, 0.5, 0.5, 0.5).eval()
    x, h = torch.randn(5, 3), torch.randn(5, 4)
    torch.testing.assert_close(wrapped(x, h), cell(x, h))


def test_output_dropout_zeroes_and_rescales():
    wrapped = DropoutWrapper(Identity(1000), output_keep_prob=0.25)
    out, _ = wrapped(torch.ones(4, 1000), torch.zeros(4, 1000))
    values = set(out.unique().tolist())
    assert values <= {0.0, 4.0}
    kept = (out != 0).float().mean().item()
    assert 0.2 < kept < 0.3  # 4000 Bernoulli(0.25) draws


def test_input_dropout_happens_before_the_cell():
    wrapped = DropoutWrapper(Identity(50), input_keep_prob=0.5)
    out, state = wrapped(torch.ones(2, 50), torch.zeros(2, 50))
    torch.testing.assert_close(state, out)  # the cell saw the dropped inputs
    assert (out == 0).any() and (out == 2).any()


def test_state_dropout_spares_lstm_memory_by_default():
    wrapped = DropoutWrapper(Identity(200, lstm=True), state_keep_prob=0.5)
    _, state = wrapped(torch.ones(3, 200), LSTMStateTuple(torch.zeros(3, 200), torch.zeros(3, 200)))
    assert torch.equal(state.c, torch.ones(3, 200))
    assert (state.h == 0).any() and (state.h == 2).any()


def test_state_filter_reaches_inside_multi_cell_states():
    multi = MultiRNNCell([Identity(100, lstm=True), Identity(100)])
    wrapped = DropoutWrapper(multi, state_keep_prob=0.5)
    zeros = torch.zeros(2, 100)
    _, (lstm_state, plain_state) = wrapped(
        torch.ones(2, 100), (LSTMStateTuple(zeros, zeros), zeros)
    )
    assert torch.equal(lstm_state.c, torch.ones(2, 100))
    assert (lstm_state.h == 0).any() and (plain_state == 0).any()


def test_custom_filter_can_keep_the_whole_state():
    wrapped = DropoutWrapper(
        Identity(50), state_keep_prob=0.5, dropout_state_filter_visitor=lambda s: False
    )
    _, state = wrapped(torch.ones(2, 50), torch.zeros(2, 50))
    assert torch.equal(state, torch.ones(2, 50))


def test_variational_mask_is_shared_across_steps_and_renewed_per_sequence():
    wrapped = DropoutWrapper(Identity(64), output_keep_prob=0.5, variational_recurrent=True)
    x, h = torch.ones(3, 64), torch.zeros(3, 64)
    first, _ = wrapped(x, h)
    second, _ = wrapped(x, h)
    assert torch.equal(first, second)
    wrapped.begin_sequence()
    third, _ = wrapped(x, h)
    assert not torch.equal(first, third)


def test_non_variational_masks_differ_per_step():
    wrapped = DropoutWrapper(Identity(64), output_keep_prob=0.5)
    x, h = torch.ones(3, 64), torch.zeros(3, 64)
    assert not torch.equal(wrapped(x, h)[0], wrapped(x, h)[0])


def test_seed_makes_masks_reproducible():
    a = DropoutWrapper(Identity(64), output_keep_prob=0.5, seed=7)
    b = DropoutWrapper(Identity(64), output_keep_prob=0.5, seed=7)
    x, h = torch.ones(3, 64), torch.zeros(3, 64)
    assert torch.equal(a(x, h)[0], b(x, h)[0])


def test_keep_prob_one_changes_nothing_in_training():
    cell = BasicLSTMCell(4, input_size=3)
    wrapped = DropoutWrapper(cell)
    x = torch.randn(2, 3)
    torch.testing.assert_close(wrapped(x, cell.zero_state(2)), cell(x, cell.zero_state(2)))
    assert isinstance(wrapped, nn.Module) and wrapped.state_size == cell.state_size


@pytest.mark.parametrize("name", ["input_keep_prob", "output_keep_prob", "state_keep_prob"])
@pytest.mark.parametrize("value", [0.0, 1.5, -0.1])
def test_keep_probabilities_outside_zero_one_are_refused(name, value):
    with pytest.raises(
        ValueError,
        match=rf"DropoutWrapper: {name} must be a float in \(0, 1\], "
        rf"got {value}",
    ):
        DropoutWrapper(BasicRNNCell(2), **{name: value})


def test_bad_filter_result_is_refused():
    wrapped = DropoutWrapper(
        Identity(4), state_keep_prob=0.5, dropout_state_filter_visitor=lambda s: "yes"
    )
    with pytest.raises(ValueError, match=r"must return a bool or a structure of bools"):
        wrapped(torch.ones(1, 4), torch.zeros(1, 4))
