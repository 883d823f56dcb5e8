"""The TF1 dynamic_rnn contract, in cases small enough to check by hand, on every implementation
(the ``impl`` fixture: the reference loop, the fused path with its compiled loops and with its
Python loops)."""

from __future__ import annotations

import pytest
import torch
from rnnflow_testing import assert_close_tree

from rnnflow import (
    BasicLSTMCell,
    BasicRNNCell,
    GRUCell,
    LSTMStateTuple,
    MultiRNNCell,
    _nest,
    bidirectional_dynamic_rnn,
    dynamic_rnn,
)
from rnnflow.recurrence._masking import reverse_sequence


def counting_cell() -> BasicRNNCell:
    """h' = relu(x + h): with x = 1 everywhere, the state counts the steps taken."""
    cell = BasicRNNCell(1, activation=torch.relu, input_size=1)
    with torch.no_grad():
        cell.kernel.fill_(1.0)
        cell.bias.zero_()
    return cell


def test_outputs_past_length_are_zero_and_state_is_carried(impl):
    out, state = dynamic_rnn(
        counting_cell(), torch.ones(3, 4, 1), sequence_length=[4, 2, 0], impl=impl
    )
    assert out[:, :, 0].tolist() == [[1, 2, 3, 4], [1, 2, 0, 0], [0, 0, 0, 0]]
    assert state[:, 0].tolist() == [4, 2, 0]


def test_initial_state_is_kept_for_length_zero(impl):
    init = torch.tensor([[10.0], [20.0]])
    out, state = dynamic_rnn(
        counting_cell(),
        torch.ones(2, 3, 1),
        sequence_length=torch.tensor([3, 0]),
        initial_state=init,
        impl=impl,
    )
    assert out[:, :, 0].tolist() == [[11, 12, 13], [0, 0, 0]]
    assert state[:, 0].tolist() == [13, 20]


@pytest.mark.parametrize(
    "cell_fn",
    [
        lambda: BasicLSTMCell(4, input_size=3),
        lambda: GRUCell(4, input_size=3),
        lambda: MultiRNNCell([BasicLSTMCell(4, input_size=3), BasicRNNCell(2, input_size=4)]),
    ],
)
def test_each_row_equals_running_it_alone_truncated(cell_fn, impl):
    """Independent oracle: row b with length L behaves as a length-L sequence of its own."""
    cell = cell_fn()
    x = torch.randn(3, 5, 3)
    lengths = [5, 2, 0]
    out, state = dynamic_rnn(cell, x, sequence_length=lengths, impl=impl)
    for b, length in enumerate(lengths):
        row_state = cell.zero_state(1)
        for t in range(length):
            row_out, row_state = cell(x[b : b + 1, t], row_state)
            torch.testing.assert_close(out[b, t], row_out[0])
        assert not out[b, length:].any()
        for got, want in zip(_nest.flatten(state), _nest.flatten(row_state)):
            torch.testing.assert_close(got[b], want[0])


def test_time_major_is_the_transposed_layout(impl):
    cell = BasicLSTMCell(4, input_size=3)
    x = torch.randn(2, 6, 3)
    lengths = torch.tensor([6, 3])
    out_b, state_b = dynamic_rnn(cell, x, sequence_length=lengths, impl=impl)
    out_t, state_t = dynamic_rnn(
        cell, x.transpose(0, 1), sequence_length=lengths, time_major=True, impl=impl
    )
    torch.testing.assert_close(out_t.transpose(0, 1), out_b)
    assert_close_tree(state_t, state_b)


def test_without_lengths_equals_full_lengths(impl):
    cell = GRUCell(3, input_size=2)
    x = torch.randn(4, 5, 2)
    assert_close_tree(
        dynamic_rnn(cell, x, impl=impl),
        dynamic_rnn(cell, x, sequence_length=[5, 5, 5, 5], impl=impl),
    )


def test_lstm_state_tuple_is_returned_and_accepted_as_plain_tuple(impl):
    cell = BasicLSTMCell(3, input_size=2)
    x = torch.randn(2, 4, 2)
    init = (torch.randn(2, 3), torch.randn(2, 3))
    out, state = dynamic_rnn(cell, x, initial_state=init, impl=impl)
    assert isinstance(state, LSTMStateTuple)
    torch.testing.assert_close(state.h, out[:, -1])


def test_zero_time_steps_returns_the_initial_state(impl):
    cell = BasicRNNCell(3, input_size=2)
    init = torch.randn(4, 3)
    out, state = dynamic_rnn(cell, torch.zeros(4, 0, 2), initial_state=init, impl=impl)
    assert out.shape == (4, 0, 3)
    assert state is init


def test_lazy_cell_is_built_with_the_inputs_dtype(impl):
    cell = MultiRNNCell([BasicLSTMCell(3), GRUCell(2)])
    out, _ = dynamic_rnn(cell, torch.randn(2, 4, 5, dtype=torch.float64), impl=impl)
    assert out.dtype == torch.float64 and cell.cell_0.kernel.shape == (8, 12)


def test_swap_memory_and_tf1_only_arguments_change_nothing_on_cpu(impl):
    cell = BasicLSTMCell(3, input_size=2)
    x = torch.randn(2, 4, 2)
    assert_close_tree(
        dynamic_rnn(
            cell,
            x,
            swap_memory=True,
            parallel_iterations=32,
            scope="rnn",
            dtype=torch.float32,
            impl=impl,
        ),
        dynamic_rnn(cell, x, impl=impl),
    )


