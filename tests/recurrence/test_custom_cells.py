"""What TF1's dynamic_rnn accepts from a custom RNNCell: states and outputs nested as ``tf.nest``
structures (tuples, namedtuples, lists, dicts), duck-typed cells with TF1's ``zero_state``
signature; everything else refused at the boundary or at the step that breaks the contract,
with a message, never a crash inside the loop. The cells are small enough to check by hand."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from rnnflow_testing import assert_close_tree

from rnnflow import (
    BasicRNNCell,
    DropoutWrapper,
    MultiRNNCell,
    RNNCell,
    _nest,
    bidirectional_dynamic_rnn,
    dynamic_rnn,
    stack_bidirectional_dynamic_rnn,
    static_bidirectional_rnn,
    static_rnn,
)


class Pair(NamedTuple):
    step: object
    more: object


class DictCounter(RNNCell):
    """state {"count": [B, 1], "total": [B, 2]}: count' = count + 1, total' = total + x;
    output Pair(step=count', more=(total', 2 count')), of sizes Pair(1, (2, 1))."""

    @property
    def state_size(self):
        return {"total": 2, "count": 1}

    @property
    def output_size(self):
        return Pair(step=1, more=(2, 1))

    def forward(self, inputs, state):
        count = state["count"] + 1
        total = state["total"] + inputs
        return Pair(step=count, more=(total, 2 * count)), {"count": count, "total": total}


class ListStateCell(RNNCell):
    """state [h [B, 1], (s [B, 2],)] as a list: h' = h + 1, s' = s * 2 + x; output h'."""

    state_size = [1, (2,)]
    output_size = 1

    def forward(self, inputs, state):
        h, (s,) = state
        return h + 1, [h + 1, (s * 2 + inputs,)]


class Tf1DuckCell:
    """Not an nn.Module: TF1's interface, ``zero_state(batch_size, dtype)``; h' = h + x[:, :1]."""

    state_size = 1
    output_size = 1

    def zero_state(self, batch_size, dtype):
        return torch.zeros(batch_size, 1, dtype=dtype)

    def __call__(self, inputs, state):
        h = state + inputs[:, :1]
        return h, h


# Custom cells are never fused: "auto" runs them on the reference loop, as "reference" does.
IMPLS = ["auto", "reference"]


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> str:
    return request.param


X = torch.arange(1.0, 13.0).view(2, 3, 2)  # [B=2, T=3, D=2]: row 0 x_t = (2t+1, 2t+2)
LENGTHS = [3, 1]


def test_dict_state_and_nested_namedtuple_outputs_are_run_and_masked(impl):
    out, state = dynamic_rnn(DictCounter(), X, sequence_length=LENGTHS, impl=impl)
    assert isinstance(out, Pair) and isinstance(out.more, tuple)
    assert out.step[:, :, 0].tolist() == [[1, 2, 3], [1, 0, 0]]
    assert out.more[0][0].tolist() == [[1, 2], [4, 6], [9, 12]]
    assert out.more[0][1].tolist() == [[7, 8], [0, 0], [0, 0]]
    assert out.more[1][:, :, 0].tolist() == [[2, 4, 6], [2, 0, 0]]
    assert sorted(state) == ["count", "total"]
    assert state["count"][:, 0].tolist() == [3, 1]
    assert state["total"].tolist() == [[9, 12], [7, 8]]


def test_nested_outputs_are_time_major_when_asked(impl):
    out_b, state_b = dynamic_rnn(DictCounter(), X, sequence_length=LENGTHS, impl=impl)
    out_t, state_t = dynamic_rnn(
        DictCounter(), X.transpose(0, 1), sequence_length=LENGTHS, time_major=True, impl=impl
    )
    assert_close_tree(_nest.map_structure(lambda o: o.transpose(0, 1), out_t), out_b)
    assert_close_tree(state_t, state_b)


def test_list_state_and_its_initial_state(impl):
    init = [torch.tensor([[10.0], [20.0]]), (torch.ones(2, 2),)]
    out, state = dynamic_rnn(
        ListStateCell(), X, sequence_length=LENGTHS, initial_state=init, impl=impl
    )
    assert out[:, :, 0].tolist() == [[11, 12, 13], [21, 0, 0]]
    assert state[0][:, 0].tolist() == [13, 21]
    # row 0, 3 steps: s = ((1*2 + x0)*2 + x1)*2 + x2 = 8 + 4 x0 + 2 x1 + x2; row 1: 2 + x0
    assert state[1][0].tolist() == [[8 + 4 * 1 + 2 * 3 + 5, 8 + 4 * 2 + 2 * 4 + 6], [9, 10]]


def test_gradients_flow_through_nested_states(impl):
    x = X.clone().requires_grad_()
    _, state = dynamic_rnn(DictCounter(), x, sequence_length=LENGTHS, impl=impl)
    state["total"].sum().backward()
    assert x.grad[:, :, 0].tolist() == [[1, 1, 1], [1, 0, 0]]  # valid steps only


def test_zero_steps_give_nested_zero_outputs_and_the_initial_state(impl):
    out, state = dynamic_rnn(DictCounter(), torch.zeros(2, 0, 2), impl=impl)
    assert out.step.shape == (2, 0, 1) and out.more[0].shape == (2, 0, 2)
    assert out.more[1].shape == (2, 0, 1)
    assert not state["count"].any() and state["total"].shape == (2, 2)


def test_bidirectional_reverses_every_output_leaf(impl):
    (out_fw, out_bw), (_, state_bw) = bidirectional_dynamic_rnn(
        DictCounter(), DictCounter(), X, sequence_length=LENGTHS, impl=impl
    )
    assert out_fw.step[:, :, 0].tolist() == [[1, 2, 3], [1, 0, 0]]
    assert out_bw.step[:, :, 0].tolist() == [[3, 2, 1], [1, 0, 0]]  # aligned with the inputs
    assert out_bw.more[0][0].tolist() == [[9, 12], [8, 10], [5, 6]]
    assert state_bw["total"].tolist() == [[9, 12], [7, 8]]


def test_static_rnn_returns_one_nested_output_per_step(impl):
    steps = list(X.unbind(1))  # T = 3 steps [B, D]
    outputs, state = static_rnn(DictCounter(), steps, sequence_length=LENGTHS, impl=impl)
    assert len(outputs) == 3 and all(isinstance(o, Pair) for o in outputs)
    assert [o.step[:, 0].tolist() for o in outputs] == [[1, 1], [2, 0], [3, 0]]
    assert outputs[1].more[0].tolist() == [[4, 6], [0, 0]]
    assert state["total"].tolist() == [[9, 12], [7, 8]]


def test_static_bidirectional_rnn_concatenates_each_output_leaf(impl):
    outputs, _, state_bw = static_bidirectional_rnn(
        DictCounter(), DictCounter(), list(X.unbind(1)), sequence_length=LENGTHS, impl=impl
    )
    assert len(outputs) == 3 and isinstance(outputs[0], Pair)
    # step t: [fw count, bw count]; bw reads row 0 reversed (count 3, 2, 1), row 1 has length 1
    assert [o.step.tolist() for o in outputs] == [
        [[1, 3], [1, 1]],
        [[2, 2], [0, 0]],
        [[3, 1], [0, 0]],
    ]
    assert outputs[0].more[0].tolist() == [[1, 2, 9, 12], [7, 8, 7, 8]]
    assert state_bw["total"].tolist() == [[9, 12], [7, 8]]


def test_static_bidirectional_rnn_refuses_output_structures_that_differ():
    with pytest.raises(
        ValueError,
        match=r"^static_bidirectional_rnn: cell_fw and cell_bw must have outputs of the same "
        r"structure \(they are concatenated leaf by leaf\), got Pair\(",
    ):
        static_bidirectional_rnn(DictCounter(), BasicRNNCell(3), list(X.unbind(1)))


def test_stacked_layers_refuse_nested_outputs():
    with pytest.raises(
        ValueError,
        match=r"^stack_bidirectional_dynamic_rnn: cells_bw\[0\] must have a single output \(an "
        r"int output_size: the layers' outputs are concatenated\), got Pair\(",
    ):
        stack_bidirectional_dynamic_rnn([BasicRNNCell(3)], [DictCounter()], X)


def test_duck_typed_tf1_cell(impl):
    out, state = dynamic_rnn(Tf1DuckCell(), X, sequence_length=LENGTHS, impl=impl)
    assert out[:, :, 0].tolist() == [[1, 4, 9], [7, 0, 0]]
    assert state[:, 0].tolist() == [9, 7]


def test_stack_and_wrapper_around_a_dict_state_cell(impl):
    top = BasicRNNCell(1, activation="linear", input_size=1)
    with torch.no_grad():
        top.kernel.copy_(torch.tensor([[1.0], [0.0]]))  # h' = x: the counter's step
        top.bias.zero_()

    class StepOnly(DictCounter):  # a plain output, so that the next layer can read it
        @property
        def output_size(self):
            return 1

        def forward(self, inputs, state):
            out, new = super().forward(inputs, state)
            return out.step, new

    cell = MultiRNNCell([DropoutWrapper(StepOnly(), state_keep_prob=0.5), top])
    cell.train()
    out, state = dynamic_rnn(cell, X, sequence_length=LENGTHS, impl=impl)
    assert out[:, :, 0].tolist()[1] == [1, 0, 0]
    assert sorted(state[0]) == ["count", "total"]


class NestedDictCell(RNNCell):
    """state {"h": [B, 1], "pair": ([B, 2], [B, 1])}: every part + 1; output h'."""

    state_size = {"h": 1, "pair": (2, 1)}
    output_size = 1

    def forward(self, inputs, state):
        new = _nest.map_structure(lambda s: s + 1, state)
        return new["h"], new


def test_state_dropout_over_a_nested_dict_state(impl):
    """DropoutWrapper's state filter walks dicts as tf.nest does (values by sorted key)."""
    cell = DropoutWrapper(NestedDictCell(), state_keep_prob=0.5, seed=0).train()
    out, state = dynamic_rnn(cell, X, impl=impl)
    assert out.shape == (2, 3, 1)
    assert sorted(state) == ["h", "pair"] and state["pair"][0].shape == (2, 2)
    kept = state["pair"][0][state["pair"][0] != 0]  # survivors of the last step's dropout: 2 s
    assert kept.numel() and all(v % 2 == 0 for v in kept.tolist())


class Broken(RNNCell):
    """Returns what ``make(inputs, state, step)`` builds; state [B, 2], output [B, 2]."""

    state_size = output_size = 2

    def __init__(self, make):
        super().__init__()
        self.make, self.step = make, 0

    def forward(self, inputs, state):
        self.step += 1
        return self.make(inputs, state, self.step - 1)


BROKEN = {
    "output-size": (
        lambda x, s, t: (x[:, :1], s),
        ValueError,
        r"dynamic_rnn: the cell's output at step 0 must match its output_size Tensor\(2, 2\), "
        r"got Tensor\(2, 1\)",
    ),
    "state-structure": (
        lambda x, s, t: (x, (s, s)),
        ValueError,
        r"the cell's new state at step 0 must match its state_size Tensor\(2, 2\), "
        r"got \(Tensor\(2, 2\), Tensor\(2, 2\)\)",
    ),
    "shape-at-step-2": (
        lambda x, s, t: (x, s if t < 2 else s[:1]),
        ValueError,
        r"the cell's new state at step 2 must match its state_size Tensor\(2, 2\), "
        r"got Tensor\(1, 2\)",
    ),
    "not-a-pair": (
        lambda x, s, t: x,
        TypeError,
        r"dynamic_rnn: the cell must return \(output, new_state\), got Tensor\(2, 2\) at step 0",
    ),
    "none-output": (
        lambda x, s, t: (None, s),
        ValueError,
        r"the cell's output at step 0 must match its output_size Tensor\(2, 2\), got None",
    ),
    "dtype": (
        lambda x, s, t: (x.double(), s),
        TypeError,
        r"the cell's output at step 0 must have the inputs' dtype torch.float32, "
        r"got torch.float64",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_cell_breaking_the_contract_is_named_with_its_step(case, impl):
    make, error, message = BROKEN[case]
    with pytest.raises(error, match=message):
        dynamic_rnn(Broken(make), torch.zeros(2, 4, 2), impl=impl)


@pytest.mark.parametrize(
    "sizes, message",
    [
        ({"state_size": 2.5}, r"dynamic_rnn: cell\.state_size must be an int or a nested "),
        ({"output_size": (2, None)}, r"cell\.output_size must be an int or a nested structure"),
        ({"state_size": {"a": True}}, r"got \{'a': True\}"),
        ({"output_size": -1}, r"cell\.output_size .* got -1"),
    ],
)
def test_sizes_that_are_not_ints_are_refused_at_the_boundary(sizes, message):
    with pytest.raises(ValueError, match=message):
        dynamic_rnn(_Sized(**sizes), torch.zeros(2, 4, 2))


class _Sized(RNNCell):
    def __init__(self, state_size=2, output_size=2):
        super().__init__()
        self._sizes = state_size, output_size

    @property
    def state_size(self):
        return self._sizes[0]

    @property
    def output_size(self):
        return self._sizes[1]

    def forward(self, inputs, state):  # pragma: no cover - never reached
        raise AssertionError("ran a cell the boundary should have refused")


def test_initial_state_missing_a_dict_key_is_refused():
    with pytest.raises(
        ValueError,
        match=r"dynamic_rnn: initial_state must match the cell's state structure "
        r"\{'total': Tensor\(2, 2\), 'count': Tensor\(2, 1\)\}, got \{'count': Tensor\(2, 1\)\}",
    ):
        dynamic_rnn(DictCounter(), X, initial_state={"count": torch.zeros(2, 1)})


def test_nested_inputs_are_refused_at_the_boundary():
    with pytest.raises(TypeError, match=r"dynamic_rnn: inputs must be a torch.Tensor, got tuple"):
        dynamic_rnn(DictCounter(), (X, X))


class _BadZeroState(_Sized):
    def zero_state(self, batch_size, dtype=None, *, device=None):
        return torch.zeros(batch_size, 3)


class _Float64Duck(Tf1DuckCell):
    def zero_state(self, batch_size, dtype):
        return torch.zeros(batch_size, 1, dtype=torch.float64)


@pytest.mark.parametrize(
    "cell, error, message",
    [
        (
            _BadZeroState(),
            ValueError,
            r"dynamic_rnn: cell\.zero_state\(2\) must match the cell's state structure "
            r"Tensor\(2, 2\), got Tensor\(2, 3\)",
        ),
        (
            _Float64Duck(),
            TypeError,
            r"dynamic_rnn: cell\.zero_state\(2\) must have the inputs' dtype torch.float32 and "
            r"device cpu, got dtype torch.float64 on cpu",
        ),
    ],
    ids=["shape", "dtype"],
)
def test_a_zero_state_that_breaks_the_contract_is_refused(cell, error, message):
    with pytest.raises(error, match=message):
        dynamic_rnn(cell, torch.zeros(2, 4, 2))
