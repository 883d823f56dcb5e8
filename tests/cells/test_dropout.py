"""DropoutWrapper: TF1's keep-prob semantics, variational masks, state filter, train/eval."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
from torch import nn

from rnnflow import (
    BasicLSTMCell,
    BasicRNNCell,
    DropoutWrapper,
    LSTMStateTuple,
    MultiRNNCell,
    bidirectional_dynamic_rnn,
    dynamic_rnn,
)
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


class EchoState(RNNCell):
    """Outputs the state it was given; its new state is its input: shows the state masks."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    state_size = property(lambda self: self.size)
    output_size = property(lambda self: self.size)

    def forward(self, inputs, state):
        return state, inputs


def zero_pattern(t: torch.Tensor) -> torch.Tensor:
    return t == 0


def test_variational_output_mask_is_one_row_shared_by_every_row_and_step():
    # The issue's case: TF1 draws one [1, size] mask for all 64 rows (64 of 64 share row 0's).
    cell = DropoutWrapper(
        BasicRNNCell(8, activation=torch.sigmoid),
        output_keep_prob=0.5,
        variational_recurrent=True,
        seed=3,
    )
    out, _ = dynamic_rnn(cell, torch.ones(64, 5, 3), impl="reference")  # sigmoid: never 0
    zeros = zero_pattern(out)  # [B, T, 8]
    assert zeros.any() and not zeros.all()
    same_as_row0_step0 = (zeros == zeros[0, 0]).all(dim=-1)  # [B, T]
    assert int(same_as_row0_step0.sum()) == 64 * 5


@pytest.mark.parametrize("keep_prob", [0.5, 0.3])
def test_variational_input_mask_scales_kept_values_by_one_over_keep_prob(keep_prob):
    cell = DropoutWrapper(Identity(256), input_keep_prob=keep_prob, variational_recurrent=True)
    out, _ = dynamic_rnn(cell, torch.ones(16, 4, 256))  # Identity: output = dropped inputs
    kept = torch.tensor(1.0) / keep_prob  # TF1: div(value, keep_prob) * binary
    assert set(out.unique().tolist()) == {0.0, kept.item()}
    assert (out == out[0, 0]).all()  # one [1, 256] mask for every row and step
    assert abs((out[0, 0] != 0).float().mean().item() - keep_prob) < 0.15  # 256 draws


def test_variational_state_mask_is_shared_and_spares_nothing_unfiltered():
    cell = DropoutWrapper(EchoState(128), state_keep_prob=0.5, variational_recurrent=True)
    out, final = dynamic_rnn(cell, torch.ones(8, 6, 128))
    # out[:, t] is the state after step t - 1: the input ones, dropped by the state mask.
    dropped = out[:, 1:]  # [B, T - 1, 128]
    assert set(dropped.unique().tolist()) == {0.0, 2.0}
    assert (dropped == dropped[0, 0]).all() and torch.equal(final, dropped[:, -1])
    assert not out[:, 0].any()  # the zero initial state


def test_variational_masks_differ_between_input_state_and_output():
    cell = DropoutWrapper(
        Identity(128, lstm=True),
        input_keep_prob=0.5,
        state_keep_prob=0.5,
        output_keep_prob=0.5,
        variational_recurrent=True,
    )
    out, state = dynamic_rnn(cell, torch.ones(2, 3, 128))
    input_pattern = zero_pattern(state.c[0])  # c: the dropped inputs (never state-dropped)
    output_pattern = zero_pattern(out[0, -1])  # inputs mask, then the output mask
    h_pattern = zero_pattern(state.h[0])  # inputs mask, then the state mask
    assert (output_pattern >= input_pattern).all() and (h_pattern >= input_pattern).all()
    assert not torch.equal(output_pattern, input_pattern)
    assert not torch.equal(h_pattern, input_pattern)
    assert not torch.equal(h_pattern, output_pattern)


@pytest.mark.parametrize("driver", ["dynamic_rnn", "bidirectional_dynamic_rnn"])
def test_variational_masks_are_renewed_by_every_run(driver):
    cell = DropoutWrapper(Identity(64), output_keep_prob=0.5, variational_recurrent=True)
    x = torch.ones(3, 4, 64)

    def run():
        if driver == "dynamic_rnn":
            return dynamic_rnn(cell, x)[0]
        return bidirectional_dynamic_rnn(cell, DropoutWrapper(Identity(64)), x)[0][0]

    first, second = run(), run()
    for out in (first, second):
        assert (out == out[0, 0]).all()  # one mask within a run
    assert not torch.equal(first, second)  # a new one for the next (P(same) = 2**-64)