def test_reverse_sequence_reverses_within_each_length():
    x = torch.arange(8.0).view(2, 4).T.unsqueeze(-1)  # [T=4, B=2, 1]: row0 0..3, row1 4..7
    rev = reverse_sequence(x, torch.tensor([3, 0]))
    assert rev[:, :, 0].T.tolist() == [[2, 1, 0, 3], [4, 5, 6, 7]]
    assert reverse_sequence(x, None)[:, 0, 0].tolist() == [3, 2, 1, 0]


def test_bidirectional_backward_reads_each_row_reversed_in_its_length(impl):
    cell_fw, cell_bw = counting_cell(), BasicRNNCell(2, input_size=1)
    x = torch.randn(3, 5, 1)
    lengths = torch.tensor([5, 3, 0])
    (out_fw, out_bw), (st_fw, st_bw) = bidirectional_dynamic_rnn(
        cell_fw, cell_bw, x, sequence_length=lengths, impl=impl
    )
    ref_fw, ref_st_fw = dynamic_rnn(cell_fw, x, sequence_length=lengths, impl="reference")
    torch.testing.assert_close(out_fw, ref_fw)
    torch.testing.assert_close(st_fw, ref_st_fw)
    for b, length in enumerate(lengths.tolist()):
        row = x[b : b + 1, :length].flip(1)  # the row reversed in its own length
        if length:
            row_out, row_state = dynamic_rnn(cell_bw, row, impl="reference")
            torch.testing.assert_close(out_bw[b, :length], row_out[0].flip(0))
            torch.testing.assert_close(st_bw[b], row_state[0])
        assert not out_bw[b, length:].any()


def test_gradcheck_dynamic_rnn_with_sequence_length(impl):
    cell = MultiRNNCell(
        [
            BasicLSTMCell(3, input_size=2, dtype=torch.float64),
            GRUCell(2, input_size=3, dtype=torch.float64),
        ]
    )
    x = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 1, 0])

    def run(x, *params):
        out, state = dynamic_rnn(cell, x, sequence_length=lengths, impl=impl)
        return out, state[0].c, state[1]

    assert torch.autograd.gradcheck(run, (x, *cell.parameters()))


def test_gradcheck_bidirectional_with_initial_states(impl):
    fw = BasicRNNCell(2, input_size=2, dtype=torch.float64)
    bw = GRUCell(2, input_size=2, dtype=torch.float64)
    x = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    h_fw = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    h_bw = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)

    def run(x, h_fw, h_bw):
        (o_fw, o_bw), (s_fw, s_bw) = bidirectional_dynamic_rnn(
            fw,
            bw,
            x,
            sequence_length=[3, 2],
            initial_state_fw=h_fw,
            initial_state_bw=h_bw,
            impl=impl,
        )
        return o_fw, o_bw, s_fw, s_bw

    assert torch.autograd.gradcheck(run, (x, h_fw, h_bw))


def test_runs_on_device_and_keeps_it(device, impl):
    cell = BasicLSTMCell(3, input_size=2).to(device)
    out, state = dynamic_rnn(
        cell,
        torch.randn(2, 3, 2, device=device),
        sequence_length=torch.tensor([3, 1], device=device),
        impl=impl,
    )
    assert out.device.type == device.type and state.c.device.type == device.type


def test_auto_runs_single_steps_on_the_reference_loop(monkeypatch):
    """One step (as when sampling a character at a time) has nothing for the fused path to batch."""
    from rnnflow.recurrence import fused

    def refuse(*args, **kwargs):
        raise AssertionError("fused path used for a single step")

    monkeypatch.setattr(fused, "fused_dynamic_rnn", refuse)
    cell = BasicLSTMCell(3, input_size=2)
    out, _ = dynamic_rnn(cell, torch.randn(4, 1, 2))
    assert out.shape == (4, 1, 3)
    with pytest.raises(AssertionError, match="fused path used"):
        dynamic_rnn(cell, torch.randn(4, 2, 2))


def _ignore_lengths(lengths, batch, max_time):
    return [batch] * max_time


def _last_step_state(seq, lengths):
    return seq[-1].clone()


@pytest.mark.parametrize(
    "mutant, contract_test",
    [
        (("batch_sizes", _ignore_lengths), test_outputs_past_length_are_zero_and_state_is_carried),
        (("_gather_final", _last_step_state), test_initial_state_is_kept_for_length_zero),
    ],
    ids=["steps-past-length-computed", "final-state-at-the-last-step"],
)
@pytest.mark.parametrize("no_ext", ["0", "1"], ids=["compiled", "python"])
def test_contract_tests_catch_a_broken_fused_masking(mutant, contract_test, no_ext, monkeypatch):
    """Mutation check: the fused path with its masking broken (every step of every row computed
    and written; the final state taken at the last step instead of each row's last valid one)
    fails the hand-checkable contract tests above."""
    from rnnflow.recurrence import _fused_kernels as kernels

    monkeypatch.setenv("RNNFLOW_NO_EXT", no_ext)
    contract_test("fused")  # intact: passes
    monkeypatch.setattr(kernels, *mutant)
    with pytest.raises(AssertionError):
        contract_test("fused")
