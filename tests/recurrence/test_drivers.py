"""static_rnn, static_bidirectional_rnn, static_state_saving_rnn, raw_rnn and the stacked
bidirectional drivers: the TF1 protocol details and errors (numbers against TensorFlow are in
test_tf_parity.py: static_*, stack_bidi_* and raw_rnn_* fixtures)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnflow import (
    BasicRNNCell,
    DropoutWrapper,
    GRUCell,
    LSTMCell,
    LSTMStateTuple,
    dynamic_rnn,
    raw_rnn,
    stack_bidirectional_dynamic_rnn,
    stack_bidirectional_rnn,
    static_bidirectional_rnn,
    static_rnn,
    static_state_saving_rnn,
)


def steps(t=4, b=3, d=2, dtype=torch.float64):
    return [torch.randn(b, d, dtype=dtype) for _ in range(t)]


# ----------------------------------------------------------------------------- static_rnn
def test_static_rnn_is_the_step_by_step_loop_with_tf1_lengths():
    cell = BasicRNNCell(3, input_size=2, dtype=torch.float64)
    xs = steps()
    outputs, state = static_rnn(cell, xs, sequence_length=torch.tensor([4, 1, 0]))
    h = torch.zeros(3, 3, dtype=torch.float64)
    for t, x in enumerate(xs):  # by hand: h' = tanh([x, h] W + b), rows past their length frozen
        new_h = torch.tanh(torch.cat([x, h], 1) @ cell.kernel + cell.bias)
        live = torch.tensor([t < 4, t < 1, False])[:, None]
        torch.testing.assert_close(outputs[t], torch.where(live, new_h, 0.0))
        h = torch.where(live, new_h, h)
    torch.testing.assert_close(state, h)
    assert isinstance(outputs, list) and len(outputs) == 4


@pytest.mark.parametrize(
    ("inputs", "error", "match"),
    [
        (torch.zeros(4, 3, 2), TypeError, r"static_rnn: inputs must be a list of \[batch, depth\]"),
        ([], ValueError, r"static_rnn: inputs must not be empty"),
        ([torch.zeros(3, 2), "x"], TypeError, r"static_rnn: inputs\[1\] must be a torch.Tensor"),
        ([torch.zeros(3, 2, 1)], ValueError, r"inputs\[0\] must have shape \[batch, depth\]"),
        (
            [torch.zeros(3, 2), torch.zeros(2, 2)],
            ValueError,
            r"static_rnn: inputs\[1\] must have the shape of inputs\[0\] \[3, 2\], got \[2, 2\]",
        ),
        (
            [torch.zeros(3, 2), torch.zeros(3, 2, dtype=torch.float64)],
            TypeError,
            r"inputs\[1\] is torch.float64 on cpu, inputs\[0\] is torch.float32 on cpu",
        ),
    ],
)
def test_static_rnn_refuses_bad_inputs(inputs, error, match):
    with pytest.raises(error, match=match):
        static_rnn(BasicRNNCell(3), inputs)


def test_static_errors_name_the_static_driver():
    cell = BasicRNNCell(3)
    with pytest.raises(ValueError, match=r"^static_rnn: sequence_length must be <= the time"):
        static_rnn(cell, steps(2), sequence_length=torch.tensor([3, 1, 0]))
    with pytest.raises(ValueError, match=r"^static_bidirectional_rnn: sequence_length must have"):
        static_bidirectional_rnn(
            cell, BasicRNNCell(3), steps(2), sequence_length=torch.ones(2, dtype=torch.long)
        )


def test_static_bidirectional_rnn_concatenates_fw_and_bw_per_step():
    fw, bw = LSTMCell(3, num_proj=2), GRUCell(4)
    outputs, state_fw, state_bw = static_bidirectional_rnn(fw, bw, steps(t=5))
    assert len(outputs) == 5 and all(o.shape == (3, 2 + 4) for o in outputs)
    assert isinstance(state_fw, LSTMStateTuple) and state_bw.shape == (3, 4)
    torch.testing.assert_close(outputs[-1][:, :2], state_fw.h)  # fw ends at the last step
    torch.testing.assert_close(outputs[0][:, 2:], state_bw)  # bw ends at the first


# ----------------------------------------------------------------------------- state saver
class DictSaver:
    def __init__(self, states):
        self.states, self.saved = dict(states), {}

    def state(self, name):
        return self.states[name]

    def save_state(self, name, value):
        self.saved[name] = value


def test_static_state_saving_rnn_reads_and_saves_each_state_tensor():
    cell = LSTMCell(3, num_proj=2, input_size=2, dtype=torch.float64)
    c0, m0 = torch.randn(3, 3, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    saver = DictSaver({"c": c0, "m": m0})
    xs = steps()
    lengths = torch.tensor([4, 2, 0])
    outputs, state = static_state_saving_rnn(cell, xs, saver, ("c", "m"), sequence_length=lengths)
    want_out, want_state = static_rnn(cell, xs, LSTMStateTuple(c0, m0), sequence_length=lengths)
    torch.testing.assert_close(outputs, want_out, rtol=0, atol=0)
    assert saver.saved["c"] is state.c and saver.saved["m"] is state.h
    torch.testing.assert_close(state, want_state, rtol=0, atol=0)
    torch.testing.assert_close(state.c[2], c0[2], rtol=0, atol=0)  # length 0: the saved state


def test_static_state_saving_rnn_checks_names_and_saver():
    cell = LSTMCell(3)
    with pytest.raises(ValueError, match=r"state_name must be nested like cell.state_size"):
        static_state_saving_rnn(cell, steps(), DictSaver({}), "state")
    with pytest.raises(ValueError, match=r"state_name must be nested like cell.state_size"):
        static_state_saving_rnn(cell, steps(), DictSaver({}), ("c", "m", "x"))
    with pytest.raises(TypeError, match=r"state_saver must have methods .* without save_state"):
        static_state_saving_rnn(BasicRNNCell(3), steps(), object.__new__(_OnlyState), "h")


class _OnlyState:
    def state(self, name):
        return torch.zeros(3, 3)


# ----------------------------------------------------------------------------- raw_rnn
def test_raw_rnn_custom_emit_structure_and_loop_state():
    """emit_output of the first call sets the emit structure/dtype; loop_state is carried
    (None keeps the previous one); finished rows emit zeros and keep their state."""
    torch.manual_seed(1)
    cell = BasicRNNCell(3, input_size=2, dtype=torch.float64)
    x = torch.randn(6, 2, 2, dtype=torch.float64)  # [T, B, D]
    lengths = torch.tensor([3, 1])
    calls = []

    def loop_fn(time, cell_output, cell_state, loop_state):
        calls.append(time)
        finished = time >= lengths
        if cell_output is None:
            emit = (torch.zeros(2, 1, dtype=torch.float64), torch.zeros(2, dtype=torch.long))
            return finished, x[0], torch.zeros(2, 3, dtype=torch.float64), emit, 0
        emit = (cell_output.sum(1, keepdim=True), torch.full((2,), time))
        next_loop = None if time == 2 else loop_state + time  # None: keep the previous one
        return finished, x[min(time, 5)], cell_state, emit, next_loop

    (sums, times), state, loop_state = raw_rnn(cell, loop_fn)
    assert calls == [0, 1, 2, 3] and loop_state == 1 + 3
    assert sums.shape == (3, 2, 1) and times.dtype == torch.long
    assert times.tolist() == [[1, 1], [2, 0], [3, 0]]  # row 1 finished after one step
    h, hs = torch.zeros(2, 3, dtype=torch.float64), []
    for t in range(3):
        h = torch.where(
            (t < lengths)[:, None], torch.tanh(torch.cat([x[t], h], 1) @ cell.kernel + cell.bias), h
        )
        hs.append(h)
    torch.testing.assert_close(state, h)
    torch.testing.assert_close(sums[:, 0, 0], torch.stack(hs)[:, 0].sum(1))
    assert sums[1:, 1].eq(0).all()


def test_raw_rnn_with_every_row_finished_at_time_0_runs_no_step():
    cell = BasicRNNCell(3, input_size=2)
    init = torch.randn(2, 3)

    def loop_fn(time, cell_output, cell_state, loop_state):
        return torch.ones(2, dtype=torch.bool), torch.zeros(2, 2), init, None, None

    emit, state, loop_state = raw_rnn(cell, loop_fn)
    assert emit.shape == (0, 2, 3) and state is init and loop_state is None


def _dropout_raw_rnn(cell, x):
    """raw_rnn over every step of x [T, B, D]: the emitted outputs [T, B, size]."""

    def loop_fn(time, cell_output, cell_state, loop_state):
        finished = torch.full((x.shape[1],), time >= x.shape[0])
        state = cell.zero_state(x.shape[1], x.dtype) if cell_state is None else cell_state
        return finished, x[min(time, x.shape[0] - 1)], state, cell_output, None

    return raw_rnn(cell, loop_fn)[0]


def test_raw_rnn_draws_new_variational_masks_each_call():
    """Each raw_rnn call is a new run (begin_sequence), as dynamic_rnn: the variational output
    mask is shared by every step of one call and drawn anew for the next call."""
    torch.manual_seed(0)
    cell = DropoutWrapper(
        BasicRNNCell(32, input_size=2), output_keep_prob=0.5, variational_recurrent=True, seed=3
    )
    cell.train()
    x = torch.rand(3, 4, 2) + 0.5  # positive inputs: tanh outputs are never exactly zero
    dropped = [_dropout_raw_rnn(cell, x).eq(0) for _ in range(2)]  # [T, B, 32] each
    for d in dropped:  # one [1, 32] mask per call: every step and row drops the same units
        assert d.any() and d.eq(d[:1, :1]).all()
    assert not torch.equal(dropped[0][0, 0], dropped[1][0, 0])


@pytest.mark.parametrize(
    ("finished", "error", "match"),
    [
        (torch.zeros(2), TypeError, r"raw_rnn: loop_fn\(time=0\) must return finished as a bool"),
        (False, TypeError, r"finished as a bool tensor \[batch\], got bool"),
    ],
)
def test_raw_rnn_refuses_a_bad_finished(finished, error, match):
    def loop_fn(time, cell_output, cell_state, loop_state):
        return finished, torch.zeros(2, 2), torch.zeros(2, 3), None, None

    with pytest.raises(error, match=match):
        raw_rnn(BasicRNNCell(3), loop_fn)


@pytest.mark.parametrize(
    ("change", "at", "got"),
    [
        (lambda r: (*r, None), 0, "a 6-tuple"),
        (lambda r: r[:4], 1, "a 4-tuple"),
        (list, 0, "list"),
        (list, 1, "list"),
    ],
)
def test_raw_rnn_refuses_a_loop_fn_result_that_is_not_a_5_tuple(change, at, got):
    def loop_fn(time, cell_output, cell_state, loop_state):
        state = torch.zeros(2, 3) if time == 0 else cell_state
        result = (torch.zeros(2, dtype=torch.bool), torch.zeros(2, 2), state, None, None)
        return change(result) if time == at else result

    match = rf"^raw_rnn: loop_fn\(time={at}\) must return a 5-tuple \(finished, .*got {got}$"
    with pytest.raises(TypeError, match=match):
        raw_rnn(BasicRNNCell(3), loop_fn)


def test_raw_rnn_refuses_a_changing_structure_and_a_bad_initial_state():
    def loop_fn(time, cell_output, cell_state, loop_state):
        finished = torch.zeros(2, dtype=torch.bool)
        state = torch.zeros(2, 3) if time == 0 else (cell_state, cell_state)
        return finished, torch.zeros(2, 2), state, None, None

    with pytest.raises(ValueError, match=r"raw_rnn: loop_fn\(time=1\) returned next_cell_state"):
        raw_rnn(BasicRNNCell(3), loop_fn)

    def no_emit(time, cell_output, cell_state, loop_state):  # emit_output=None after time 0
        state = torch.zeros(2, 3) if time == 0 else cell_state
        return torch.zeros(2, dtype=torch.bool), torch.zeros(2, 2), state, None, None

    with pytest.raises(
        ValueError, match=r"raw_rnn: loop_fn\(time=1\) returned emit_output structured as None"
    ):
        raw_rnn(BasicRNNCell(3), no_emit)

    def bad_init(time, cell_output, cell_state, loop_state):
        return torch.zeros(2, dtype=torch.bool), torch.zeros(2, 2), torch.zeros(2, 4), None, None

    with pytest.raises(ValueError, match=r"raw_rnn: the initial cell state from loop_fn\(time=0\)"):
        raw_rnn(BasicRNNCell(3), bad_init)
    with pytest.raises(TypeError, match=r"raw_rnn: loop_fn must be callable, got int"):
        raw_rnn(BasicRNNCell(3), 3)


# ----------------------------------------------------------------------------- stacked
def test_stack_bidirectional_layers_read_concatenated_outputs():
    fw = [LSTMCell(3, num_proj=2), GRUCell(4)]
    bw = [BasicRNNCell(5), GRUCell(2)]
    x = torch.randn(2, 6, 3)
    out, states_fw, states_bw = stack_bidirectional_dynamic_rnn(fw, bw, x)
    assert out.shape == (2, 6, 4 + 2)
    assert fw[1].input_size == 2 + 5 and bw[1].input_size == 2 + 5
    assert len(states_fw) == len(states_bw) == 2
    outs, _, _ = stack_bidirectional_rnn(fw, bw, list(x.transpose(0, 1)))
    torch.testing.assert_close(torch.stack(outs, 1), out, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cells_fw": []}, r"cells_fw must be a non-empty list of RNNCells"),
        ({"cells_bw": [GRUCell(2)] * 2}, r"cells_fw and cells_bw must have the same depth, got 1"),
        ({"initial_states_fw": []}, r"initial_states_fw must be None or a list of 1 states"),
    ],
)
def test_stack_bidirectional_refuses_bad_layers(kwargs, match):
    args = {"cells_fw": [GRUCell(2)], "cells_bw": [GRUCell(2)], "inputs": torch.zeros(1, 2, 3)}
    with pytest.raises(ValueError, match=match):
        stack_bidirectional_dynamic_rnn(**{**args, **kwargs})


def test_stack_bidirectional_errors_name_the_layer():
    init = [torch.zeros(1, 2), torch.zeros(1, 5)]
    with pytest.raises(ValueError, match=r"stack_bidirectional_dynamic_rnn \(layer 1\): "):
        stack_bidirectional_dynamic_rnn(
            [GRUCell(2), GRUCell(2)],
            [GRUCell(2), GRUCell(2)],
            torch.zeros(1, 2, 3),
            initial_states_fw=init,
            initial_states_bw=[torch.zeros(1, 2)] * 2,
        )


# ----------------------------------------------------------------------------- integer arguments
def _finish_at_once(time, cell_output, cell_state, loop_state):
    return torch.ones(2, dtype=torch.bool), torch.zeros(2, 2), torch.zeros(2, 3), None, None


DRIVERS_WITH_PARALLEL_ITERATIONS = {
    "dynamic_rnn": lambda p: dynamic_rnn(
        BasicRNNCell(3), torch.zeros(2, 4, 2), parallel_iterations=p
    ),
    "stack_bidirectional_dynamic_rnn": lambda p: stack_bidirectional_dynamic_rnn(
        [GRUCell(2)], [GRUCell(2)], torch.zeros(2, 4, 3), parallel_iterations=p
    ),
    "raw_rnn": lambda p: raw_rnn(BasicRNNCell(3), _finish_at_once, parallel_iterations=p),
}


@pytest.mark.parametrize("driver", DRIVERS_WITH_PARALLEL_ITERATIONS)
@pytest.mark.parametrize("value", [None, 4, np.int64(4), torch.tensor(4)], ids=repr)
def test_parallel_iterations_takes_integer_likes(driver, value):
    DRIVERS_WITH_PARALLEL_ITERATIONS[driver](value)


@pytest.mark.parametrize("driver", DRIVERS_WITH_PARALLEL_ITERATIONS)
@pytest.mark.parametrize(
    ("value", "shown"), [(4.0, r"4\.0"), (True, "True"), (np.True_, r"np\.True_"), (0, "0")]
)
def test_parallel_iterations_refuses_floats_bools_and_zero(driver, value, shown):
    owner = rf"{driver} \(layer 0\)" if driver.startswith("stack") else driver
    with pytest.raises(
        ValueError,
        match=rf"^{owner}: parallel_iterations must be a positive int or None, got {shown}$",
    ):
        DRIVERS_WITH_PARALLEL_ITERATIONS[driver](value)


def test_raw_rnn_checks_swap_memory_and_scope():
    assert raw_rnn(BasicRNNCell(3), _finish_at_once, swap_memory=np.True_)[0].shape == (0, 2, 3)
    with pytest.raises(TypeError, match=r"^raw_rnn: swap_memory must be a bool, got 1$"):
        raw_rnn(BasicRNNCell(3), _finish_at_once, swap_memory=1)
    with pytest.raises(TypeError, match=r"^raw_rnn: scope must be a str or None, got 3$"):
        raw_rnn(BasicRNNCell(3), _finish_at_once, scope=3)