def test_variational_masks_persist_between_hand_steps_until_begin_sequence():
    wrapped = DropoutWrapper(Identity(64), output_keep_prob=0.5, variational_recurrent=True)
    x, h = torch.ones(3, 64), torch.zeros(3, 64)
    first, _ = wrapped(x, h)
    second, _ = wrapped(torch.ones(5, 64), torch.zeros(5, 64))  # another batch: same mask
    torch.testing.assert_close(second, first[:1].expand(5, 64), rtol=0, atol=0)
    wrapped.begin_sequence()
    third, _ = wrapped(x, h)
    assert not torch.equal(first, third)


def test_variational_input_depth_is_taken_from_the_first_call_or_checked_against_input_size():
    free = DropoutWrapper(Identity(5), input_keep_prob=0.5, variational_recurrent=True)
    free(torch.ones(2, 5), torch.zeros(2, 5))
    with pytest.raises(
        ValueError,
        match=r"DropoutWrapper: input has depth 4 but this run's variational mask has depth 5; "
        r"call begin_sequence\(\) before a new run",
    ):
        free(torch.ones(2, 4), torch.zeros(2, 4))
    fixed = DropoutWrapper(
        Identity(5), input_keep_prob=0.5, variational_recurrent=True, input_size=np.int64(5)
    )
    assert fixed.input_size == 5 and type(fixed.input_size) is int
    with pytest.raises(
        ValueError, match=r"DropoutWrapper: inputs must have depth input_size=5, got shape \(2, 4\)"
    ):
        fixed(torch.ones(2, 4), torch.zeros(2, 4))


def test_non_variational_masks_are_per_element_with_tf_scaling():
    wrapped = DropoutWrapper(Identity(64), output_keep_prob=0.3)
    out, _ = dynamic_rnn(wrapped, torch.ones(32, 2, 64))
    # TF1's nn_ops.dropout: x * (1 / (1 - rate)) * mask, rate = 1 - keep_prob
    assert set(out.unique().tolist()) == {0.0, torch.tensor(1 / (1 - (1 - 0.3))).item()}
    zeros = zero_pattern(out)
    rows_like_row0 = (zeros == zeros[0, 0]).all(dim=-1)  # [B, T]
    assert int(rows_like_row0.sum()) == 1  # only itself (each other row: P = 2**-64)


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


Pair = collections.namedtuple("Pair", "a b")


class NestedOutput(RNNCell):
    """A custom cell whose output is nested, Pair(a [B, 40], (b [B, 30],)): its input split."""

    @property
    def state_size(self):
        return 1

    @property
    def output_size(self):
        return Pair(40, (30,))

    def forward(self, inputs, state):
        return Pair(inputs[:, :40], (inputs[:, 40:],)), state


@pytest.mark.parametrize("variational", [False, True])
def test_nested_outputs_are_dropped_leaf_by_leaf(variational):
    # TF1 maps dropout over the output structure: every leaf's values are 0 or 1 / keep_prob.
    cell = DropoutWrapper(
        NestedOutput(), output_keep_prob=0.25, variational_recurrent=variational, seed=1
    )
    x = torch.ones(16, 6, 70)  # [B, T, 40 + 30]
    out, _ = dynamic_rnn(cell, x, dtype=torch.float32)
    assert isinstance(out, Pair) and out.a.shape == (16, 6, 40) and out.b[0].shape == (16, 6, 30)
    for leaf in (out.a, out.b[0]):
        assert set(leaf.unique().tolist()) == {0.0, 4.0}  # kept values scaled by 1 / 0.25
        if variational:  # one [1, size] mask per leaf, shared by every row and step
            assert (leaf == leaf[:1, :1]).all()
    if variational:  # the two leaves' masks are separate draws: 40 vs 30 units
        assert not torch.equal(out.a[0, 0, :30] == 0, out.b[0][0, 0] == 0)
    cell.eval()  # dropout off: the identity
    out, _ = dynamic_rnn(cell, x, dtype=torch.float32)
    assert torch.equal(out.a, x[..., :40]) and torch.equal(out.b[0], x[..., 40:])
